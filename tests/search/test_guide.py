"""Reference-guided search (pipeline.search.guide): photos of a person steer the search, the bound holds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from pipeline.config import SearchConfig
from pipeline.prior.stylegan2 import Generator
from pipeline.search.guide import person_latents, reference_latents
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.synthetic import make_track, reference_renders
from pipeline.search.track import restore_track


def _latent_error(out: list, ws: torch.Tensor) -> float:
    found = torch.from_numpy(np.stack([o.latents for o in out]))
    return float((found - ws).pow(2).mean((1, 2)).sqrt().mean())


def test_a_persons_latents_are_one_w_the_mean_of_their_photos(tiny_space: GaussianizedW) -> None:
    lat = torch.randn(3, 4, tiny_space.w_dim)
    one = person_latents(tiny_space, lat)
    assert one.shape == (1, 4, tiny_space.w_dim)
    w = tiny_space.to_w(one)
    assert torch.allclose(w, w[:, :1].expand_as(w))  # the same w at every layer
    assert torch.allclose(w[0, 0], tiny_space.to_w(lat).mean((0, 1)), atol=1e-5)


def test_a_hard_pull_to_a_wrong_person_still_meets_the_bound(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    """A pull far stronger than the fit, towards someone else: the guided search alone ends near
    17 dB; the faces are searched again without it, and every frame meets the bound."""
    world = make_track(tiny_G, frames=3, scale=4, seed=11, motion=0.3)
    other = make_track(tiny_G, frames=1, scale=4, seed=12)  # someone else
    hard = replace(fast_settings, guide_weight=1e3)
    out, _ = restore_track(
        tiny_G, world.crops, settings=hard, space=tiny_space, guide=tiny_space.from_w(other.ws)
    )
    assert all(o.met_bound for o in out)
    assert min(o.psnr for o in out) >= 10 * np.log10(1 / hard.eps)


def test_a_moderate_pull_chooses_the_guide_among_consistent_faces(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    world = make_track(tiny_G, frames=3, scale=4, seed=11, motion=0.3)
    other = make_track(tiny_G, frames=1, scale=4, seed=12)
    pulled = replace(fast_settings, guide_weight=5.0)
    out, _ = restore_track(
        tiny_G, world.crops, settings=pulled, space=tiny_space, guide=tiny_space.from_w(other.ws)
    )
    free, _ = restore_track(tiny_G, world.crops, settings=pulled, space=tiny_space)
    assert all(o.met_bound for o in out)
    target = other.ws.expand(3, -1, -1)
    assert _latent_error(out, target) < 0.9 * _latent_error(free, target)


def test_guided_search_is_closer_to_the_true_latents(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    """The known-answer world: references are renders of the true latents under other noise maps and
    crops; at the same settings the guided track is closer to the truth than the unguided one."""
    guided, unguided = [], []
    for w in range(3):
        world = make_track(tiny_G, frames=6, scale=8, seed=100 + w, motion=0.6)
        refs = reference_renders(tiny_G, world.ws[[0, 3, 5]], seed=200 + w)
        (guide,) = reference_latents(tiny_G, tiny_space, [refs], settings=fast_settings)
        out, _ = restore_track(tiny_G, world.crops, settings=fast_settings, space=tiny_space, guide=guide)
        free, _ = restore_track(tiny_G, world.crops, settings=fast_settings, space=tiny_space)
        assert all(o.met_bound for o in out)
        guided.append(_latent_error(out, world.ws))
        unguided.append(_latent_error(free, world.ws))
    assert np.mean(guided) < 0.95 * np.mean(unguided), (guided, unguided)


def test_a_chunked_guided_track_meets_the_bound_and_is_pulled_to_the_reference(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    """The known-answer world of evaluate_search.py --reference, the track in chunks of 3 (anchors,
    then chunks landing on the next anchor): guided, every frame meets the bound, and its latents are
    closer to the reference person's than the unguided chunks' are, on every world."""
    from pipeline.search.chunks import restore_track_chunked
    from pipeline.search.state import Guide

    chunked = replace(fast_settings, chunk_len=3, chunk_landing=1)
    for w in range(2):
        world = make_track(tiny_G, frames=7, scale=8, seed=300 + w, motion=0.6)
        refs = reference_renders(tiny_G, world.ws[[0, 3, 6]], seed=400 + w)
        (guide,) = reference_latents(tiny_G, tiny_space, [refs], settings=fast_settings)
        code = tiny_space.to_w(guide).expand(7, -1, -1)
        out, _ = restore_track_chunked(
            tiny_G, world.crops, settings=chunked, space=tiny_space, guide=Guide(guide)
        )
        free, _ = restore_track_chunked(tiny_G, world.crops, settings=chunked, space=tiny_space)
        assert len(out) == 7 and all(o.met_bound for o in out)
        assert _latent_error(out, code) < 0.8 * _latent_error(free, code), w
        assert _latent_error(out, world.ws) < 0.9 * _latent_error(free, world.ws), w  # and to the truth
