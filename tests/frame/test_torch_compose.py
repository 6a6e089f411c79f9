"""Compose as torch code (paste, tone and grain matching, blend, projection): the same on the CPU and
on CUDA, checked against today's numpy/OpenCV compose (tests/frame/numpy_reference.py) on the
astronaut photograph, with stated tolerances:

- the image operations against OpenCV: blur and area reduction within 1e-5 on the CPU (1e-4 on
  CUDA) of a [0, 1] image, bilinear warps within 1e-4 (1e-3), the robust deviation within 1e-6;
- pasted frames: within one 8-bit level everywhere, 0.02 levels on average;
- composed frames (projected): within two levels, 0.05 on average, and every face record's in-frame
  PSNR within 0.1 dB of numpy's, the bound met exactly where numpy meets it.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from pipeline.affine import rescale_affine
from pipeline.config import Config
from pipeline.frame import tensor_ops as T
from pipeline.frame.compose import ComposeSettings, FacePaste, FacePlacement, compose_frame, paste_faces
from tests.frame import numpy_reference as ref
from tests.frame.test_compose import _frame_and_placement


def _photo() -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut(), (96, 96), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _close(a: torch.Tensor, b: np.ndarray, device: str) -> float:
    return float(np.abs(a.cpu().numpy() - b).max())


@pytest.mark.parametrize("sigma", [0.6, 1.0, 3.0, 21.0, 80.0])  # 80: the kernel is wider than the image
def test_blur_is_opencvs(device: str, sigma: float) -> None:
    img = _photo()
    tol = 1e-5 if device == "cpu" else 1e-4
    assert (
        _close(T.gaussian_blur(T.as_tensor(img, device), sigma), cv2.GaussianBlur(img, (0, 0), sigma), device)
        < tol
    )
    luma = np.ascontiguousarray(img[..., 1])
    assert (
        _close(
            T.gaussian_blur(T.as_tensor(luma, device), sigma), cv2.GaussianBlur(luma, (0, 0), sigma), device
        )
        < tol
    )


@pytest.mark.parametrize(
    ("border", "flag"),
    [
        ("constant", cv2.BORDER_CONSTANT),
        ("replicate", cv2.BORDER_REPLICATE),
        ("reflect101", cv2.BORDER_REFLECT_101),
    ],
)
def test_warp_is_opencvs(device: str, border: str, flag: int) -> None:
    img = _photo()
    m = np.array([[1.7, 0.4, -20.3], [-0.35, 1.6, 5.2]])  # enlarged, rotated, partly outside
    want = cv2.warpAffine(img, m, (150, 130), flags=cv2.INTER_LINEAR, borderMode=flag)
    got = T.warp_affine(T.as_tensor(img, device), m, (150, 130), border=border)
    tol = 1e-4 if device == "cpu" else 1e-3  # measured 5e-6 on the CPU (float32 sample positions)
    assert _close(got, want, device) < tol


def test_area_shrink_and_median_are_opencvs_and_numpys(device: str) -> None:
    img = _photo()
    for n in (48, 37, 71):
        want = cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA)
        assert _close(T.area_shrink(T.as_tensor(img, device), n), want, device) < 1e-5
    for v in (img.ravel(), img.ravel()[:-1]):  # an even and an odd count
        want = 1.4826 * np.median(np.abs(v - np.median(v)))
        assert T.robust_std(T.as_tensor(v, device)) == pytest.approx(want, rel=1e-6)


def _levels(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return float(d.mean()), int(d.max())


@pytest.mark.parametrize("smooth", [False, True])  # a noisy face (tone matched), a smooth one (grain added)
def test_paste_matches_numpy(device: str, smooth: bool) -> None:
    frame, placements, _ = _frame_and_placement(128)
    p = placements[0]
    up = cv2.resize(frame, (frame.shape[1] * 2, frame.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
    face = np.full_like(p.restoration.image, 0.5) if smooth else p.restoration.image  # type: ignore[attr-defined]
    to_out = rescale_affine(p.crop_to_frame, src_scale=128 / p.crop_size, dst_scale=2)  # type: ignore[attr-defined]
    pastes = [FacePaste(face, to_out, seed=7)]
    for gray in (False, True):
        want = ref.paste_faces(up, pastes, gray, ComposeSettings())
        got = paste_faces(up, pastes, gray, ComposeSettings(), device=device)
        mean, worst = _levels(got, want)
        assert mean <= 0.02 and worst <= 1, (gray, mean, worst)
        assert _levels(got, up)[1] > 20  # the face was pasted


def _cases() -> list[tuple[np.ndarray, list[object]]]:
    frame, placements, _ = _frame_and_placement(128)
    p = placements[0]
    smooth = replace(p.restoration, image=np.full_like(p.restoration.image, 0.5), track_id=3)  # type: ignore[attr-defined]
    small, small_placements, _ = _frame_and_placement(
        256, track_id=1, scale=0.8
    )  # pre-reduced before warping
    return [
        (frame, placements),
        (frame, [FacePlacement(smooth, p.crop_to_frame, p.crop_size)]),  # type: ignore[attr-defined]
        (small, small_placements),
    ]


def test_compose_frame_matches_numpy_in_frame(device: str) -> None:
    cfg = Config()
    for frame, placements in _cases():
        want, want_rows = ref.compose_frame(frame, None, placements, True, cfg)  # type: ignore[arg-type]
        got, got_rows = compose_frame(frame, None, placements, True, cfg, device=device)  # type: ignore[arg-type]
        mean, worst = _levels(got, want)
        assert mean <= 0.05 and worst <= 2, (mean, worst)
        for g, w in zip(got_rows, want_rows, strict=True):
            assert abs(g["psnr_in_frame_db"] - w["psnr_in_frame_db"]) <= 0.1
            assert g["met_bound_in_frame"] == w["met_bound_in_frame"]
            assert g["fallback"] == w["fallback"] and g["projected"]
        assert any(r["met_bound_in_frame"] for r in got_rows)


@pytest.mark.parametrize("scale", [2, 3])
def test_plain_upscale_on_the_device_is_the_cpus(device: str, scale: int) -> None:
    from pipeline.frame.upscale import upscale

    photo = (_photo() * 255 + 0.5).astype(np.uint8)
    for image in (photo, photo.astype(np.uint16) * 257):
        want = upscale(image, scale, "lanczos")
        got = T.upscale_on(image, scale, "lanczos", device)
        assert got.device.type == torch.device(device).type and tuple(got.shape) == want.shape
        d = np.abs(got.cpu().numpy().astype(np.int64) - want.astype(np.int64))
        assert int(d.max()) <= 1 and float(d.mean()) < 0.01  # a level where float sums round apart
    bicubic = T.upscale_on(photo, 1.5, "bicubic", device)  # other methods: OpenCV, then sent
    assert np.array_equal(bicubic.cpu().numpy(), upscale(photo, 1.5, "bicubic"))


def test_compose_with_the_plain_upscale_on_the_device_matches_the_cpus(device: str) -> None:
    cfg = Config()
    for frame, placements in _cases():
        want, want_rows = compose_frame(frame, None, placements, True, cfg)  # type: ignore[arg-type]
        up = T.upscale_on(frame, cfg.upscale.scale, cfg.upscale.method, device)
        got, got_rows = compose_frame(frame, None, placements, True, cfg, upscaled=up, device=device)  # type: ignore[arg-type]
        mean, worst = _levels(got, want)
        assert got.dtype == want.dtype and mean <= 0.05 and worst <= 2, (mean, worst)
        for g, w in zip(got_rows, want_rows, strict=True):
            assert abs(g["psnr_in_frame_db"] - w["psnr_in_frame_db"]) <= 0.1
            assert g["met_bound_in_frame"] == w["met_bound_in_frame"]
    frame, _ = _cases()[0]
    plain, rows = compose_frame(
        frame, None, [], True, cfg, upscaled=T.upscale_on(frame, 2, "lanczos", device)
    )
    assert rows == [] and isinstance(plain, np.ndarray) and plain.dtype == frame.dtype
    assert int(np.abs(plain.astype(np.int32) - compose_frame(frame, None, [], True, cfg)[0]).max()) <= 1


def test_compose_without_a_learned_upscaler_uses_the_cuda_device_named_only() -> None:
    from pipeline.run.steps import compose_device, plain_on_device

    class Learned:
        device = "cuda:1"

    default = Config()
    assert default.run.device == "auto" and compose_device(None, default) == "cpu"  # auto: OpenCV on the CPU
    assert not plain_on_device(None, compose_device(None, default))
    film_cuda = replace(default, film=replace(default.film, device="cuda"))
    assert compose_device(None, film_cuda) == "cuda" and plain_on_device(None, "cuda")
    run_cuda = replace(default, run=replace(default.run, device="cuda:0"))
    assert compose_device(None, run_cuda) == "cuda:0"
    assert compose_device(Learned(), film_cuda) == "cuda:1" and not plain_on_device(Learned(), "cuda:1")
    cpu_film = replace(default, film=replace(default.film, device="cpu"))
    assert compose_device(None, cpu_film) == "cpu"  # torch film on the CPU: compose keeps OpenCV


def test_a_compose_segment_with_the_plain_upscale_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose step's wiring (run/steps._composed): where the plain upscale goes to the device
    (forced here onto the CPU's torch, as a CUDA device would be), each frame is upscaled there
    once and comes out as the OpenCV path's, within two levels."""
    from pipeline.run import steps
    from pipeline.types import VideoFrame

    frame, placements, _ = _frame_and_placement(128)
    frames = [VideoFrame(index=i, pts=i, time=i, image=frame) for i in range(2)]  # type: ignore[arg-type]
    by_frame = {0: placements, 1: []}  # a frame with a face, one without
    cfg = Config()
    want = list(steps._composed(frames, by_frame, {}, None, True, cfg))  # type: ignore[arg-type]
    calls: list[str] = []
    upscale_on = T.upscale_on

    def spy(image: np.ndarray, scale: float, method: str, device: str) -> torch.Tensor:
        calls.append(device)
        return upscale_on(image, scale, method, device)

    monkeypatch.setattr(steps, "plain_on_device", lambda upscaler, device: True)
    monkeypatch.setattr(T, "upscale_on", spy)
    got = list(steps._composed(frames, by_frame, {}, None, True, cfg))  # type: ignore[arg-type]
    assert calls == ["cpu", "cpu"]
    for (_, g, g_rows, _), (_, w, w_rows, _) in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape and _levels(g, w)[1] <= 2
        assert [r["met_bound_in_frame"] for r in g_rows] == [r["met_bound_in_frame"] for r in w_rows]
    assert len(got[0][2]) == 1 and got[1][2] == []
