"""The generator: official equations (against a naive reference), shapes, truncation, gradients, init."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.prior.ops import modulated_conv2d, setup_filter, upsample2d
from pipeline.prior.stylegan2 import Generator, GeneratorConfig, make_random_generator
from tests.prior import reference as ref


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def g32() -> Generator:
    return make_random_generator(32, seed=3, z_dim=32, w_dim=32, channel_max=32)


def test_upsample_matches_zero_insertion_and_fir() -> None:
    x = _rand(2, 3, 5, 7)
    got = upsample2d(x, setup_filter([1, 3, 3, 1]))
    # official upsample2d: up 2, padding (k+up-1)//2 = 2 before, (k-up)//2 = 1 after, gain up^2
    want = ref.upfirdn(x, 2, 2, 1, 4.0)
    assert got.shape == want.shape == (2, 3, 10, 14)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["grouped", "scaled", "scaled_fir"])
@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demod", [False, True])
def test_modulated_conv_matches_naive_reference(mode: str, up: bool, demod: bool) -> None:
    x, weight, styles = _rand(3, 4, 6, 6, seed=1), _rand(5, 4, 3, 3, seed=2), _rand(3, 4, seed=3) + 1
    got = modulated_conv2d(
        x, weight, styles, demodulate=demod, up=up, resample_filter=setup_filter([1, 3, 3, 1]), mode=mode
    )  # type: ignore[arg-type]
    want = ref.modconv(x, weight, styles, demod, up)
    assert got.shape == want.shape == (3, 5, 12 if up else 6, 12 if up else 6)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["grouped", "scaled", "scaled_fir"])
def test_generator_matches_naive_reference(g32: Generator, mode: str) -> None:
    g32.synthesis.modconv = mode  # type: ignore[assignment]
    try:
        z = _rand(2, g32.z_dim, seed=5)
        sd = g32.state_dict()
        ws = g32.mapping(z)
        torch.testing.assert_close(ws[:, 0], ref.reference_mapping(sd, z, 8, 0.01), rtol=1e-4, atol=1e-5)
        noise = [_rand(2, 1, h, w, seed=10 + i) for i, (h, w) in enumerate(g32.noise_shapes())]
        want, _ = ref.reference_synthesis(sd, 32, ws, noise)
        torch.testing.assert_close(g32.synthesis(ws, noise=noise), want, rtol=1e-4, atol=1e-4)
    finally:
        g32.synthesis.modconv = "auto"


def test_conv_clamp_matches_naive_reference(g32: Generator) -> None:
    cfg = dataclasses.replace(g32.cfg, conv_clamp=0.5)  # small enough to clip many activations
    G = Generator(cfg)
    G.load_state_dict(g32.state_dict())
    ws = G.mapping(_rand(2, G.z_dim, seed=14))
    noise = [_rand(2, 1, h, w, seed=40 + i) for i, (h, w) in enumerate(G.noise_shapes())]
    want, _ = ref.reference_synthesis(G.state_dict(), 32, ws, noise, clamp=0.5)
    got = G.synthesis(ws, noise=noise)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, g32.synthesis(ws, noise=noise), atol=1e-3)


def test_truncated_synthesis_is_the_partial_skip_sum(g32: Generator) -> None:
    ws = g32.mapping(_rand(2, g32.z_dim, seed=6))
    sd = g32.state_dict()
    const_noise = [sd[f"synthesis.b{r}.{n}.noise_const"].reshape(1, 1, r, r) for r, n in _layers(32)]
    full, levels = ref.reference_synthesis(sd, 32, ws, const_noise)
    torch.testing.assert_close(g32.synthesis(ws), full, rtol=1e-4, atol=1e-4)
    for res, level in zip([4, 8, 16, 32], levels, strict=True):
        part = g32.synthesis(ws, max_res=res)
        assert part.shape == (2, 3, res, res)
        torch.testing.assert_close(part, level, rtol=1e-4, atol=1e-4)
        # only the ws it uses are needed
        torch.testing.assert_close(g32.synthesis(ws[:, : g32.num_ws_at(res)], max_res=res), part)
    assert g32.num_ws_at(32) == g32.num_ws == 8
    assert len(g32.noise_shapes(max_res=8)) == 3


def _layers(res: int) -> list[tuple[int, str]]:
    out = [(4, "conv1")]
    r = 8
    while r <= res:
        out += [(r, "conv0"), (r, "conv1")]
        r *= 2
    return out


@pytest.mark.parametrize("res", [8, 16, 64, 256, 1024])
def test_shapes_and_dtypes_across_resolutions(res: int) -> None:
    cfg = GeneratorConfig(
        resolution=res, z_dim=8, w_dim=8, mapping_layers=2, channel_base=res * 2, channel_max=4
    )
    G = Generator(cfg)
    G.reset_parameters(seed=0, w_avg_samples=16, target_std=None)
    assert G.num_ws == 2 * (res.bit_length() - 1) - 2
    assert G.noise_shapes()[-1] == (res, res) and len(G.noise_shapes()) == G.num_ws - 1
    with torch.no_grad():
        ws = G.mapping(_rand(1, 8))
        img = G.synthesis(ws)
        assert img.shape == (1, 3, res, res) and img.dtype == torch.float32
        assert torch.isfinite(img).all()
    if res > 64:
        return  # bfloat16 convolutions are slow on CPUs; their correctness does not depend on size
    G16 = Generator(cfg).to(torch.bfloat16)
    G16.load_state_dict(G.state_dict())
    with torch.no_grad():
        img16 = G16.synthesis(ws)  # float32 ws into a bfloat16 model, as the search passes them
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = G.synthesis(ws)
    assert img16.dtype == torch.bfloat16 and img16.shape == img.shape
    # bf16 agrees with float32 to bf16 precision
    torch.testing.assert_close(img16.float(), img, rtol=0.1, atol=0.1 * float(img.std()))
    torch.testing.assert_close(auto.float(), img, rtol=0.1, atol=0.1 * float(img.std()))


def test_per_sample_noise_and_batching(g32: Generator) -> None:
    ws = g32.mapping(_rand(3, g32.z_dim, seed=7))
    noise = [_rand(3, 1, h, w, seed=20 + i) for i, (h, w) in enumerate(g32.noise_shapes())]
    batch = g32.synthesis(ws, noise=noise)
    for b in range(3):
        one = g32.synthesis(ws[b : b + 1], noise=[n[b : b + 1] for n in noise])
        torch.testing.assert_close(batch[b : b + 1], one, rtol=1e-4, atol=1e-5)
    # modes: const is deterministic, random differs, none differs from const
    const = g32.synthesis(ws)
    torch.testing.assert_close(const, g32.synthesis(ws, noise_mode="const"))
    assert not torch.allclose(const, g32.synthesis(ws, noise_mode="random"))
    assert not torch.allclose(const, g32.synthesis(ws, noise_mode="none"))
    with pytest.raises(ValueError, match="noise"):
        g32.synthesis(ws, noise=[torch.zeros(3, 1, 5, 5)] * 7)
    with pytest.raises(ValueError, match="ws must be"):
        g32.synthesis(ws[:, :3])


@pytest.mark.parametrize("mode", ["grouped", "scaled", "scaled_fir"])
def test_channels_last_gives_the_same_image(g32: Generator, mode: str) -> None:
    ws = g32.mapping(_rand(2, g32.z_dim, seed=8))
    want = g32.synthesis(ws)
    G = Generator(g32.cfg)
    G.load_state_dict(g32.state_dict())
    G.set_execution(mode, channels_last=True)  # type: ignore[arg-type]
    assert G.synthesis.b32.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(G.synthesis(ws), want, rtol=1e-5, atol=1e-5)


def test_gradients_flow_to_ws_and_noise(g32: Generator) -> None:
    ws = g32.mapping(_rand(2, g32.z_dim, seed=9)).clone().requires_grad_(True)
    noise = [
        _rand(2, 1, h, w, seed=30 + i).requires_grad_(True) for i, (h, w) in enumerate(g32.noise_shapes())
    ]
    img = g32.synthesis(ws, noise=noise, max_res=16)
    img.square().mean().backward()
    assert ws.grad is not None and ws.grad[:, : g32.num_ws_at(16)].abs().sum() > 0
    assert ws.grad[:, g32.num_ws_at(16) :].abs().sum() == 0  # unused by a 16 px synthesis
    used = len(g32.noise_shapes(max_res=16))
    assert all(n.grad is not None and n.grad.abs().sum() > 0 for n in noise[:used])
    assert all(n.grad is None for n in noise[used:])


def test_truncation(g32: Generator) -> None:
    z = _rand(4, g32.z_dim, seed=11)
    ws = g32.mapping(z)
    assert ws.shape == (4, g32.num_ws, g32.w_dim)
    torch.testing.assert_close(g32.mapping(z, truncation_psi=0.0), g32.w_avg.expand_as(ws))
    half = g32.mapping(z, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(half[:, :3], g32.w_avg + 0.5 * (ws[:, :3] - g32.w_avg))
    torch.testing.assert_close(half[:, 3:], ws[:, 3:])


def test_random_generator_images_depend_on_the_latent_and_do_not_saturate() -> None:
    G = make_random_generator(64, seed=0)
    with torch.no_grad():
        ws = G.mapping(_rand(32, G.z_dim, seed=12))
        img = G.synthesis(ws)
    # ws differ across z: the mapping did not collapse (as it does with PyTorch's default Linear init)
    assert float(ws[:, 0].std(dim=0).mean()) > 0.2 * float(ws[:, 0].std())
    spread = float(img.std(dim=0).mean())  # per-pixel spread across latents
    assert spread > 0.075 * 2.0  # > 7.5 % of the [-1, 1] range
    assert float((img.abs() > 1).float().mean()) < 0.025  # not saturated
    assert 0.2 < float(img.std()) < 0.5


def test_random_generator_is_seeded() -> None:
    a, b, c = make_random_generator(16, 1), make_random_generator(16, 1), make_random_generator(16, 2)
    z = _rand(2, a.z_dim)
    torch.testing.assert_close(a(z), b(z))
    assert not torch.allclose(a(z), c(z))


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(resolution=48)
    with pytest.raises(ValueError, match="no channels"):
        GeneratorConfig(resolution=1024, channel_base=512)
    with pytest.raises(ValueError, match="unknown"):
        GeneratorConfig.from_dict({"resolution": 64, "bogus": 1})
    cfg = GeneratorConfig(resolution=64, conv_clamp=256.0)
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("mode", ["grouped", "scaled", "scaled_fir"])
def test_device_matches_cpu(g32: Generator, device: str, mode: str) -> None:
    """On the test device (REEL_TEST_DEVICE, CPU by default), each conv mode gives the CPU image."""
    ws = g32.mapping(_rand(2, g32.z_dim, seed=13))
    want = g32.synthesis(ws)
    G = Generator(g32.cfg).to(device)
    G.load_state_dict(g32.state_dict())
    G.synthesis.modconv = mode  # type: ignore[assignment]
    wsd = ws.to(device).requires_grad_(True)
    got = G.synthesis(wsd)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-2, atol=1e-2)  # TF32 on GPUs
    got.square().mean().backward()
    assert wsd.grad is not None and torch.isfinite(wsd.grad).all()
