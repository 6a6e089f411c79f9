"""Classical whole-frame upscaling: sizes, dtypes kept, fidelity on smooth content, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.frame.upscale import METHODS, upscale


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("method", METHODS)
def test_shape_and_dtype(dtype: type, method: str) -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((7, 9, 3)) * (255 if dtype == np.uint8 else 1000)).astype(dtype)
    out = upscale(image, 3, method)
    assert out.shape == (21, 27, 3) and out.dtype == dtype


def test_scale_one_is_identity_and_single_channel_kept() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert upscale(image, 1) is image
    assert upscale(np.zeros((4, 5, 1), np.uint16), 2).shape == (8, 10, 1)


def test_lanczos_reconstructs_smooth_content_better_than_nearest() -> None:
    # A smooth 16-bit ramp sampled at low resolution, compared with the same ramp sampled densely.
    def ramp(n: int) -> np.ndarray:
        y, x = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        v = 0.5 + 0.4 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)  # [n, n] in [0.1, 0.9]
        return np.repeat((v * 65535).astype(np.uint16)[..., None], 3, axis=2)

    low, high = ramp(32), ramp(128)
    inner = slice(8, -8)  # away from the borders, where every kernel extrapolates

    def err(method: str) -> float:
        up = upscale(low, 4, method).astype(np.float64)
        return float(np.abs(up - high)[inner, inner].mean())

    assert err("lanczos") < 0.5 * err("nearest")
    assert err("lanczos") < 0.005 * 65535


def test_integer_output_does_not_wrap_around() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, 4:] = 255  # a hard edge: Lanczos overshoots; the result must clip, not wrap
    out = upscale(image, 4, "lanczos")
    assert out[:, :14].max() < 40 and out[:, 18:].min() > 215


def _lanczos_reference(image: np.ndarray, scale: int, a: int = 3, clip_between: bool = False) -> np.ndarray:
    """Direct per-pixel Lanczos-a, edges replicated: the definition the fast path must match.

    `clip_between`: round and clip to 8 bits between the horizontal and vertical pass, as the 8-bit
    fast path does (each pass saturates, as a hardware scaler's would).
    """

    def axis_weights(n_in: int) -> np.ndarray:
        m = np.zeros((n_in * scale, n_in))  # [out, in]
        for i in range(n_in * scale):
            x = (i + 0.5) / scale - 0.5
            base = int(np.floor(x))
            ks = np.arange(-a + 1, a + 1)
            t = ks - (x - base)
            w = np.sinc(t) * np.sinc(t / a)
            for k, wk in zip(ks, w / w.sum(), strict=True):
                m[i, min(max(base + k, 0), n_in - 1)] += wk
        return m

    h, w = image.shape[:2]
    rows, cols = axis_weights(h), axis_weights(w)
    across = np.einsum("hwc,pw->hpc", image.astype(np.float64), cols)  # [H, W*s, C]
    if clip_between:
        across = np.clip(np.rint(across), 0, 255)
    return np.einsum("oh,hpc->opc", rows, across)  # [H*s, W*s, C]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fast_lanczos_matches_the_definition(scale: int) -> None:
    rng = np.random.default_rng(scale)
    image = rng.random((9, 13, 3)).astype(np.float32)
    np.testing.assert_allclose(upscale(image, scale), _lanczos_reference(image, scale), atol=1e-5)
    image8 = (image * 255).astype(np.uint8)
    expected = np.clip(np.rint(_lanczos_reference(image8, scale, clip_between=True)), 0, 255)
    assert np.abs(upscale(image8, scale).astype(np.int32) - expected).max() <= 1
    image16 = (image * 65535).astype(np.uint16)
    expected16 = np.clip(np.rint(_lanczos_reference(image16, scale)), 0, 65535)
    assert np.abs(upscale(image16, scale).astype(np.int64) - expected16).max() <= 1


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="method"):
        upscale(np.zeros((4, 4, 3), np.uint8), 2, "magic")
    with pytest.raises(ValueError, match="scale"):
        upscale(np.zeros((4, 4, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="dtype"):
        upscale(np.zeros((4, 4, 3), np.int32), 2)
    with pytest.raises(ValueError, match="shape"):
        upscale(np.zeros((0, 4, 3), np.uint8), 2)


def test_make_upscaler_classical_and_learned(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from pipeline.config import load_config
    from pipeline.errors import CheckpointError
    from pipeline.frame.upscale import make_upscaler

    img = (np.random.default_rng(0).random((12, 16, 3)) * 255).astype(np.uint8)
    classical = make_upscaler(load_config(sets=["upscale.scale=3"]))
    assert np.array_equal(classical(img), upscale(img, 3, "lanczos"))
    with pytest.raises(CheckpointError, match=r"upscale\.model"):
        make_upscaler(load_config(sets=[f"upscale.model={tmp_path / 'missing.pth'}"]))
    import torch

    from pipeline.frame.sr import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    path = tmp_path / "realesr-compact.pth"
    torch.save(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).state_dict(), path)
    learned = make_upscaler(load_config(sets=[f"upscale.model={path}", "run.device=cpu"]))
    out = learned(img)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
