"""A run without a scan keeps the output pictures its report shows as it encodes them (compose: the
decoded frames of a pass-through, in the output's pixel format), so the report does not decode the
output again (issue 18 item 4: the fixed cost of `--scale 1`); the page is the one a redraw decoding
the output gives, and nothing is left behind. RGB frames of an upscale are not kept (the output's
chroma subsampling changes them): that report decodes the output, as before."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.io.decode import Video
from pipeline.run.restore import restore
from tests.media import MediaCache


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)


@pytest.mark.parametrize("scale", [1, 2])
def test_the_report_pictures_what_compose_kept_and_a_redraw_draws_the_same(
    media: MediaCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scale: int
) -> None:
    clip = media.clip("pictures", frames=30, size=(64, 48), gop=5)
    decoded: list[tuple[str, list[int]]] = []
    real = Video.pictures

    def counted(video: Video, indices: Iterable[int]) -> dict[int, np.ndarray]:
        wanted = sorted(indices)
        decoded.append((Path(video.path).name, wanted))
        return real(video, wanted)

    monkeypatch.setattr(Video, "pictures", counted)
    cfg = load_config(
        sets=[
            f"upscale.scale={scale}",
            "io.preset=master-ffv1",  # lossless: a pass-through's pictures are the output's, bit for bit
            "run.executor=local",
            "run.progress=false",
            "run.segment_frames=10",  # three parts, the thumbnails spread over them
            f"run.workdir={tmp_path / 'w'}",
        ]
    )
    report = restore(clip, tmp_path / "out.mkv", cfg)
    html = Path(str(report.output) + ".report.html")
    page = html.read_bytes()
    if scale == 2:  # RGB frames handed to a 4:2:0 encoder: the report decodes what the output holds
        assert [name for name, _ in decoded] == ["out.mkv"]
        decoded.clear()
    else:
        assert decoded == []  # every picture came from compose: the output was not decoded again
    assert page.count(b"data:image/jpeg") >= 8  # the eight thumbnails of the whole output
    assert not list((tmp_path / "w").rglob("*.pictures.npz"))  # removed with the parts
    html.unlink()
    assert main(["report", str(report.output)]) == 0  # the redraw decodes the output instead
    assert [name for name, _ in decoded] == ["out.mkv"] and len(decoded[0][1]) == 8
    assert html.read_bytes() == page
