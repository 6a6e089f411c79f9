"""The provenance matte (film.matte) on real files: a lossless gray mask beside the output, frame
for frame with its timestamps, marking every synthesised pixel; the report's altered share per shot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.run.restore import restore
from tests.media import MediaCache, read_video_times


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)


def _frames(path: Path, fmt: str = "gray") -> np.ndarray:
    import av

    with av.open(str(path)) as box:
        return np.stack([f.to_ndarray(format=fmt) for f in box.decode(video=0)])


def _write(path: Path, images: list[np.ndarray]) -> Path:
    """A lossless (FFV1, RGB) clip of `images` at 25 frames/s."""
    import av

    with av.open(str(path), "w") as box:
        stream = box.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], "bgr0"
        for im in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(im, format="rgb24")):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)
    return path


def _sets(*more: str) -> list[str]:
    return ["run.executor=local", "run.segment_frames=5", "run.progress=false", "film.matte=on", *more]


def test_a_run_with_no_faces_and_no_cleaning_has_an_all_zero_matte_with_the_outputs_timestamps(
    media: MediaCache, tmp_path: Path
) -> None:
    src = media.clip(size=(64, 48), frames=12, vfr=True)  # irregular frame durations
    for scale in (1, 2):  # 1: the decoded frames go to the encoder as they are
        out = tmp_path / f"plain{scale}.mkv"
        restore(src, out, load_config(sets=_sets(f"upscale.scale={scale}")))
        matte = out.with_name(out.name + ".matte.mkv")
        assert read_video_times(matte).pts == read_video_times(out).pts  # every frame, same times
        masks = _frames(matte)
        assert masks.shape == (12, 48 * scale, 64 * scale) and not masks.any()
        report = json.loads(out.with_name(out.name + ".report.json").read_text())["matte"]
        assert report["frames"] == 12 and report["altered_share"] == 0.0
        assert not list(tmp_path.rglob("*.matte.nut")) and not list(tmp_path.rglob("*.matte.json"))


def test_filled_specks_are_marked_in_the_matte_and_counted_per_shot(tmp_path: Path) -> None:
    import skimage.data

    from pipeline.film import synthetic as S

    clip = S.camera_clip(skimage.data.astronaut(), (128, 96), 12)
    bad, specks = S.add_specks(clip, 3, seed=3)
    src = _write(tmp_path / "specks.mkv", bad)
    out = tmp_path / "out.mkv"
    restore(src, out, load_config(sets=_sets("film.dust=true")))
    matte = out.with_name(out.name + ".matte.mkv")
    assert read_video_times(matte).pts == read_video_times(out).pts
    masks = _frames(matte)
    assert masks.shape == (12, 192, 256)
    inner = [s for s in specks if 0 < s.frame < 11]  # the first and last frames have one neighbour
    marked = [masks[s.frame, 2 * s.y, 2 * s.x] == 255 for s in inner]
    assert sum(marked) >= 0.9 * len(inner)  # the specks the cleaner filled (measured: all of them)
    body = json.loads(out.with_name(out.name + ".report.json").read_text())
    # ... and nothing else: exactly the pixels filled (source px, x 2 x 2 in the output)
    assert body["film"]["specks_filled"] > 0
    assert int((masks == 255).sum()) == int((masks > 0).sum()) == 4 * body["film"]["speck_pixels"]
    (film,) = body["film"]["shots"]  # film cleaning per shot; not scanned for faces: the whole clip
    assert film["frames"] == 12 and film["specks_filled"] == body["film"]["specks_filled"]
    (shot,) = body["matte"]["shots"]  # not scanned for faces: the whole clip
    assert (shot["start"], shot["end"]) == (0, 12) and shot["frames_altered"] >= 10
    assert shot["altered_share"] == pytest.approx(float((masks > 0).mean()), rel=1e-3)
    assert "Provenance matte" in out.with_name(out.name + ".report.html").read_text()


def test_an_inpainted_scratch_is_marked_in_the_matte(tmp_path: Path) -> None:
    import skimage.data

    from pipeline.film import synthetic as S

    clip = S.add_scratches(S.camera_clip(skimage.data.astronaut(), (128, 96), 10), [50])
    src = _write(tmp_path / "scratch.mkv", clip)
    out = tmp_path / "out.mkv"
    restore(src, out, load_config(sets=_sets("film.scratches=true")))
    masks = _frames(out.with_name(out.name + ".matte.mkv")) > 0
    assert json.loads(out.with_name(out.name + ".report.json").read_text())["film"]["scratch_frames"] >= 8
    band = masks[:, :, 2 * 46 : 2 * 56].any(axis=2)  # [frames, rows]: the scratch's columns (it drifts)
    assert band[1:-1].mean() > 0.8  # marked down most of the frame in the frames it was found in
    assert masks[:, :, : 2 * 40].sum() == 0 and masks[:, :, 2 * 62 :].sum() == 0  # and only there


def test_anonymize_refuses_the_matte() -> None:
    from pipeline.anon.audit import check_anon_config

    with pytest.raises(ConfigError, match=r"film\.matte"):
        check_anon_config(load_config(sets=["film.matte=on"]))
