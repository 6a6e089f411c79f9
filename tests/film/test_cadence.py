"""Cartoons: inverse telecine only where a cadence is measured, and the rule for drawn faces."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.film.content import face_prior, resolve
from pipeline.io.cadence import measure_cadence, resolve_inverse_telecine
from pipeline.io.decode import iter_frames
from tests.media import MediaCache


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)


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
    with iter_frames(path, inverse_telecine=cfg.io.inverse_telecine) as reader:
        assert sum(1 for _ in reader) == 50
    with iter_frames(path, inverse_telecine=True) as reader:  # what the preset did unconditionally
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


def test_photographic_prior_stays_off_drawn_faces(tmp_path: Path) -> None:
    cartoon = load_config(["cartoon"], ["prior.model=ffhq-1024"])
    assert cartoon.film.content == "drawn" and face_prior(cartoon) is None
    drawn = load_config(
        ["cartoon"], ["prior.model=ffhq-1024", "film.drawn_face_prior=anime-faces.safetensors"]
    )
    assert face_prior(drawn) == "anime-faces.safetensors"
    assert face_prior(load_config(["newsreel"], ["prior.model=ffhq-1024"])) == "ffhq-1024"


def test_a_learned_upscaler_that_cannot_load_fails_before_any_work(media: MediaCache, tmp_path: Path) -> None:
    from pipeline.errors import CheckpointError

    path = media.clip(size=(64, 48), frames=5)
    with pytest.raises(CheckpointError, match="no such file"):
        resolve(load_config(sets=[f"upscale.model={tmp_path / 'missing.pth'}"]), path)
    with pytest.raises(ConfigError, match="tile"):
        resolve(load_config(sets=["upscale.tile=16", "upscale.tile_overlap=16"]), path)


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
