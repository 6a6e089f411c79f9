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


def _frames(n: int, h: int = 20, w: int = 28) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    base = (rng.random((h, w, 3)) * 255).astype(np.float32)
    # a moving picture: each frame the last one shifted a pixel, with its own noise
    return [
        np.clip(np.roll(base, i, axis=1) + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
        for i in range(n)
    ]


# Tolerances against the float32 CPU result, one frame at a time (uint8 levels): the same float32
# arithmetic in another batch layout differs by rounding only; half precision on CUDA by more.
_LEVELS = {"cpu": (0.01, 1), "cuda": (1.0, 8)}  # (mean, max) |difference|


def test_batched_frames_equal_the_float32_cpu_result(checkpoints: dict[str, Path], device: str) -> None:
    frames = _frames(5)
    ref = LearnedUpscaler.from_file(checkpoints["compact"], scale=4, tile=16, overlap=8)
    want = [ref(f) for f in frames]  # float32 on the CPU, one frame per pass
    up = LearnedUpscaler.from_file(
        checkpoints["compact"], scale=4, device=device, tile=16, overlap=8, batch=3, tile_memory=0.5
    )
    assert up.dtype == (torch.float16 if device.startswith("cuda") else torch.float32)
    got = up.many(frames)  # batches of 3 and 2
    assert len(got) == 5
    mean_tol, max_tol = _LEVELS["cuda" if device.startswith("cuda") else "cpu"]
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.uint8 and g.shape == w.shape == (80, 112, 3)
        err = np.abs(g.astype(np.int32) - w.astype(np.int32))
        assert err.mean() <= mean_tol and err.max() <= max_tol
    # frames differ, so a batch that mixed them up or repeated one would fail here
    assert not np.array_equal(got[0], got[1])


def test_compose_reads_a_batch_of_real_decoded_frames_in_order(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    from pipeline.io.decode import open_video
    from pipeline.run.steps import upscaled_frames
    from tests.media import make_clip

    clip = make_clip(tmp_path / "clip", size=(32, 24), frames=7)
    one = LearnedUpscaler.from_file(checkpoints["compact"], scale=2, tile=16, overlap=8)
    batched = LearnedUpscaler.from_file(checkpoints["compact"], scale=2, tile=16, overlap=8, batch=3)
    with open_video(clip).reader() as reader:
        pairs = [(f.index, f.image.copy(), up) for f, up in upscaled_frames(reader, batched)]
    assert [i for i, _, _ in pairs] == list(range(7))  # groups of 3, 3 and 1, every frame once
    for _, image, up in pairs:
        assert up is not None and up.shape == (48, 64, 3)
        assert np.abs(up.astype(np.int32) - one(image).astype(np.int32)).max() <= 1


def test_tiles_follow_free_memory_within_floor_and_ceiling() -> None:
    from pipeline.frame.sr import TILE_CEILING, TILE_FLOOR, TILE_STEP, tile_from_memory

    gib = 1 << 30

    def tile(free: float, batch: int = 4, overlap: int = 16) -> int:
        return tile_from_memory(
            int(free * gib), 2000.0, batch=batch, frame=(1080, 1920), out_channels=3, scale=4,
            fraction=0.5, overlap=overlap,
        )  # fmt: skip

    # 8 GiB free, 2000 B/px, 4 frames of 1080p x4: (4 GiB - 1.73 GB buffers) / 8000 B -> 565 -> 560
    assert tile(8) == 560
    sizes = [tile(f) for f in (3, 4, 6, 8, 16, 40)]
    assert sizes == sorted(sizes) and len(set(sizes)) > 3  # more free memory, larger tiles
    assert all(s % TILE_STEP == 0 and TILE_FLOOR <= s <= TILE_CEILING for s in sizes)
    assert tile(8, batch=8) < tile(8, batch=2)  # a larger batch shares the memory
    assert tile(0.5) == TILE_FLOOR and tile(1000) == TILE_CEILING
    assert tile(0.5, overlap=40) > 2 * 40  # the floor stays above twice the overlap


def test_half_precision_only_where_the_model_and_the_device_allow(checkpoints: dict[str, Path]) -> None:
    from pipeline.frame.sr import precision

    for kind, half in (("compact", torch.float16), ("esrgan", torch.float16), ("swinir", torch.bfloat16)):
        desc = load_descriptor(checkpoints[kind])
        assert precision("cpu", desc.supports_half, desc.supports_bfloat16) == torch.float32
        assert precision("cuda", desc.supports_half, desc.supports_bfloat16) == half
    desc = load_descriptor(checkpoints["swinir"])  # no float16; bfloat16 only where the card has it
    assert precision("cuda", desc.supports_half, desc.supports_bfloat16, bf16_ok=False) == torch.float32


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_the_upscale_kept_on_the_device_composes_the_same_frame(
    tmp_path: Path, device: str, dtype: type
) -> None:
    """`many_on_device` hands compose the values `many` gives, as a tensor on the model's device:
    the composed frame and its records are the same as through the host, bit for bit."""
    from spandrel.architectures.Compact import Compact

    from pipeline.config import Config
    from pipeline.frame.compose import compose_frame
    from tests.frame.test_compose import _frame_and_placement

    torch.manual_seed(1)
    path = tmp_path / "compact_x2.pth"
    torch.save(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).state_dict(), path)
    frame, placements, _ = _frame_and_placement(64, scale=2.0)
    frame = frame if dtype == np.uint8 else frame.astype(np.uint16) * 257
    up = LearnedUpscaler.from_file(path, scale=2, device=device, tile=64, overlap=8)
    (host,) = up.many([frame])
    (kept,) = up.many_on_device([frame])
    assert isinstance(kept, torch.Tensor) and kept.device.type == torch.device(device).type
    assert kept.shape == host.shape and kept.dtype == (torch.uint8 if dtype == np.uint8 else torch.int32)
    assert np.array_equal(kept.cpu().numpy(), host)  # the same values, left on the device
    cfg = Config()
    plain, _ = compose_frame(frame, None, [], True, cfg, upscaled=kept, device=device)
    assert plain.dtype == host.dtype and np.array_equal(plain, host)  # no faces: the upscale itself
    want, want_rows = compose_frame(frame, None, placements, True, cfg, upscaled=host, device=device)
    got, got_rows = compose_frame(frame, None, placements, True, cfg, upscaled=kept, device=device)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert got_rows == want_rows and want_rows[0]["projected"]
    # a model of another factor is resized on the host: that frame comes back as `many` gives it
    x4 = LearnedUpscaler.from_file(_x4(tmp_path), scale=2, tile=0)
    (resized,) = x4.many_on_device([frame])
    assert isinstance(resized, np.ndarray) and np.array_equal(resized, x4.many([frame])[0])


def _x4(tmp_path: Path) -> Path:
    path = tmp_path / "compact_x4.pth"
    torch.save(_make("compact").state_dict(), path)
    return path
