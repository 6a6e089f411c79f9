"""Cadence: inverse telecine only where a telecine cadence is measured (pipeline.io.cadence)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.film.content import resolve
from pipeline.io.cadence import measure_cadence, resolve_inverse_telecine
from pipeline.io.decode import open_video
from tests.media import MediaCache


def test_telecined_source_is_measured_and_inverse_telecined(media: MediaCache) -> None:
    path = media.clip(size=(128, 96), rate="30000/1001", frames=60, telecine=True)
    cadence = measure_cadence(path)
    assert cadence.verdict == "telecine" and 0.3 < cadence.repeated_fraction < 0.5
    cfg, _ = resolve_inverse_telecine(load_config(["cartoon"]), path)
    assert cfg.io.inverse_telecine is True


def test_progressive_cartoon_keeps_every_frame(media: MediaCache) -> None:
    path = media.clip(size=(128, 72), rate="25", frames=50, source="testsrc2")
    cfg, note = resolve(load_config(["cartoon"]), path)
    assert cfg.io.inverse_telecine is False and note["inverse_telecine"]["verdict"] == "progressive"
    with open_video(path, inverse_telecine=cfg.io.inverse_telecine).reader() as reader:
        assert sum(1 for _ in reader) == 50
    with open_video(path, inverse_telecine=True).reader() as reader:  # what the preset did unconditionally
        assert sum(1 for _ in reader) < 45


def test_on_off_strings_and_bad_values(media: MediaCache) -> None:
    path = media.clip(size=(64, 48), frames=5)
    base = load_config()
    for value, want in (("on", True), ("off", False), (True, True), (False, False)):
        cfg, cadence = resolve_inverse_telecine(
            replace(base, io=replace(base.io, inverse_telecine=value)), path
        )
        assert cfg.io.inverse_telecine is want and cadence is None
    with pytest.raises(ConfigError, match="inverse_telecine"):
        resolve_inverse_telecine(replace(base, io=replace(base.io, inverse_telecine="maybe")), path)


def test_cadence_broken_at_a_cut_is_still_telecine(tmp_path: Path) -> None:
    import subprocess

    from tests.media import FFMPEG

    out = tmp_path / "edited.mkv"
    src = "size=128x96:rate=24000/1001"
    # two telecined shots, the first 31 film frames long: the cadence breaks mid-cycle at the cut
    graph = "[0]trim=end_frame=31,telecine[a];[1]trim=end_frame=36,format=yuv420p,telecine[b];[a][b]concat[v]"
    cmd = [FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"testsrc2={src}", "-f", "lavfi"]
    cmd += ["-i", f"testsrc={src}", "-filter_complex", graph, "-map", "[v]"]
    subprocess.run([*cmd, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)], check=True)
    cadence = measure_cadence(out)
    assert cadence.verdict == "telecine", cadence
