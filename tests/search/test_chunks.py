from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.metrics.temporal import boundary_ratio, flicker
from pipeline.prior.stylegan2 import Generator
from pipeline.search.chunks import Chunk, boundary_transitions, plan_chunks, restore_track_chunked
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.synthetic import make_track


@pytest.mark.parametrize("length", [1, 5, 9, 10, 11, 23, 40])
@pytest.mark.parametrize(("chunk_len", "landing"), [(4, 0), (5, 2), (8, 3)])
def test_plan_covers_the_track_once(length: int, chunk_len: int, landing: int) -> None:
    chunks = plan_chunks(length, chunk_len, landing)
    assert chunks[0].start == 0 and chunks[-1].end == length
    for a, b in itertools.pairwise(chunks):
        assert a.end == b.start  # consecutive, no frame twice
    for c in chunks:
        assert c.anchor == c.start
        assert c.end - c.start >= (landing + 2 if len(chunks) > 1 else 1)
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_plan_edge_cases() -> None:
    assert plan_chunks(10, 0) == [Chunk(0, 0, 10)]
    assert plan_chunks(10, 12) == [Chunk(0, 0, 10)]
    assert plan_chunks(11, 5, 2) == [Chunk(0, 0, 5), Chunk(1, 5, 11)]  # a 1-frame tail is merged
    assert plan_chunks(14, 5, 2) == [Chunk(0, 0, 5), Chunk(1, 5, 10), Chunk(2, 10, 14)]
    assert boundary_transitions(plan_chunks(14, 5, 2), 2) == [2, 3, 4, 7, 8, 9]
    with pytest.raises(SearchError):
        plan_chunks(10, 4, 3)
    with pytest.raises(SearchError):
        plan_chunks(0, 4, 1)


def test_chunked_track_meets_the_bound_without_jumps_at_boundaries(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    world = make_track(tiny_G, frames=15, scale=4, seed=11, motion=0.6, keyframe_every=6)
    settings = replace(fast_settings, chunk_len=5, chunk_landing=3)
    out, state = restore_track_chunked(
        tiny_G, world.crops, settings=settings, space=tiny_space, track_id=2, frame_indices=range(100, 115)
    )
    assert [o.frame_index for o in out] == list(range(100, 115)) and len(state) == 1
    assert all(o.met_bound for o in out)
    img = np.stack([o.image for o in out])
    change = flicker(img, world.truth)
    bounds = boundary_transitions(plan_chunks(15, 5, 3), 3)
    assert boundary_ratio(change, bounds) < 1.25
