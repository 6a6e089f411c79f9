from __future__ import annotations

import itertools
import math
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
    chunks = plan_chunks(15, 5, 3)
    bounds = boundary_transitions(chunks, 3)
    assert boundary_ratio(change, bounds) < 1.25
    # The step onto each anchor, measured alone (issue 9: averaged with the landing, a jump is diluted).
    # Measured here: 0.68 and 1.11 x the calm frames' change; anchors solved cold instead: 4.4 and 4.7.
    calm = np.ones(change.shape[0], bool)
    calm[bounds] = False
    for c in chunks[1:]:
        assert change[c.start - 1] < 2.0 * change[calm].mean(), f"jump onto the anchor at {c.start}"


@pytest.mark.parametrize("batch_size", [1, 8])
def test_chunked_track_through_the_stage_units_equals_restore_track_chunked(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig, batch_size: int
) -> None:
    """The executors' units for a long track (anchor chain, then each chunk on its own from stored
    anchor states) give what `restore_track_chunked` gives; short tracks stay whole, batched.

    `restore_track_chunked` advances the chunks in lockstep, up to batch_size faces per search call,
    while a worker searches one chunk alone: bit for bit equal when each chunk is alone there too
    (batch_size 1); otherwise batch companions change the last float bits, so the promise is compared.
    """
    from pipeline.config import Config
    from pipeline.faces import store
    from pipeline.search import units as stages
    from pipeline.types import FaceCrop

    world = make_track(tiny_G, frames=15, scale=4, seed=11, motion=0.6, keyframe_every=6)
    settings = replace(fast_settings, chunk_len=5, chunk_landing=2, batch_size=batch_size)
    cfg = replace(Config(), search=settings)
    crops = [
        FaceCrop(7, 100 + i, np.asarray(c, np.float32), np.eye(2, 3), False)
        for i, c in enumerate(world.crops)
    ]
    plan = stages.search_plan({3: 5, 7: 15, 1: 4, 2: 6}, replace(cfg, search=replace(settings, batch_size=2)))
    assert plan.units == [(1, 2), (3,)]  # short tracks: whole, batch_size at a time
    assert list(plan.chunked) == [7] and plan.chunked[7] == plan_chunks(15, 5, 2)
    off = stages.search_plan({3: 5, 7: 15}, replace(cfg, search=replace(settings, chunk_len=0, batch_size=2)))
    assert (off.units, off.chunked) == ([(3, 7)], {})
    smooth = stages.search_plan({7: 15}, replace(cfg, search=replace(settings, smooth_sigma=1.0)))
    assert (smooth.units, smooth.chunked) == ([(7,)], {})  # smoothing needs the whole track at once

    chunks = plan.chunked[7]
    anchors, states = stages.search_anchors(tiny_G, tiny_space, crops, chunks, cfg)
    # the states travel through the work directory between units: stored exactly
    arrays = {**store.restorations_to_arrays(anchors), **stages.states_to_arrays(states)}
    stored = stages.states_from_arrays(arrays)
    assert len(stored) == len(chunks) == 3
    parts = [
        stages.search_chunk(
            tiny_G,
            tiny_space,
            crops,
            chunks,
            c.index,
            stored[c.index],
            stored[c.index + 1] if c.index < 2 else None,
            cfg,
        )
        for c in reversed(chunks)  # independent of each other: any order, any worker
    ][::-1]
    faces = stages.join_chunked(store.restorations_from_arrays(arrays), parts)
    with pytest.raises(SearchError, match="crops of one track"):
        stages.search_chunk(tiny_G, tiny_space, crops[:-1], chunks, 0, stored[0], stored[1], cfg)

    want, _ = restore_track_chunked(
        tiny_G, world.crops, settings=settings, space=tiny_space, track_id=7, frame_indices=range(100, 115)
    )
    want = stages.as_stored(want)
    assert [(f.track_id, f.frame_index) for f in faces] == [(7, 100 + i) for i in range(15)]
    bound_db = 10.0 * math.log10(1.0 / settings.eps)
    assert sum(abs(r.psnr - bound_db) >= 0.25 for r in want) >= 10  # the comparison is not left empty
    for got, ref in zip(faces, want, strict=True):
        if batch_size == 1:
            assert (got.steps, got.met_bound, got.psnr) == (ref.steps, ref.met_bound, ref.psnr)
            assert np.array_equal(got.latents, ref.latents)
            assert np.array_equal(got.image, ref.image)
        else:
            # Batch companions change the order of float sums, and an optimisation amplifies that
            # differently on each CPU (4.2e-4 in the latents on one machine, 0 on another). The
            # promise a user relies on: the same bound met, the same work, and the same picture
            # to within one 8-bit level. A face that ends within 0.25 dB of the bound may meet it on
            # one CPU and miss it on another (and then take other steps): only its PSNR is compared.
            assert got.psnr == pytest.approx(ref.psnr, abs=0.25)
            if abs(ref.psnr - bound_db) < 0.25:
                continue
            assert got.met_bound == ref.met_bound and abs(got.steps - ref.steps) <= 1
            assert float(np.abs(got.image - ref.image).max()) <= 1 / 255
