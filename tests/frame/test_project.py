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


def _photo_case() -> tuple[np.ndarray, np.ndarray, object, np.ndarray, np.ndarray]:
    """A real photograph's face (skimage's astronaut) as footage, and an output that contradicts it:
    the footage upscaled with the face replaced by a blurred, brightened copy, under a soft mask."""
    import cv2
    from skimage import data

    photo = data.astronaut()[40:200, 150:310].astype(np.float32) / 255  # [160, 160, 3] the face
    source = cv2.resize(photo, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float64)
    out = np.clip(cv2.resize(photo, (96, 96), interpolation=cv2.INTER_CUBIC), 0, 1)
    out[20:76, 20:76] = np.clip(cv2.GaussianBlur(out[20:76, 20:76], (0, 0), 3) * 1.2, 0, 1)
    win = window((6, 6, 42, 42), source.shape[:2], out.shape[:2])
    assert win is not None
    (a0, a1), (b0, b1) = win.hy, win.hx
    yy, xx = np.mgrid[a0:a1, b0:b1]
    mask = np.clip(1.5 - np.hypot(yy - 48, xx - 48) / 20, 0, 1)  # soft disc over the face
    lr_mask = np.zeros((win.ly[1] - win.ly[0], win.lx[1] - win.lx[0]), bool)
    lr_mask[8:-8, 8:-8] = True
    return source, out.astype(np.float32), win, mask, lr_mask


@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_torch_projection_matches_the_numpy_one_on_a_photograph(device: str, damping: float) -> None:
    """The torch projection (the same code on CPU and CUDA) against today's numpy one: pixels within
    2e-5 on the CPU (1e-3 on CUDA, whose matmuls may use TF32-free but reordered sums), the same
    steps, the PSNR within 0.01 dB, the bound reached."""
    from tests.frame.numpy_reference import project_region as numpy_project

    source, out, win, mask, lr_mask = _photo_case()
    ref_out, ours_out = out.copy(), out.copy()
    ref = numpy_project(ref_out, source, win, mask, lr_mask, 12, 45.0, damping, 40.0)  # type: ignore[arg-type]
    ours = project_region(ours_out, source, win, mask, lr_mask, 12, 45.0, damping, 40.0, device=device)  # type: ignore[arg-type]
    assert ref.psnr_before < 30 and ref.psnr_after >= 40.0  # the case is one projection fixes
    tol = 2e-5 if device == "cpu" else 1e-3
    assert np.abs(ours_out - ref_out).max() <= tol
    assert ours.steps == ref.steps
    assert abs(ours.psnr_before - ref.psnr_before) < 0.01 and abs(ours.psnr_after - ref.psnr_after) < 0.01
    assert region_psnr(ours_out, source, win, lr_mask.astype(float)) >= 40.0  # type: ignore[arg-type]
