"""Learned upscaling: randomly initialised instances of real architectures (nothing downloaded),
saved as the files users own, loaded by spandrel; tiled runs equal an untiled run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import CheckpointError
from pipeline.frame.sr import LearnedUpscaler, import_spandrel, load_descriptor, run_tiled

try:
    import_spandrel()
except ImportError:  # pragma: no cover - spandrel is a dependency; a broken install skips, not fails
    pytest.skip("spandrel is not installed", allow_module_level=True)


def _make(kind: str) -> torch.nn.Module:
    import_spandrel()
    torch.manual_seed(0)
    if kind == "esrgan":  # Real-ESRGAN x4plus / x4plus_anime_6B (RRDB)
        from spandrel.architectures.ESRGAN import ESRGAN

        return ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=1, scale=4)
    if kind == "compact":  # Real-ESRGAN compact (realesr-animevideov3)
        from spandrel.architectures.Compact import Compact

        return Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=4)
    small = {
        "img_size": 16,
        "window_size": 4,
        "embed_dim": 12,
        "depths": [1],
        "num_heads": [2],
        "mlp_ratio": 2,
    }
    if kind == "swinir":
        from spandrel.architectures.SwinIR import SwinIR

        return SwinIR(upscale=2, upsampler="pixelshuffle", img_range=1.0, **small)
    from spandrel.architectures.HAT import HAT

    return HAT(upscale=2, upsampler="pixelshuffle", compress_ratio=3, squeeze_factor=3, **small)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sr")
    out = {}
    for kind in ("esrgan", "compact", "swinir", "hat"):
        path = d / f"{kind}.pth"
        torch.save(_make(kind).state_dict(), path)
        out[kind] = path
    from safetensors.torch import save_file

    out["compact_st"] = d / "compact.safetensors"
    save_file(_make("compact").state_dict(), out["compact_st"])
    return out


@pytest.mark.parametrize(
    ("kind", "arch", "scale"),
    [
        ("esrgan", "ESRGAN", 4),
        ("compact", "RealESRGAN Compact", 4),
        ("swinir", "SwinIR", 2),
        ("hat", "HAT", 2),
        ("compact_st", "RealESRGAN Compact", 4),
    ],
)
def test_spandrel_recognises_real_architectures(
    checkpoints: dict[str, Path], kind: str, arch: str, scale: int
) -> None:
    desc = load_descriptor(checkpoints[kind])
    assert desc.architecture.name == arch and desc.scale == scale


@pytest.mark.parametrize("kind", ["compact", "swinir", "hat"])
def test_tiled_equals_untiled(checkpoints: dict[str, Path], kind: str) -> None:
    desc = load_descriptor(checkpoints[kind]).eval()
    x = torch.rand(1, 3, 24, 36, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole = desc(x)
        tiled = run_tiled(desc, x, desc.scale, tile=20, overlap=10)
    assert tiled.shape == whole.shape
    err = (tiled - whole).abs()
    assert float(err.mean()) < 2e-3 and float(err.max()) < 0.05


def test_upscaler_keeps_dtype_and_gives_the_asked_size(checkpoints: dict[str, Path]) -> None:
    img = (np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8)
    up = LearnedUpscaler.from_file(
        checkpoints["compact"], scale=2, tile=16, overlap=8
    )  # a x4 model asked for x2
    out = up(img)
    assert out.dtype == np.uint8 and out.shape == (40, 56, 3)
    assert up(img.astype(np.float32) / 255).dtype == np.float32


def test_bad_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_descriptor(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    torch.save({"not": torch.zeros(3)}, junk)
    with pytest.raises(CheckpointError, match="spandrel"):
        load_descriptor(junk)
    pickled = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole pickled module: never unpickled
    with pytest.raises(CheckpointError):
        load_descriptor(pickled)
