"""`reel preview`: a few seconds restored with the run's options, before | after, and a still (issue 22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.io.probe import probe
from tests.media import make_clip


def test_a_preview_is_the_excerpt_before_and_after_side_by_side_with_a_still(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import av

    src = make_clip(tmp_path / "in.mp4", frames=30, rate="10", size=(64, 48), audio=1, container=".mp4")
    out = tmp_path / "look.mp4"
    assert main(["preview", str(src), "-o", str(out), "--at", "1", "--seconds", "1", "--scale", "2"]) == 0
    info = probe(out, exact=True)
    assert (info.video.width, info.video.height) == (2 * 128, 96)  # before | after, at the output size
    assert info.video.frame_count == 10  # one second at 10 fps
    assert len(info.audio) == 1
    with av.open(str(src)) as c:  # the source frame at 1 s, which the preview starts with
        first = next(f for f in c.decode(video=0) if f.time is not None and f.time >= 1.0 - 1e-6)
        source = first.to_ndarray(format="rgb24").astype(np.float32)
    with av.open(str(out)) as c:
        left = next(c.decode(video=0)).to_ndarray(format="rgb24")[:, :128].astype(np.float32)
    before = left.reshape(48, 2, 64, 2, 3).mean(axis=(1, 3))  # the left half, back at the source size
    assert np.abs(before - source).mean() < 6  # the excerpt starts where asked (a frame off is > 20)
    still = tmp_path / "look.png"
    with av.open(str(still)) as c:
        assert next(c.decode(video=0)).width == 256
    assert "before | after" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.mp4",
        "look.mp4",
        "look.png",
    ]  # nothing else left


def test_a_preview_never_replaces_a_file_without_overwrite(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=10)
    out = tmp_path / "look.mp4"
    out.write_bytes(b"keep me")
    assert main(["preview", str(src), "-o", str(out), "--seconds", "0.5"]) == 2
    assert out.read_bytes() == b"keep me"
    assert main(["preview", str(src), "-o", str(tmp_path / "x.mp4"), "--at", "60"]) == 2
    assert not (tmp_path / "x.mp4").exists()
