"""`scripts/device_bench.py`, the GPU session's record, runs on this CPU in its quick mode and writes
every key the record promises: a figure that was measured is a positive number, and one that could not
be measured is null with a reason (a lent GPU's session must not find a broken script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_quick_record_has_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gpu-latest.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "device_bench.py"), "--quick", "--device", "cpu"]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record == json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["card"] == "cpu" and record["quick"] is True and record["date"] and record["commit"]
    keys = (
        "search_warm_1024_faces_per_s",
        "search_cold_1024_faces_per_s",
        "search_warm_256_faces_per_s",
        "sr_compact_1080p_fps",
        "sr_rrdb_720p_fps",
        "film_1080p_fps",
        "compose_ms_per_face",
    )
    for key in keys:
        assert record[key] is not None and record[key] > 0, (key, record["unmeasured"].get(key))
    assert 0.0 <= record["search_met_fraction"] <= 1.0
    assert record["film_numpy_1080p_fps"] > 0  # the numpy clean of the same frames, beside the torch one
    assert record["unmeasured"] == {}
    table = proc.stdout.splitlines()
    assert all(any(line.startswith(key) for line in table) for key in keys)  # one table, every figure


def test_the_film_figure_cleans_with_the_newsreel_preset() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import device_bench
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from dataclasses import replace

    from pipeline.config import FilmConfig, load_config

    preset = load_config(["newsreel"]).film
    assert replace(FilmConfig(**device_bench.NEWSREEL_FILM), device=preset.device) == preset
