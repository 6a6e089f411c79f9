"""StyleGAN2 generator in plain PyTorch, configured from what a checkpoint says.

Architecture (Karras et al. 2020, config "skip" generator as in NVlabs stylegan2-ada-pytorch):
  mapping:   z [B, z_dim] -> normalise 2nd moment -> `mapping_layers` x (FC + lrelu) -> w, broadcast to
             num_ws copies, optional truncation towards `w_avg`.
  synthesis: a learned 4x4 constant, then one block per resolution 4, 8, ..., R. Each block has a x2
             up-sampling modulated conv (not at 4x4), a modulated conv, per-pixel noise, and a ToRGB 1x1
             modulated conv (no demodulation) whose output is added to the up-sampled RGB of the block below
             (the skip architecture). Block r consumes ws for its convs and shares the next w with its ToRGB.

Parameter names and layouts are those of stylegan2-ada-pytorch (mapping.fc0.weight, synthesis.b8.conv0
.affine.weight, ...) so the checkpoint loaders only need to rename for the other formats. Weights are
stored unscaled and multiplied at run time by 1/sqrt(fan_in) (x lr multiplier for the mapping): the
"equalised learning rate", which also makes the random initialisation of `make_random_generator` produce a
generator whose images depend on the latent as a trained one's do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from pipeline.prior.ops import (
    LRELU_GAIN,
    ModConvMode,
    bias_act,
    demod_noise_bias_act,
    modulated_conv2d,
    modulated_conv2d_deferred,
    setup_filter,
    upsample2d,
)

NoiseMode = Literal["const", "random", "none"]


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; read from the checkpoint, never assumed."""

    resolution: int  # output image side (a power of two, >= 4)
    z_dim: int = 512  # input latent size
    w_dim: int = 512  # intermediate latent size
    mapping_layers: int = 8  # fully connected layers in the mapping network
    channel_base: int = 32768  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    img_channels: int = 3  # RGB
    mapping_lr_multiplier: float = 0.01  # equalised-lr multiplier of the mapping layers
    conv_clamp: float | None = None  # clamp of conv outputs (256 in stylegan2-ada trained models)
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)  # FIR taps for all x2 up-sampling

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {r}")
        for name in ("z_dim", "w_dim", "mapping_layers", "channel_max", "img_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.channel_base < r:
            raise ValueError(f"channel_base {self.channel_base} leaves no channels at {r} px")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown generator config key(s): {', '.join(unknown)}")
        data = dict(data)
        if "resample_filter" in data:
            data["resample_filter"] = tuple(float(t) for t in data["resample_filter"])
        return cls(**data)


class FullyConnected(nn.Module):
    """y = x W^T * (lr / sqrt(in)) + b * lr, optionally leaky ReLU * sqrt(2). weight [out, in]."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,
        lr: float = 1.0,
        act: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.lr, self.bias_init, self.act = lr, bias_init, act
        self.weight_gain = lr / math.sqrt(in_features)

    def reset_parameters(self, gen: torch.Generator) -> None:
        # Unit variance / lr, so that the run-time gain lr / sqrt(fan_in) gives He-initialised outputs.
        with torch.no_grad():
            self.weight.copy_(torch.randn(self.weight.shape, generator=gen) / self.lr)
            self.bias.fill_(self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.lr
        y = torch.nn.functional.linear(x, w, b)
        if self.act:
            y = torch.nn.functional.leaky_relu(y, 0.2) * LRELU_GAIN
        return y


class MappingNetwork(nn.Module):
    w_avg: torch.Tensor  # [w_dim] buffer

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            fc = FullyConnected(dims[i], dims[i + 1], lr=cfg.mapping_lr_multiplier, act=True)
            self.add_module(f"fc{i}", fc)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        """z [B, z_dim] -> ws [B, num_ws, w_dim]; truncation moves the first `cutoff` ws towards w_avg."""
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim:
            raise ValueError(f"z must be [batch, {self.cfg.z_dim}], got {tuple(z.shape)}")
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()  # [B, z_dim]
        for i in range(self.cfg.mapping_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat(1, self.cfg.num_ws, 1)  # [B, num_ws, w_dim]
        if truncation_psi != 1.0:
            cutoff = self.cfg.num_ws if truncation_cutoff is None else truncation_cutoff
            w_avg = self.w_avg.to(ws.dtype)
            head = w_avg + (ws[:, :cutoff] - w_avg) * truncation_psi
            ws = torch.cat([head, ws[:, cutoff:]], dim=1)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (x2 up-sampling if `up`), + noise * strength, + bias, lrelu * sqrt(2), clamp."""

    noise_const: torch.Tensor  # [res, res] buffer: the fixed noise of noise_mode="const"
    resample_filter: torch.Tensor  # [4, 4] non-persistent buffer

    def __init__(self, cfg: GeneratorConfig, in_ch: int, out_ch: int, res: int, up: bool) -> None:
        super().__init__()
        self.res, self.up, self.conv_clamp = res, up, cfg.conv_clamp
        self.affine = FullyConnected(cfg.w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.empty(out_ch))
        self.noise_strength = nn.Parameter(torch.empty([]))
        self.register_buffer("noise_const", torch.empty(res, res))
        self.register_buffer("resample_filter", setup_filter(cfg.resample_filter), persistent=False)

    def reset_parameters(self, gen: torch.Generator, noise_strength: float) -> None:
        self.affine.reset_parameters(gen)
        with torch.no_grad():
            self.weight.copy_(torch.randn(self.weight.shape, generator=gen))
            self.bias.zero_()
            self.noise_strength.fill_(noise_strength)
            self.noise_const.copy_(torch.randn(self.noise_const.shape, generator=gen))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise: torch.Tensor | None,
        noise_mode: NoiseMode,
        mode: ModConvMode,
    ) -> torch.Tensor:
        styles = self.affine(w.float())  # [B, in_ch], float32 whatever the activations' dtype
        y, dcoefs = modulated_conv2d_deferred(
            x,
            self.weight,
            styles,
            demodulate=True,
            up=self.up,
            resample_filter=self.resample_filter,
            mode=mode,
        )  # [B, out_ch, res, res], pending demodulation [B, out_ch] or None
        if noise is None and noise_mode == "const":
            noise = self.noise_const.reshape(1, 1, self.res, self.res)
        elif noise is None and noise_mode == "random":
            noise = torch.randn(y.shape[0], 1, self.res, self.res, device=y.device)
        if noise is not None and (
            noise.ndim != 4
            or noise.shape[1:] != (1, self.res, self.res)
            or noise.shape[0] not in (1, y.shape[0])
        ):
            raise ValueError(
                f"noise for a {self.res}x{self.res} layer must be [{y.shape[0]} or 1, 1, {self.res}, "
                f"{self.res}], got {tuple(noise.shape)}"
            )
        # demodulation, noise, bias, lrelu * sqrt(2) and clamp in three passes over the activations
        return demod_noise_bias_act(
            y, dcoefs, noise, self.noise_strength, self.bias, gain=LRELU_GAIN, clamp=self.conv_clamp
        )


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation (style scaled by 1/sqrt(in)), + bias, clamp."""

    def __init__(self, cfg: GeneratorConfig, in_ch: int) -> None:
        super().__init__()
        self.conv_clamp = cfg.conv_clamp
        self.affine = FullyConnected(cfg.w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(cfg.img_channels, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.empty(cfg.img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_ch)

    def reset_parameters(self, gen: torch.Generator) -> None:
        self.affine.reset_parameters(gen)
        with torch.no_grad():
            self.weight.copy_(torch.randn(self.weight.shape, generator=gen))
            self.bias.zero_()

    def forward(self, x: torch.Tensor, w: torch.Tensor, mode: ModConvMode) -> torch.Tensor:
        styles = self.affine(w.float()) * self.weight_gain  # [B, in_ch]
        y = modulated_conv2d(x, self.weight, styles, demodulate=False, mode=mode)
        return bias_act(y, self.bias, lrelu=False, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    resample_filter: torch.Tensor  # [4, 4] non-persistent buffer

    def __init__(self, cfg: GeneratorConfig, res: int) -> None:
        super().__init__()
        self.res = res
        out_ch = cfg.channels(res)
        if res == 4:
            self.const = nn.Parameter(torch.empty(out_ch, 4, 4))
        else:
            self.conv0 = SynthesisLayer(cfg, cfg.channels(res // 2), out_ch, res, up=True)
        self.conv1 = SynthesisLayer(cfg, out_ch, out_ch, res, up=False)
        self.torgb = ToRGB(cfg, out_ch)
        self.register_buffer("resample_filter", setup_filter(cfg.resample_filter), persistent=False)
        self.num_conv = 1 if res == 4 else 2

    def layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.res == 4 else [self.conv0, self.conv1]


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        for res in cfg.block_resolutions:
            self.add_module(f"b{res}", SynthesisBlock(cfg, res))
        self.modconv: ModConvMode | Literal["auto"] = "auto"  # see _mode
        self.channels_last = False  # run activations in channels-last layout (GPU speed-up)

    def blocks(self, max_res: int | None = None) -> list[SynthesisBlock]:
        top = self.cfg.resolution if max_res is None else max_res
        return [getattr(self, f"b{r}") for r in self.cfg.block_resolutions if r <= top]

    def _mode(self, x: torch.Tensor) -> ModConvMode:
        if self.modconv != "auto":
            return self.modconv
        # One shared-weight convolution over the batch: a third fewer FLOPs per search step than the
        # grouped form (no per-sample weight gradients: 181 vs 272 GFLOP at 256 px, config-f). On GPUs
        # the FIR filter folded into the up-sampling kernel wins as well: measured on an H200 at 1024 px,
        # batch 32, bf16, channels-last: scaled_fir 4.84 ms per face-step, scaled 9.17, grouped 13.92
        # (2.54 ms with torch.compile); in the latent search (truncated synthesis, shrinking batches,
        # default layout) 5.0 vs 5.3 ms per face-step. On CPUs scaled_fir is slower.
        return "scaled_fir" if x.is_cuda else "scaled"

    def forward(
        self,
        ws: torch.Tensor,
        noise: Sequence[torch.Tensor] | None = None,
        noise_mode: NoiseMode = "const",
        max_res: int | None = None,
    ) -> torch.Tensor:
        """ws [B, num_ws, w_dim] -> image [B, C, r, r] in about [-1, 1], r = max_res or the resolution."""
        cfg = self.cfg
        if max_res is not None and max_res not in cfg.block_resolutions:
            raise ValueError(f"max_res must be one of {cfg.block_resolutions}, got {max_res}")
        need = num_ws_at(max_res or cfg.resolution)
        if ws.ndim != 3 or ws.shape[1] < need or ws.shape[2] != cfg.w_dim:
            raise ValueError(f"ws must be [batch, >={need}, {cfg.w_dim}], got {tuple(ws.shape)}")
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be const, random or none, got {noise_mode!r}")
        blocks = self.blocks(max_res)
        n_noise = sum(b.num_conv for b in blocks)
        if noise is not None and len(noise) < n_noise:
            raise ValueError(f"{n_noise} noise inputs needed up to {blocks[-1].res} px, got {len(noise)}")
        param = blocks[0].const
        x: torch.Tensor | None = None
        img: torch.Tensor | None = None
        w_idx = 0
        n_idx = 0
        mode: ModConvMode | None = None
        for block in blocks:
            if x is None:
                x = param.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)  # [B, C4, 4, 4]
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                mode = self._mode(x)
            assert mode is not None
            for layer in block.layers():
                layer_noise = noise[n_idx] if noise is not None else None
                x = layer(x, ws[:, w_idx], layer_noise, noise_mode, mode)
                w_idx += 1
                n_idx += 1
            # ToRGB shares its w with the next block's first conv (official indexing).
            y = block.torgb(x, ws[:, w_idx], mode)  # [B, C, res, res]
            img = y if img is None else upsample2d(img, block.resample_filter).to(y.dtype) + y
        assert img is not None
        return img


def num_ws_at(res: int) -> int:
    """ws consumed by synthesis up to and including resolution `res` (convs + that level's ToRGB)."""
    return 2 * int(math.log2(res)) - 2


class Generator(nn.Module):
    """mapping + synthesis, with the official parameter names (mapping.*, synthesis.b{res}.*)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.num_ws, self.img_resolution, self.img_channels = cfg.num_ws, cfg.resolution, cfg.img_channels
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    @property
    def w_avg(self) -> torch.Tensor:
        """Average intermediate latent [w_dim] (the truncation centre and a natural search start)."""
        w_avg: torch.Tensor = self.mapping.w_avg
        return w_avg

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: NoiseMode = "const"
    ) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi=truncation_psi), noise_mode=noise_mode)

    def noise_shapes(self, max_res: int | None = None) -> list[tuple[int, int]]:
        """(H, W) of each noise input, in layer order, up to `max_res`."""
        return [
            (layer.res, layer.res) for block in self.synthesis.blocks(max_res) for layer in block.layers()
        ]

    def num_ws_at(self, res: int) -> int:
        return num_ws_at(res)

    def set_execution(
        self, modconv: ModConvMode | Literal["auto"] = "auto", channels_last: bool = False
    ) -> Generator:
        """How synthesis runs (same images either way): conv form and activation memory layout."""
        self.synthesis.modconv = modconv
        self.synthesis.channels_last = channels_last
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for p in self.parameters():
            if p.ndim == 4:  # conv weights: cuDNN picks NHWC kernels when weights match the input
                p.data = p.data.contiguous(memory_format=fmt)
        return self

    def reset_parameters(
        self,
        seed: int,
        noise_strength: float = 0.3,
        w_avg_samples: int = 4096,
        target_std: float | None = 0.3,
    ) -> None:
        """StyleGAN's initialisation from `seed` (weights drawn on the CPU: the same on every machine).

        Equalised-lr weights of unit variance, style affine biases 1, other biases 0, noise strengths
        `noise_strength`; then w_avg measured and (unless target_std is None) the output scaled to a
        std of `target_std`. Both measurements run on the module's device.
        """
        gen = torch.Generator().manual_seed(seed)
        device = self.w_avg.device
        self.cpu()
        for i in range(self.cfg.mapping_layers):
            getattr(self.mapping, f"fc{i}").reset_parameters(gen)
        for block in self.synthesis.blocks():
            if block.res == 4:
                with torch.no_grad():
                    block.const.copy_(torch.randn(block.const.shape, generator=gen))
            for layer in block.layers():
                layer.reset_parameters(gen, noise_strength)
            block.torgb.reset_parameters(gen)
        self.to(device)
        with torch.no_grad():
            # w_avg as training would have tracked it: the mean w over many latents.
            z = torch.randn(w_avg_samples, self.z_dim, generator=gen).to(device)
            self.mapping.w_avg.copy_(self.mapping(z)[:, 0].mean(dim=0))
            if target_std is None:
                return
            # At initialisation the ToRGB outputs of all levels add up to a std of about 2-3, so the
            # image would sit far outside [-1, 1], unlike a trained model's. The image is linear in the
            # ToRGB weights (their biases are zero), so one scale calibrates it to a trained-like std.
            img = self.synthesis(self.mapping(z[:4]))  # [4, C, R, R]
            scale = target_std / float(img.std())
            for block in self.synthesis.blocks():
                block.torgb.weight.mul_(scale)


def make_random_generator(
    resolution: int,
    seed: int,
    *,
    z_dim: int = 128,
    w_dim: int = 128,
    channel_base: int | None = None,
    channel_max: int = 64,
    mapping_layers: int = 8,
    noise_strength: float = 0.3,
) -> Generator:
    """A small seeded random generator (not a face model) for tests, offline demos and smoke tests.

    By default it has 64 channels up to 32 px, halving above (channel_base = 2048, at least the
    resolution).
    """
    if channel_base is None:
        channel_base = max(2048, resolution)
    cfg = GeneratorConfig(
        resolution=resolution,
        z_dim=z_dim,
        w_dim=w_dim,
        mapping_layers=mapping_layers,
        channel_base=channel_base,
        channel_max=channel_max,
    )
    G = Generator(cfg)
    G.reset_parameters(seed, noise_strength=noise_strength)
    return G.eval().requires_grad_(False)
