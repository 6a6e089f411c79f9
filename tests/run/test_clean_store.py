"""Clean segments (decoded and film-cleaned once, stored full size) read back as the decoder and
cleaner give the same frames: scan, crops and compose may read them instead of decoding again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.io.probe import probe
from pipeline.run.frames import CleanSegment, frame_counts, read_frames
from pipeline.run.steps import clean_step
from tests.media import MediaCache


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)


def _segment(root: Path, s: int, e: int) -> CleanSegment:
    return CleanSegment(s, e, str(root / f"segment-{s}-{e}.npy"), str(root / f"segment-{s}-{e}.npz"))


def test_stored_segments_equal_decoding_and_cleaning_across_a_segment_edge(
    media: MediaCache, tmp_path: Path
) -> None:
    src = media.clip(size=(96, 64), frames=20, source="mandelbrot")
    cfg = load_config(["newsreel"], ["film.grain=regrain"])  # frames carry their grain measured
    info = probe(src)
    segments = [_segment(tmp_path, 0, 10), _segment(tmp_path, 10, 20)]
    before = frame_counts()
    for seg in segments:
        assert clean_step(str(src), info, cfg, seg) == {"frames": 10}
    counted = {k: frame_counts()[k] - before[k] for k in before}
    assert counted["decoded"] == counted["cleaned"] == 40  # each segment decodes its context: the whole clip

    with read_frames(src, cfg, 5, 15) as decoded:
        want = list(decoded)
    before = frame_counts()
    with read_frames(src, cfg, 5, 15, stored=segments) as stored:
        got = list(stored)
        assert (stored.time_base, stored.frame_rate) == (decoded.time_base, decoded.frame_rate)
    assert frame_counts() == before  # reading back decodes and cleans nothing
    assert [(f.index, f.pts, f.time) for f in got] == [(f.index, f.pts, f.time) for f in want]
    for a, b in zip(got, want, strict=True):
        assert a.image.dtype == b.image.dtype and np.array_equal(a.image, b.image), a.index
        assert a.grain is not None and b.grain is not None and np.array_equal(a.grain, b.grain), a.index
        assert (a.filled is None) == (b.filled is None), a.index  # dust fills (the provenance matte)
        assert a.filled is None or np.array_equal(a.filled, b.filled), a.index

    # one segment's film figures are those of decoding and cleaning that segment alone
    with read_frames(src, cfg, 10, 20) as decoded:
        list(decoded)
    with read_frames(src, cfg, 10, 20, stored=segments[1:]) as stored:
        assert stored.film_stats == decoded.film_stats


def test_reading_back_refuses_a_reduced_size_and_an_uncovered_range(
    media: MediaCache, tmp_path: Path
) -> None:
    src = media.clip(size=(96, 64), frames=20, source="mandelbrot")
    cfg = load_config(["newsreel"])
    seg = _segment(tmp_path, 0, 10)
    clean_step(str(src), probe(src), cfg, seg)
    with pytest.raises(ValueError, match="full size"):
        read_frames(src, cfg, 0, 10, max_size=32, stored=[seg])
    with pytest.raises(ValueError, match=r"no clean segment covers frames \[12, 18\)"):
        read_frames(src, cfg, 12, 18, stored=[seg])
