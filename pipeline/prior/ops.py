"""Numerical building blocks of StyleGAN2 in plain PyTorch (no custom CUDA kernels).

The equations follow the official generator (NVlabs stylegan2 / stylegan2-ada-pytorch): FIR up-sampling
with the normalised [1, 3, 3, 1] filter, modulated convolution with demodulation, bias + leaky ReLU with
gain sqrt(2) and an optional clamp. Everything here is differentiable and works for float32 and bfloat16,
contiguous or channels-last inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

ModConvMode = Literal["grouped", "scaled", "scaled_fir"]

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps unit variance through leaky ReLU (He et al.)


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR filter from 1-D taps: outer product, normalised to sum 1. Returns [k, k]."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    if f.ndim != 1 or f.numel() < 1 or f.numel() % 2 != 0:
        raise ValueError(f"resample filter must be an even number of 1-D taps, got {list(taps)}")
    f2 = torch.outer(f, f)
    return f2 / f2.sum()


def _depthwise(f: torch.Tensor, channels: int, gain: float, x: torch.Tensor) -> torch.Tensor:
    # conv2d computes a correlation; the FIR convolution needs the flipped filter (a no-op for the
    # symmetric official filter, kept so that any filter gives the textbook result).
    k = (f.flip([0, 1]) * gain).to(device=x.device, dtype=x.dtype)
    return k.reshape(1, 1, *k.shape).expand(channels, 1, *k.shape).contiguous()


def fir_filter2d(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int], gain: float = 1.0) -> torch.Tensor:
    """Filter every channel of x [B, C, H, W] with f [k, k], padding `pad` = (before, after) on both axes."""
    c = x.shape[1]
    p0, p1 = pad
    if p0 == p1:
        return F.conv2d(x, _depthwise(f, c, gain, x), padding=p0, groups=c)
    return F.conv2d(F.pad(x, [p0, p1, p0, p1]), _depthwise(f, c, gain, x), groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """x2 up-sampling of x [B, C, H, W] -> [B, C, 2H, 2W]: zero insertion, then the FIR filter (gain 4).

    Zero insertion followed by filtering is exactly a stride-2 transposed depthwise convolution, which
    avoids materialising the zero-stuffed image. The padding matches the official upfirdn2d settings
    (filter of length k: k//2 before, k//2 - 1 after, on the up-sampled grid).
    """
    c, k = x.shape[1], f.shape[0]
    return F.conv_transpose2d(x, _depthwise(f, c, 4.0, x), stride=2, padding=k - 1 - (k + 1) // 2, groups=c)


def bias_act(
    x: torch.Tensor, bias: torch.Tensor, *, lrelu: bool, gain: float = 1.0, clamp: float | None = None
) -> torch.Tensor:
    """x + bias per channel of x [B, C, H, W], then leaky ReLU with `gain` (if lrelu), then clamp."""
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    if lrelu:
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool,
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
    mode: ModConvMode = "grouped",
) -> torch.Tensor:
    """Per-sample modulated convolution (see modulated_conv2d_deferred for the modes)."""
    y, dcoefs = modulated_conv2d_deferred(
        x, weight, styles, demodulate=demodulate, up=up, resample_filter=resample_filter, mode=mode
    )
    if dcoefs is not None:
        y = y * dcoefs.to(y.dtype).reshape(*dcoefs.shape, 1, 1)
    return y


def modulated_conv2d_deferred(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool,
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
    mode: ModConvMode = "grouped",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample modulated convolution, returning (y, pending demodulation [B, O] or None).

    The caller multiplies y by the pending per-channel factors, so that it can fuse that product with
    what follows (noise, bias, activation) in one pass over the activations.

    x [B, I, H, W], weight [O, I, k, k], styles [B, I] -> [B, O, H', W'] (H' = 2H when `up`).
    Mathematically  y_b = conv(x_b, W * s_b) * d_b  with  d_b[o] = 1 / sqrt(sum_{i,kh,kw} (W s_b)^2 + 1e-8).

    mode "grouped": the per-sample weights are built explicitly and run as one grouped convolution
      (one group per sample), as the official "fused modconv".
    mode "scaled": the style scales the input channels and the demodulation scales the output channels
      around one shared-weight convolution. Same result; a plain dense convolution over the batch is what
      GPUs run fastest (tensor cores, channels-last), and it never builds B copies of the weight.
    mode "scaled_fir": "scaled", with the up-sampling FIR filter folded into a 6x6 transposed-conv kernel.
    """
    batch, in_ch = x.shape[:2]
    out_ch, w_in, kh, kw = weight.shape
    if w_in != in_ch or styles.shape != (batch, in_ch):
        raise ValueError(
            f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)}, styles "
            f"{tuple(styles.shape)} do not fit"
        )
    # Demodulation coefficients in the weight's precision (float32 for float32 models): they are
    # reductions over up to 4608 terms, which bfloat16 would round badly.
    wf = weight.to(styles.dtype)
    dcoefs = None
    if demodulate:
        # sum over (i, kh, kw) of (W[o,i] s[b,i])^2 = (s^2) @ (sum_k W^2)^T, without building [B, O, I, k, k].
        dcoefs = (styles.square() @ wf.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [B, O]

    if (
        mode == "scaled_fir"
        and up
        and resample_filter is not None
        and (kh, kw, resample_filter.shape[0]) == (3, 3, 4)
    ):
        # The FIR filter folded into the up-sampling kernel: one stride-2 transposed conv with the 6x6
        # composite kernel W (*) f, instead of a 3x3 transposed conv plus a depthwise FIR pass over the
        # large up-sampled tensor. Same result; fewer memory passes, more (tensor-core) FLOPs.
        xs = x * styles.to(x.dtype).reshape(batch, in_ch, 1, 1)
        g = (resample_filter.flip([0, 1]) * 4.0).to(weight.dtype)
        k6 = F.conv2d(F.pad(weight.reshape(out_ch * in_ch, 1, kh, kw), [3, 3, 3, 3]), g[None, None])
        k6 = k6.reshape(out_ch, in_ch, 6, 6).transpose(0, 1).to(x.dtype)  # [I, O, 6, 6]
        return F.conv_transpose2d(xs, k6, stride=2, padding=2), dcoefs
    if mode in ("scaled", "scaled_fir"):
        xs = x * styles.to(x.dtype).reshape(batch, in_ch, 1, 1)
        w = weight.to(x.dtype)
        # conv_transpose2d weights are [in, out, k, k].
        y = F.conv_transpose2d(xs, w.transpose(0, 1), stride=2) if up else F.conv2d(xs, w, padding=kh // 2)
    elif mode == "grouped":
        y = _grouped_modconv(x, wf, styles, dcoefs, up)
        dcoefs = None  # already folded into the weights
    else:
        raise ValueError(f"unknown modulated conv mode {mode!r}")

    if up:
        if resample_filter is None:
            raise ValueError("up-sampling modulated conv needs the resample filter")
        # Transposed conv of a k x k kernel gives 2H + k - 2 samples; the FIR filter (length fk, gain 4)
        # with this padding brings it to exactly 2H, aligned as the official conv2d_resample.
        fk = resample_filter.shape[0]
        p = kw // 2
        pad0 = p + (fk + 1) // 2 - (kw - 1)
        pad1 = p + (fk - 2) // 2 - (kw - 2)
        y = fir_filter2d(y, resample_filter, (pad0, pad1), gain=4.0)
    return y, dcoefs


def _grouped_modconv(
    x: torch.Tensor, wf: torch.Tensor, styles: torch.Tensor, dcoefs: torch.Tensor | None, up: bool
) -> torch.Tensor:
    """Mode "grouped" of `modulated_conv2d_deferred`: the per-sample weights (`wf` modulated by the
    styles, demodulated by `dcoefs` when given) as one grouped convolution, one group per sample."""
    batch, in_ch, height, width = x.shape
    out_ch, _, kh, kw = wf.shape
    wb = wf.unsqueeze(0) * styles.reshape(batch, 1, in_ch, 1, 1)  # [B, O, I, k, k]
    if dcoefs is not None:
        wb = wb * dcoefs.reshape(batch, out_ch, 1, 1, 1)
    wb = wb.to(x.dtype)
    xg = x.reshape(1, batch * in_ch, height, width)
    if up:
        # conv_transpose2d weights are [in, out/groups, k, k].
        wt = wb.transpose(1, 2).reshape(batch * in_ch, out_ch, kh, kw)
        y = F.conv_transpose2d(xg, wt, stride=2, groups=batch)
    else:
        y = F.conv2d(xg, wb.reshape(batch * out_ch, in_ch, kh, kw), padding=kh // 2, groups=batch)
    return y.reshape(batch, out_ch, *y.shape[2:])


def demod_noise_bias_act(
    y: torch.Tensor,
    dcoefs: torch.Tensor | None,
    noise: torch.Tensor | None,
    strength: torch.Tensor,
    bias: torch.Tensor,
    *,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """lrelu(y * d + noise * strength + bias) * gain, clamped, in three passes over y [B, C, H, W].

    Uses lrelu(z) * g = lrelu(z * g) for g > 0 to fold the gain into the per-channel scale, the noise
    strength and the bias: addcmul (scale + bias), addcmul_ (noise), leaky_relu_ (in place).
    """
    batch, ch = y.shape[:2]
    scale = gain if dcoefs is None else (dcoefs * gain).to(y.dtype).reshape(batch, ch, 1, 1)
    b = (bias * gain).to(y.dtype).reshape(1, ch, 1, 1)
    x = torch.add(b, y, alpha=scale) if isinstance(scale, float) else torch.addcmul(b, y, scale)
    if noise is not None:
        x = x.addcmul_(noise.to(y.dtype), (strength * gain).to(y.dtype))
    x = F.leaky_relu_(x, LRELU_SLOPE)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
