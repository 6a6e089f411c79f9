from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.prior.stylegan2 import Generator
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.loss import bound_psnr, downscale, geocross, luminance
from pipeline.search.search import random_state, render, search
from pipeline.search.state import SearchState


def _targets(
    G: Generator, space: GaussianizedW, seeds: list[int], size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truth images [B, 3, R, R] of random latents and their downscaled targets [B, 3, size, size]."""
    with torch.no_grad():
        hr = render(G, space, random_state(G, seeds)).clamp(0, 1)
    return hr, downscale(hr, (size, size)).clamp(0, 1)


def test_geocross_matches_pairwise_definition() -> None:
    v = torch.randn(2, 4, 16)
    v = v / v.norm(dim=-1, keepdim=True) * 4  # the search keeps vectors on spheres of equal radius
    ref = torch.zeros(2)
    for b in range(2):
        for i in range(4):
            for j in range(4):
                cos = torch.dot(v[b, i], v[b, j]) / (v[b, i].norm() * v[b, j].norm())
                ref[b] += torch.arccos(cos.clamp(-1, 1)) ** 2
    ref = ref / 16 * 16 / 8  # mean over pairs, x dim / 8
    assert torch.allclose(geocross(v), ref, atol=1e-3)
    same = v[:, :1].expand(2, 4, 16)
    assert float(geocross(same).abs().max()) < 1e-3


def test_downscale_any_factor_and_luminance() -> None:
    img = torch.rand(2, 3, 32, 32)
    assert downscale(img, (7, 7)).shape == (2, 3, 7, 7)
    flat = torch.full((1, 3, 32, 32), 0.25)
    assert torch.allclose(downscale(flat, (5, 5)), torch.full((1, 3, 5, 5), 0.25), atol=1e-5)
    assert torch.allclose(luminance(torch.ones(1, 3, 2, 2)), torch.ones(1, 1, 2, 2))


def test_search_meets_the_bound_and_stops_early(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    _, tg = _targets(tiny_G, tiny_space, [100, 101, 102], 8)
    res = search(tiny_G, tg, settings=fast_settings, space=tiny_space, seeds=[1, 2, 3])
    assert res.images.shape == (3, 3, 32, 32) and res.ws.shape == (3, tiny_G.num_ws, tiny_G.w_dim)
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1
    assert res.met_bound.all()
    assert (res.psnr >= bound_psnr(fast_settings.eps)).all()
    # the reported consistency is measured: recompute it from the returned image
    mse = (downscale(res.images, (8, 8)) - tg).pow(2).mean((1, 2, 3))
    assert torch.allclose(res.psnr, 10 * torch.log10(1 / mse), atol=0.05)
    assert (res.steps < fast_settings.steps).all()  # stopped at the tight bound, not at the budget
    # the returned latents are the image's latents
    with torch.no_grad():
        again = render(tiny_G, tiny_space, res.state).clamp(0, 1)
    assert torch.allclose(again, res.images, atol=1e-5)
    assert torch.allclose(tiny_space.to_w(res.state.latents), res.ws, atol=1e-6)


def test_search_is_deterministic_and_faces_are_independent(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    _, tg = _targets(tiny_G, tiny_space, [7, 8], 8)
    a = search(tiny_G, tg, settings=fast_settings, space=tiny_space, seeds=[5, 6])
    b = search(tiny_G, tg, settings=fast_settings, space=tiny_space, seeds=[5, 6])
    assert torch.equal(a.ws, b.ws) and torch.equal(a.steps, b.steps)
    alone = search(tiny_G, tg[1:], settings=fast_settings, space=tiny_space, seeds=[6])
    # the same answer up to float rounding (a batched convolution sums in another order)
    assert float((alone.images[0] - a.images[1]).abs().mean()) < 5e-3
    assert abs(float(alone.psnr[0] - a.psnr[1])) < 0.2 and abs(int(alone.steps[0]) - int(a.steps[1])) <= 2
    other = search(tiny_G, tg, settings=fast_settings, space=tiny_space, seeds=[50, 60])
    assert not torch.allclose(other.ws, a.ws, atol=1e-2)


def test_targets_of_different_sizes_in_one_batch(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    hr, _ = _targets(tiny_G, tiny_space, [11, 12, 13], 8)
    sizes = [8, 5, 8]
    tgs = [downscale(hr[i : i + 1], (s, s))[0].clamp(0, 1) for i, s in enumerate(sizes)]
    res = search(tiny_G, tgs, settings=fast_settings, space=tiny_space, seeds=[1, 2, 3])
    assert res.met_bound.all()
    for i, s in enumerate(sizes):
        mse = (downscale(res.images[i : i + 1], (s, s))[0] - tgs[i]).pow(2).mean()
        assert abs(float(10 * torch.log10(1 / mse)) - float(res.psnr[i])) < 0.05


def test_gray_faces_compare_luminance_and_come_out_gray(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    _, tg = _targets(tiny_G, tiny_space, [21, 22], 8)
    gray_target = luminance(tg)  # [2, 1, 8, 8]: one channel means gray footage
    res = search(tiny_G, [gray_target[0], tg[1]], settings=fast_settings, space=tiny_space, seeds=[1, 2])
    assert res.met_bound.all()
    img = res.images
    assert torch.equal(img[0, 0], img[0, 1]) and torch.equal(img[0, 1], img[0, 2])
    assert not torch.equal(img[1, 0], img[1, 1])
    lum_mse = (luminance(downscale(img[:1], (8, 8))) - gray_target[:1]).pow(2).mean()
    assert abs(float(10 * torch.log10(1 / lum_mse)) - float(res.psnr[0])) < 0.1
    # the flag does the same for a three-channel target of gray footage
    flagged = search(tiny_G, tg[:1], settings=fast_settings, space=tiny_space, seeds=[1], gray=True)
    assert torch.equal(flagged.images[0, 0], flagged.images[0, 2])


def test_warm_start_from_a_solution_costs_nothing(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    _, tg = _targets(tiny_G, tiny_space, [31], 8)
    cold = search(tiny_G, tg, settings=fast_settings, space=tiny_space, seeds=[4])
    warm = search(tiny_G, tg, settings=fast_settings, space=tiny_space, prev=cold.state)
    assert int(warm.steps[0]) == 0 and torch.allclose(warm.ws, cold.ws)
    # a warm start on a new target is pulled towards prev but still meets the bound, within its budget
    _, tg2 = _targets(tiny_G, tiny_space, [32], 8)
    moved = search(tiny_G, 0.85 * tg + 0.15 * tg2, settings=fast_settings, space=tiny_space, prev=cold.state)
    assert bool(moved.met_bound[0]) and 0 < int(moved.steps[0]) <= fast_settings.warm_steps


def test_truncated_synthesis_still_meets_the_bound_at_full_size(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig
) -> None:
    _, tg = _targets(tiny_G, tiny_space, [41, 42], 4)
    settings = replace(fast_settings, truncate_factor=2.0)  # 4 px targets: the loss sees 8 px synthesis
    res = search(tiny_G, tg, settings=settings, space=tiny_space, seeds=[1, 2])
    assert res.images.shape[-1] == 32 and res.met_bound.all()
    mse = (downscale(res.images, (4, 4)) - tg).pow(2).mean((1, 2, 3))
    assert (mse <= settings.eps).all()


def test_bad_targets_raise(tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig) -> None:
    with pytest.raises(SearchError, match="at most"):
        search(tiny_G, torch.rand(1, 3, 64, 64), settings=fast_settings, space=tiny_space)
    with pytest.raises(SearchError, match="NaN"):
        search(tiny_G, torch.full((1, 3, 8, 8), float("nan")), settings=fast_settings, space=tiny_space)
    with pytest.raises(SearchError, match="shape"):
        search(tiny_G, [torch.rand(2, 8, 8)], settings=fast_settings, space=tiny_space)
    with pytest.raises(SearchError, match="autocast"):
        search(
            tiny_G, torch.rand(1, 3, 8, 8), settings=replace(fast_settings, autocast="fp8"), space=tiny_space
        )
    state = random_state(tiny_G, [1, 2])
    with pytest.raises(SearchError, match="prev has 2 faces"):
        search(tiny_G, torch.rand(1, 3, 8, 8), settings=fast_settings, space=tiny_space, prev=state)


def test_state_blend_stays_on_the_spheres(tiny_G: Generator) -> None:
    a, b = random_state(tiny_G, [1]), random_state(tiny_G, [2])
    mid = SearchState.lerp(a, b, 0.5)
    ra, rb = a.latents.norm(dim=-1), b.latents.norm(dim=-1)
    assert torch.allclose(mid.latents.norm(dim=-1), (ra + rb) / 2, atol=1e-4)
    assert torch.allclose(SearchState.lerp(a, b, 0.0).latents, a.latents, atol=1e-5)
