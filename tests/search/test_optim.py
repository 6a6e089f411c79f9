from __future__ import annotations

import torch

from pipeline.search.optim import SphericalAdam, cold_schedule, sphere_radius, warm_schedule


def _quadratic_grad(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 2 * (p - target)


def test_matches_adam_followed_by_projection() -> None:
    """Reference: torch.optim.Adam on one face, then PULSE's projection back to the initial radius."""
    g = torch.Generator().manual_seed(0)
    start = torch.randn(1, 3, 8, generator=g)
    target = torch.randn(1, 3, 8, generator=g)
    ref = start.clone().requires_grad_(True)
    ref_opt = torch.optim.Adam([ref], lr=0.1)
    radius = sphere_radius(start)
    ours = start.clone()
    opt = SphericalAdam([ours])
    for _ in range(10):
        ref_opt.zero_grad()
        ref.grad = _quadratic_grad(ref.detach(), target)
        ref_opt.step()
        with torch.no_grad():
            ref.mul_(radius / sphere_radius(ref))
        opt.step([_quadratic_grad(ours, target)], torch.tensor([0.1]))
    assert torch.allclose(ours, ref.detach(), atol=1e-5)


def test_keeps_radii_moves_only_active_faces_and_respects_masks() -> None:
    g = torch.Generator().manual_seed(1)
    lat = torch.randn(3, 4, 16, generator=g)  # [B, layers, dim]
    noise = torch.randn(3, 1, 4, 4, generator=g)  # [B, 1, H, W]
    before_lat, before_noise = lat.clone(), noise.clone()
    mask = torch.ones(3, 4, 1)
    mask[:, :2] = 0  # the first two layers are frozen
    opt = SphericalAdam([lat, noise], update_masks=[mask, None])
    active = torch.tensor([True, False, True])
    for _ in range(5):
        grads = [torch.randn(3, 4, 16, generator=g), torch.randn(3, 1, 4, 4, generator=g)]
        opt.step(grads, torch.tensor([0.3, 0.3, 0.3]), active=active)
    assert torch.allclose(sphere_radius(lat), sphere_radius(before_lat), atol=1e-4)
    assert torch.allclose(sphere_radius(noise), sphere_radius(before_noise), atol=1e-4)
    assert torch.equal(lat[1], before_lat[1]) and torch.equal(noise[1], before_noise[1])
    assert torch.equal(lat[:, :2], before_lat[:, :2])
    assert not torch.allclose(lat[0, 2:], before_lat[0, 2:])
    assert opt.step_count.tolist() == [5, 0, 5]
    assert not opt.exp_avg[0][1].any() and not opt.exp_avg_sq[1][1].any()  # no moments for face 1


def test_schedules() -> None:
    p = torch.tensor([0.0, 0.45, 0.9, 1.0])
    c = cold_schedule(p)
    assert torch.allclose(c, torch.tensor([0.1, 1.0, 0.1, 0.001]), atol=1e-6)
    w = warm_schedule(torch.linspace(0, 1, 11))
    assert w[0] == 1.0 and torch.all(w[1:] <= w[:-1]) and abs(float(w[-1]) - 0.05) < 1e-6
