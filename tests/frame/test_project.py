"""The downscale operator (the search's, as matrices) and projection onto the footage's consistent set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.frame.project import downscale, project_region, region_psnr, window
from pipeline.search.loss import downscale as search_downscale


@pytest.mark.parametrize(("hr", "lr"), [((180, 160), (90, 80)), ((64, 64), (23, 37)), ((96, 66), (24, 33))])
def test_downscale_is_the_search_operator(hr: tuple[int, int], lr: tuple[int, int]) -> None:
    x = np.random.default_rng(0).random((*hr, 3))
    ours = downscale(x, lr)
    theirs = search_downscale(torch.from_numpy(x).permute(2, 0, 1)[None], lr)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_projection_reaches_the_footage_and_moves_only_the_masked_pixels() -> None:
    rng = np.random.default_rng(1)
    source = rng.random((40, 50, 3)) * 0.6 + 0.2  # [h, w, 3]
    out = rng.random((80, 100, 3)).astype(np.float32)  # an output that ignores the footage
    win = window((10, 8, 30, 28), source.shape[:2], out.shape[:2])
    assert win is not None
    (a0, a1), (b0, b1) = win.hy, win.hx
    mask = np.zeros((a1 - a0, b1 - b0))
    mask[6:-6, 6:-6] = 1.0
    lr_mask = np.zeros((win.ly[1] - win.ly[0], win.lx[1] - win.lx[0]), bool)
    lr_mask[4:-4, 4:-4] = True
    before = out.copy()
    proj = project_region(out, source, win, mask, lr_mask, steps=30, target_db=45.0, damping=0.3)
    assert proj.psnr_before < 15 and proj.psnr_after >= 45.0
    assert region_psnr(out, source, win, lr_mask.astype(float)) >= 45.0  # measured again on the result
    moved = np.abs(out - before).max(axis=2) > 0
    allowed = np.zeros(out.shape[:2], bool)
    allowed[a0:a1, b0:b1] = mask > 0
    assert moved.any() and not (moved & ~allowed).any()  # nothing outside the mask changed


def test_exact_projection_is_one_step() -> None:
    """Without mask and damping, one back-projection step through the pseudo-inverse is exact."""
    rng = np.random.default_rng(2)
    source = rng.random((20, 20, 1))
    out = rng.random((40, 40, 1)).astype(np.float32) * 0.2 + 0.4
    win = window((0, 0, 20, 20), (20, 20), (40, 40))
    assert win is not None
    proj = project_region(out, source * 0.2 + 0.4, win, np.ones((40, 40)), np.ones((20, 20), bool), 1, 200.0)
    assert proj.steps == 1 and proj.psnr_after > 60


def test_damped_projection_falls_back_to_exact_steps_to_keep_the_floor() -> None:
    """White-noise footage is all fine detail: damped steps alone stop short; the floor still holds."""
    rng = np.random.default_rng(3)
    source = rng.random((30, 30, 1)) * 0.4 + 0.3  # away from 0 and 1: no clipping in the way
    win = window((0, 0, 30, 30), (30, 30), (60, 60))
    assert win is not None
    mask, lr_mask = np.ones((60, 60)), np.ones((30, 30), bool)
    damped = project_region(np.full((60, 60, 1), 0.5, np.float32), source, win, mask, lr_mask, 2, 60.0, 0.3)
    floored = project_region(
        np.full((60, 60, 1), 0.5, np.float32), source, win, mask, lr_mask, 2, 60.0, 0.3, 45.0
    )
    assert damped.psnr_after < 45.0 <= floored.psnr_after
