"""Film cleaning's torch operations (`film.device`): the same code on the CPU and on CUDA, each
checked against the OpenCV call it replaces on the astronaut photograph (values in [0, 1]; the CUDA
limits are looser, its float arithmetic is not the CPU's):

| op | OpenCV | tolerance (CPU) |
|---|---|---|
| translate (weave) | warpAffine INTER_CUBIC, reflect-101 | 5e-5 |
| area_resize | resize INTER_AREA | 1e-6 |
| bilinear_resize | resize INTER_LINEAR | 1e-6 |
| gray8 | cvtColor RGB2GRAY of the 8-bit frame | exact |
| median_blur (all, every other row, some columns) | medianBlur | exact |
| box3, sobel | blur 3 x 3, Sobel ksize 3 (reflect-101) | 1e-6 |
| dilate3 | dilate 3 x 3 | exact |
| remap (motion.warp) | remap INTER_LINEAR, replicate (OpenCV rounds weights to 1/32 px) | 0.05 levels |
| bilateral (line denoise) | bilateralFilter d = 5 (OpenCV tabulates the colour weight) | 0.01 levels |

and a whole weave-cleaning run within one 8-bit level, the shifts applied within 1e-3 px summed over
its frames (phase correlation in torch: tests/film/test_phase.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from pipeline.config import FilmConfig
from pipeline.errors import ConfigError
from pipeline.film import synthetic as S
from pipeline.film import torch_ops as T
from pipeline.film.clean import check_config, clean_frames
from pipeline.film.motion import warp
from pipeline.film.torch_ops import translate
from pipeline.film.weave import translate as numpy_translate
from pipeline.film.window import gray8, luma


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """[120, 160, 3] float32 in [0, 1]: the astronaut."""
    small = cv2.resize(skimage.data.astronaut(), (160, 120), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255


def _t(x: np.ndarray, device: str):  # type: ignore[no-untyped-def]
    import torch

    return torch.tensor(x, device=device)


def _tol(device: str, cpu: float, cuda: float) -> float:
    return cpu if device == "cpu" else cuda


@pytest.mark.parametrize("size", [(64, 48), (61, 45), (32, 24)])
def test_area_resize_is_inter_area(device: str, photo: np.ndarray, size: tuple[int, int]) -> None:
    want = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    got = T.to_numpy(T.area_resize(_t(photo, device), size))
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) < _tol(device, 1e-6, 1e-5)


def test_bilinear_resize_is_inter_linear(device: str) -> None:
    gains = np.random.default_rng(0).uniform(0.8, 1.2, (3, 3)).astype(np.float32)
    want = cv2.resize(gains, (160, 120), interpolation=cv2.INTER_LINEAR)
    got = T.to_numpy(T.bilinear_resize(_t(gains, device), (160, 120)))
    assert float(np.abs(got - want).max()) < _tol(device, 1e-6, 1e-5)
    assert float(np.ptp(got)) > 0.1  # a field, not a constant


def test_gray8_and_luma_are_opencvs(device: str, photo: np.ndarray) -> None:
    assert np.array_equal(gray8(_t(photo, device)), gray8(photo))
    assert float(np.abs(T.to_numpy(luma(_t(photo, device))) - luma(photo)).max()) < 1e-6


@pytest.mark.parametrize("k", [5, 11])
def test_median_blur_is_opencvs(device: str, photo: np.ndarray, k: int) -> None:
    import torch

    y8 = gray8(photo)
    want = cv2.medianBlur(y8, k)
    t = _t(y8, device)
    assert np.array_equal(T.to_numpy(T.median_blur(t, k)), want)
    assert np.array_equal(T.to_numpy(T.median_blur(t, k, row_step=2)), want[::2])
    cols = np.array([0, 3, 80, 158, 159])
    got = T.median_blur(t, k, cols=torch.as_tensor(cols, device=device))
    assert np.array_equal(T.to_numpy(got), want[:, cols])


def test_box_sobel_and_dilate_are_opencvs(device: str, photo: np.ndarray) -> None:
    tol = _tol(device, 1e-6, 1e-5)
    y = luma(photo)
    assert float(np.abs(T.to_numpy(T.box3(_t(y, device))) - cv2.blur(y, (3, 3))).max()) < tol
    gx, gy = T.sobel(_t(photo, device))
    assert float(np.abs(T.to_numpy(gx) - cv2.Sobel(photo, cv2.CV_32F, 1, 0, ksize=3)).max()) < 4 * tol
    assert float(np.abs(T.to_numpy(gy) - cv2.Sobel(photo, cv2.CV_32F, 0, 1, ksize=3)).max()) < 4 * tol
    mask = np.random.default_rng(1).random((120, 160)) > 0.97
    want = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert np.array_equal(T.to_numpy(T.dilate3(_t(mask, device))), want)


@pytest.mark.parametrize("factor", [1.0, 2.0])
def test_warp_is_opencvs_remap(device: str, photo: np.ndarray, factor: float) -> None:
    h, w = (120, 160) if factor == 1.0 else (60, 80)
    fl = np.random.default_rng(2).normal(0.0, 2.0, (h, w, 2)).astype(np.float32)
    want, want_inside = warp(photo, fl, factor)
    got, inside = warp(_t(photo, device), fl, factor)
    assert float(np.abs(T.to_numpy(got) - want).max()) < 0.05 / 255  # OpenCV: 1/32-px weights
    assert np.array_equal(T.to_numpy(inside), want_inside) and not want_inside.all()


def test_bilateral_is_opencvs(device: str, photo: np.ndarray) -> None:
    want = cv2.bilateralFilter(photo, 5, 8 / 255, 2.0)
    got = T.to_numpy(T.bilateral(_t(photo, device), 8 / 255, 2.0, 5))
    assert float(np.abs(got - want).max()) < _tol(device, 0.01, 0.05) / 255
    assert float(np.abs(want - photo).max()) > 2 / 255  # it does smooth


@pytest.mark.parametrize("d", [(1.3, -0.7), (0.02, 0.0), (-3.6, 2.25), (7.9, -7.9)])
def test_translate_is_weaves(device: str, d: tuple[float, float]) -> None:
    photo = cv2.resize(skimage.data.astronaut(), (160, 120), interpolation=cv2.INTER_AREA)
    image = photo.astype(np.float32) / 255
    want = numpy_translate(image, np.array(d))
    got = translate(image, np.array(d), device)
    assert got.dtype == np.float32 and got.shape == image.shape
    tol = 5e-5 if device == "cpu" else 1e-3
    assert float(np.abs(got - want).max()) < tol
    assert float(np.abs(got - image).max()) > (0.05 if max(map(abs, d)) >= 1 else 1e-3)  # it did move


def test_weave_run_on_the_device_matches_numpy(device: str) -> None:
    clip = S.pan_zoom(skimage.data.astronaut(), (128, 96), 16)
    bad, _ = S.add_weave(clip, 2.0, seed=2)
    runs = {}
    for name, film in (("numpy", FilmConfig(weave=True)), ("torch", FilmConfig(weave=True, device=device))):
        it = clean_frames(S.as_frames(bad), film, start=0, end=len(bad))
        runs[name] = ([f.image for f in it], it.stats)
    (want, want_stats), (got, got_stats) = runs["numpy"], runs["torch"]
    assert got_stats.weave_frames == want_stats.weave_frames > 0
    # the shifts measured in torch (pipeline.film.phase; tests/film/test_phase.py): 16 frames' sum
    # within 1e-3 px (measured 6e-6)
    assert got_stats.weave_px_sum == pytest.approx(want_stats.weave_px_sum, abs=1e-3)
    for g, w in zip(got, want, strict=True):
        assert int(np.abs(g.astype(np.int32) - w.astype(np.int32)).max()) <= 1


def test_a_bad_film_device_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"film\.device"):
        check_config(FilmConfig(device="gpu"))


@pytest.mark.parametrize("size", [(1280, 720), (1440, 1080), (480, 360)])
def test_flow_input_made_on_the_device_is_numpys(device: str, size: tuple[int, int]) -> None:
    """The flow input of a tensor frame (8-bit luma, reduced to <= 576 lines, 5 x 5 median, all on the
    device) is numpy's: the same factor and size, every pixel within one level and at most 0.1 % of
    them off at all (an area mean may round the other way in float; measured on the CPU: exact at
    these three sizes and at 1920 x 1080, one level on 0.0008 % of the pixels at 1000 x 700)."""
    from pipeline.film.motion import flow_input

    frame = cv2.resize(skimage.data.astronaut(), size, interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    want, f = flow_input(frame)
    got, tf = flow_input(_t(frame, device))
    assert isinstance(got, np.ndarray) and got.dtype == np.uint8 and got.shape == want.shape
    assert tf == f and want.shape[0] == min(576, size[1])
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert int(diff.max()) <= 1 and float((diff > 0).mean()) <= 1e-3
