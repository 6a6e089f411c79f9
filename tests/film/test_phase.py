"""Phase correlation in torch (pipeline.film.phase) against `cv2.phaseCorrelate`, on real photographs
(skimage) moved by known integer and fractional shifts, with noise, on the CPU always and on CUDA
where present.

Stated tolerances (CPU and CUDA): the shift within 0.05 px of OpenCV's (measured on the CPU: 3.4e-5 px
at worst over 40 random crops), the response within 1e-3 of OpenCV's, and responses ranked as
OpenCV ranks them wherever OpenCV's differ by more than that; the DFT sizes and the Hanning window
are OpenCV's (exact, 1e-7). Weave's tile-median steps measured on tensors are the numpy path's within
0.005 px (measured 1.5e-6; OpenCV's windowing of its inputs in place, which the numpy path's second
step reads, is kept: without it 0.048 px), the harm figure's frame shift within 0.05 px.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from pipeline.film import measure as M
from pipeline.film.phase import hanning, optimal_dft_size, phase_correlate
from pipeline.film.weave import _small, global_shift

TOL_PX = 0.05
TOL_RESPONSE = 1e-3
TOL_WEAVE_PX = 0.005  # weave's steps on tensors against numpy's (measured 1.5e-6 px on the CPU)


def _moved(picture: np.ndarray, d: tuple[float, float]) -> np.ndarray:
    m = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
    return np.asarray(cv2.warpAffine(picture, m, picture.shape[1::-1], flags=cv2.INTER_CUBIC))


def _cv(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> list[float]:
    """[dx, dy, response] of `cv2.phaseCorrelate` on copies (OpenCV leaves an unpadded input
    multiplied by the window in place)."""
    (dx, dy), r = cv2.phaseCorrelate(a.copy(), b.copy(), window)
    return [dx, dy, r]


def _pairs(seed: int, n: int) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """Crops of the camera man and of the astronaut's luma and the same crops moved (integer shifts
    for every other pair), with noise of 5 levels: sizes from 30 to 160 px, so that padded and
    unpadded, even and odd DFT sizes all occur."""
    rng = np.random.default_rng(seed)
    photos = [skimage.data.camera(), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)]
    out = []
    for k in range(n):
        photo = photos[k % 2].astype(np.float32)
        h, w = int(rng.integers(30, 140)), int(rng.integers(30, 160))
        y0, x0 = int(rng.integers(10, 300)), int(rng.integers(10, 300))
        d = tuple(float(v) for v in rng.uniform(-6, 6, 2))
        if k % 2:
            d = (float(round(d[0])), float(round(d[1])))
        b = _moved(photo, d)[y0 : y0 + h, x0 : x0 + w] + rng.normal(0, 5, (h, w)).astype(np.float32)
        out.append((photo[y0 : y0 + h, x0 : x0 + w].copy(), b.astype(np.float32), d))
    return out


def test_dft_sizes_and_the_window_are_opencvs(device: str) -> None:
    assert [optimal_dft_size(n) for n in range(1, 700)] == [cv2.getOptimalDFTSize(n) for n in range(1, 700)]
    for h, w in ((20, 30), (45, 61), (72, 128)):
        want = cv2.createHanningWindow((w, h), cv2.CV_32F)
        assert float(np.abs(hanning(h, w, device).cpu().numpy() - want).max()) < 1e-7


def test_shifts_of_real_photographs_are_opencvs(device: str) -> None:
    import torch

    sizes = set()
    for a, b, d in _pairs(seed=0, n=24):
        h, w = a.shape
        sizes.add((optimal_dft_size(h) % 2, (optimal_dft_size(h), optimal_dft_size(w)) == (h, w)))
        cx, cy, cr = _cv(a, b, cv2.createHanningWindow((w, h), cv2.CV_32F))
        ta, tb = torch.tensor(a, device=device), torch.tensor(b, device=device)
        got = phase_correlate(ta, tb, hanning(h, w, device))[0].cpu().numpy()
        assert abs(got[0] - cx) < TOL_PX and abs(got[1] - cy) < TOL_PX, (a.shape, d)
        assert abs(got[2] - cr) < TOL_RESPONSE
        if cr > 0.5 and min(optimal_dft_size(h) % 2, optimal_dft_size(w) % 2) == 0:
            assert np.hypot(got[0] - d[0], got[1] - d[1]) < 1.0  # it does find the shift
    assert len(sizes) >= 3  # odd and even DFT sizes, padded and unpadded pictures were among them


def test_a_batch_ranks_its_responses_as_opencv_does(device: str) -> None:
    """Nine tiles of one frame pair in one batch (as weave's): each tile's shift and response is
    OpenCV's, and the tiles are ranked by response as OpenCV ranks them."""
    import torch

    photo = skimage.data.camera().astype(np.float32)[::2, ::2]  # [256, 256]
    moved = _moved(photo, (1.6, -2.3)) + np.random.default_rng(3).normal(0, 8, photo.shape).astype(np.float32)
    th, tw = 80, 84
    tiles = [(slice(i * th, (i + 1) * th), slice(j * tw, (j + 1) * tw)) for i in range(3) for j in range(3)]
    win = cv2.createHanningWindow((tw, th), cv2.CV_32F)
    want = np.array([_cv(photo[t], moved[t].astype(np.float32), win) for t in tiles])
    ta = torch.stack([torch.tensor(photo[t]) for t in tiles]).to(device)
    tb = torch.stack([torch.tensor(moved[t], dtype=torch.float32) for t in tiles]).to(device)
    got = phase_correlate(ta, tb, hanning(th, tw, device)).cpu().numpy()
    assert float(np.abs(got[:, :2] - want[:, :2]).max()) < TOL_PX
    assert float(np.abs(got[:, 2] - want[:, 2]).max()) < TOL_RESPONSE
    for i in range(9):
        for j in range(9):
            if want[i, 2] > want[j, 2] + TOL_RESPONSE:
                assert got[i, 2] > got[j, 2]
    assert np.ptp(want[:, 2]) > 0.1  # the ranking was tested on responses that differ


def test_weave_and_the_harm_figure_measure_on_the_device_as_numpy(device: str) -> None:
    """Three frames (384 x 288 reduced: tiles of a DFT size, which OpenCV would leave windowed were it
    given the frames themselves): both steps as numpy's, and neither path changes the frames it
    measures (the second step reads the first step's frame as it was)."""
    import torch

    first = cv2.resize(skimage.data.astronaut(), (480, 360), interpolation=cv2.INTER_AREA).astype(np.float32)
    clip = [first, _moved(first, (2.4, -1.3)), _moved(first, (1.1, 0.6))]
    clip = [np.clip(c, 0, 255).astype(np.uint8) for c in clip]
    small = [_small(c.astype(np.float32) / 255) for c in clip]
    on_device = [_small(torch.tensor(c.astype(np.float32) / 255, device=device)) for c in clip]
    for (a, f), (ta, tf) in zip(small, on_device, strict=True):
        assert f == tf > 1.0 and tuple(ta.shape) == a.shape
        assert float(np.abs(ta.cpu().numpy() - a).max()) <= 1.0  # the reduced luma within a level
    truth = [(2.4, -1.3), (-1.3, 1.9)]
    before = [a.copy() for a, _ in small] + [ta.clone().cpu().numpy() for ta, _ in on_device]
    for k in range(2):
        want = global_shift(small[k][0], small[k + 1][0])
        got = global_shift(on_device[k][0], on_device[k + 1][0])
        assert want is not None and got is not None
        after = [a for a, _ in small] + [ta.cpu().numpy() for ta, _ in on_device]
        assert all(np.array_equal(x, y) for x, y in zip(before, after, strict=True)), "a frame was changed"
        assert float(np.abs(got - want).max()) < TOL_WEAVE_PX
        assert float(np.abs(want * small[0][1] - truth[k]).max()) < 0.4  # the shift, found
    tensors = [torch.tensor(c, device=device) for c in clip]
    assert M.frame_shift(tensors[1], tensors[0]) == pytest.approx(M.frame_shift(clip[1], clip[0]), abs=TOL_PX)
