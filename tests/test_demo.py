"""`make demo` is one of the two commands a fresh machine runs: it must work end to end, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent


def _frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(f.time) for f in container.decode(stream)]


def test_demo_restores_the_sample_clip_and_says_the_faces_are_invented(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "demo.py"),
            "--out",
            str(tmp_path),
            "--resolution",
            "64",  # the demo's own: its ~40 px faces at x2 fit (a 32-px prior would fall back to the upscale)
            "--steps",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    source, restored = tmp_path / "sample-newsreel.mkv", tmp_path / "restored.mkv"
    times_in, times_out = _frame_times(source), _frame_times(restored)
    assert len(times_out) == len(times_in) > 0
    assert max(abs(a - b) for a, b in zip(times_in, times_out, strict=True)) < 1e-3
    with av.open(str(source)) as a, av.open(str(restored)) as b:
        assert b.streams.video[0].width == 2 * a.streams.video[0].width
        assert len(b.streams.audio) == len(a.streams.audio) == 1
    report = json.loads((tmp_path / "restored.mkv.report.json").read_text())
    assert report["random_test_generator"] is True
    totals = report["totals"]
    assert totals["restored"] + totals["fell_back"] == totals["searched"] == report["face_frames"] > 0
    assert totals["restored"] > totals["fell_back"] and totals["met_bound_in_frame"] > 0
    assert "not recovered" in report["notice"]
    assert "RANDOM" in done.stdout and "not a face" in done.stdout
