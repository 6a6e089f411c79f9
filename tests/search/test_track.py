from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.metrics.temporal import flicker
from pipeline.prior.stylegan2 import Generator
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.synthetic import SyntheticTrack, make_track
from pipeline.search.track import TrackInput, restore_track, restore_tracks_batched


@pytest.fixture(scope="module")
def world(tiny_G: Generator) -> SyntheticTrack:
    return make_track(tiny_G, frames=8, scale=4, seed=3, motion=0.6, keyframe_every=6)


def _images(out: list) -> np.ndarray:
    return np.stack([o.image for o in out])


def test_warm_start_is_cheaper_and_steadier_than_cold_per_frame_search(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig, world: SyntheticTrack
) -> None:
    out, state = restore_track(
        tiny_G, world.crops, settings=fast_settings, space=tiny_space, track_id=7, frame_indices=range(10, 18)
    )
    assert [o.frame_index for o in out] == list(range(10, 18)) and all(o.track_id == 7 for o in out)
    assert all(o.met_bound for o in out) and all(o.invented for o in out)
    assert len(state) == 1
    # Frame t starts from frame t-1's own solution (issue 9): restarted at frame t from the state frame
    # t-1 ended in, the search gives frame t exactly (a start from the track's first frame would not).
    for t in (3, 6):
        _, before = restore_track(
            tiny_G,
            world.crops[:t],
            settings=fast_settings,
            space=tiny_space,
            track_id=7,
            frame_indices=range(10, 10 + t),
        )
        (again,), _ = restore_track(
            tiny_G,
            world.crops[t : t + 1],
            settings=fast_settings,
            space=tiny_space,
            track_id=7,
            frame_indices=[10 + t],
            prev_state=before,
        )
        np.testing.assert_array_equal(again.latents, out[t].latents)
    cold = []
    for t, crop in enumerate(world.crops):  # naive video PULSE: a fresh random start per frame
        cold += restore_track(
            tiny_G, [crop], settings=replace(fast_settings, seed=100 + t), space=tiny_space
        )[0]
    warm_steps = np.mean([o.steps for o in out[1:]])
    cold_steps = np.mean([o.steps for o in cold])
    assert warm_steps <= cold_steps / 2
    assert all(o.steps <= fast_settings.warm_steps for o in out[1:])
    warm_flicker = flicker(_images(out), world.truth).mean()
    cold_flicker = flicker(_images(cold), world.truth).mean()
    assert warm_flicker * 2 < cold_flicker


def test_batched_tracks_match_tracks_restored_alone(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig, world: SyntheticTrack
) -> None:
    other = make_track(tiny_G, frames=3, scale=5, seed=4)  # shorter, other crop size
    a = TrackInput(1, world.crops[:4], [0, 1, 2, 3])
    b = TrackInput(2, other.crops, [5, 6, 7], gray=True)
    together = restore_tracks_batched(tiny_G, [a, b], settings=fast_settings, space=tiny_space)
    alone = [
        restore_tracks_batched(tiny_G, [tr], settings=fast_settings, space=tiny_space)[0] for tr in (a, b)
    ]
    for x, y in zip(together, alone, strict=True):
        assert len(x.restorations) == len(y.restorations)
        for r, s in zip(x.restorations, y.restorations, strict=True):
            # same answer up to float rounding (batched convolutions sum in another order)
            assert r.frame_index == s.frame_index and r.met_bound
            assert np.abs(r.image - s.image).mean() < 5e-3 and abs(r.psnr - s.psnr) < 0.2
    gray = together[1].restorations[0].image
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


def test_crop_size_may_change_along_a_track(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig, world: SyntheticTrack
) -> None:
    big = make_track(tiny_G, frames=3, scale=4, seed=3, motion=0.6, keyframe_every=6)
    small = make_track(tiny_G, frames=3, scale=6, seed=3, motion=0.6, keyframe_every=6)
    crops = [big.crops[0], small.crops[1], big.crops[2]]
    out, _ = restore_track(tiny_G, crops, settings=fast_settings, space=tiny_space)
    assert all(o.met_bound for o in out)


def test_coarse_layers_shared_along_the_track(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig, world: SyntheticTrack
) -> None:
    settings = replace(fast_settings, share_coarse_layers=3)
    out, _ = restore_track(tiny_G, world.crops[:4], settings=settings, space=tiny_space)
    for o in out[1:]:
        assert np.array_equal(o.latents[:3], out[0].latents[:3])
        assert not np.array_equal(o.latents[3:], out[0].latents[3:])
    assert all(o.met_bound for o in out)


def test_smoothing_keeps_every_frame_on_its_target(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig, world: SyntheticTrack
) -> None:
    plain, _ = restore_track(tiny_G, world.crops, settings=fast_settings, space=tiny_space)
    smooth, _ = restore_track(
        tiny_G, world.crops, settings=replace(fast_settings, smooth_sigma=1.5), space=tiny_space
    )
    assert all(o.met_bound for o in smooth)
    assert all(s.steps >= p.steps for s, p in zip(smooth, plain, strict=True))
    assert not np.allclose(_images(smooth), _images(plain), atol=1e-4)


def test_bad_track_input_raises(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    crop = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(SearchError, match="2 crops but 1 frame"):
        restore_tracks_batched(
            tiny_G, [TrackInput(3, [crop, crop], [0])], settings=fast_settings, space=tiny_space
        )
    with pytest.raises(SearchError, match="track 3 frame 9: crop has dtype uint8"):
        restore_track(
            tiny_G,
            [crop.astype(np.uint8)],
            settings=fast_settings,
            space=tiny_space,
            track_id=3,
            frame_indices=[9],
        )
    with pytest.raises(SearchError, match="no crops"):
        restore_track(tiny_G, [], settings=fast_settings, space=tiny_space)
    with pytest.raises(SearchError, match="shape"):
        restore_track(tiny_G, [np.zeros((8, 8, 2), np.float32)], settings=fast_settings, space=tiny_space)
    assert torch.get_num_threads() == 1
