"""A deliberately naive StyleGAN2 synthesis, written from the paper's and the official code's equations.

Independent of pipeline.prior.ops: zero insertion by indexing, explicit padding, the FIR filter applied
tap by tap, one F.conv2d per sample with explicitly modulated and demodulated weights, and up-sampling
convs done the slow official way (up-sample with the filter first, then a true convolution, i.e. the
flipped kernel, without padding). Slow, obviously correct, and only for small tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def fir_taps() -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(f, f) / 64.0  # [4, 4], sums to 1


def upfirdn(x: torch.Tensor, up: int, pad0: int, pad1: int, gain: float) -> torch.Tensor:
    """Zero insertion by `up`, pad (pad0 before, pad1 after), convolve with the FIR filter x gain."""
    b, c, h, w = x.shape
    z = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    z[:, :, ::up, ::up] = x
    z = F.pad(z, [pad0, pad1, pad0, pad1])
    f = fir_taps() * gain
    k = f.shape[0]
    out_h, out_w = z.shape[2] - k + 1, z.shape[3] - k + 1
    out = torch.zeros(b, c, out_h, out_w, dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            # convolution: tap (i, j) of the flipped filter
            out += f[k - 1 - i, k - 1 - j] * z[:, :, i : i + out_h, j : j + out_w]
    return out


def modconv(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demod: bool, up: bool
) -> torch.Tensor:
    outs = []
    for b in range(x.shape[0]):
        w = weight * styles[b].reshape(1, -1, 1, 1)  # [O, I, k, k]
        if demod:
            w = w / torch.sqrt((w**2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        xb = x[b : b + 1]
        if up:
            # official slow path: upfirdn (up 2, pads 3/2, gain 4), then a valid true convolution
            xb = upfirdn(xb, 2, 3, 2, 4.0)
            outs.append(F.conv2d(xb, w.flip([2, 3])))
        else:
            outs.append(F.conv2d(xb, w, padding=w.shape[-1] // 2))
    return torch.cat(outs)


def fc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, lr: float, act: bool) -> torch.Tensor:
    y = x @ (weight * lr / math.sqrt(weight.shape[1])).t() + bias * lr
    return F.leaky_relu(y, 0.2) * math.sqrt(2) if act else y


def reference_synthesis(
    sd: dict[str, torch.Tensor],
    resolution: int,
    ws: torch.Tensor,
    noise: list[torch.Tensor],
    clamp: float | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Image and the list of skip sums at each level, from a state dict with the official names."""
    b = ws.shape[0]
    x = sd["synthesis.b4.const"].unsqueeze(0).repeat(b, 1, 1, 1)
    img = None
    levels = []
    wi = 0
    ni = 0
    res = 4
    while res <= resolution:
        names = ["conv1"] if res == 4 else ["conv0", "conv1"]
        for name in names:
            p = f"synthesis.b{res}.{name}."
            s = fc(ws[:, wi], sd[p + "affine.weight"], sd[p + "affine.bias"], 1.0, False)
            x = modconv(x, sd[p + "weight"], s, True, name == "conv0")
            x = x + noise[ni] * sd[p + "noise_strength"]
            x = F.leaky_relu(x + sd[p + "bias"].reshape(1, -1, 1, 1), 0.2) * math.sqrt(2)
            if clamp is not None:
                x = x.clamp(-clamp, clamp)
            wi += 1
            ni += 1
        p = f"synthesis.b{res}.torgb."
        s = fc(ws[:, wi], sd[p + "affine.weight"], sd[p + "affine.bias"], 1.0, False)
        s = s / math.sqrt(sd[p + "weight"].shape[1])
        y = modconv(x, sd[p + "weight"], s, False, False) + sd[p + "bias"].reshape(1, -1, 1, 1)
        if clamp is not None:
            y = y.clamp(-clamp, clamp)
        img = y if img is None else upfirdn(img, 2, 2, 1, 4.0) + y
        levels.append(img)
        res *= 2
    assert img is not None
    return img, levels


def reference_mapping(sd: dict[str, torch.Tensor], z: torch.Tensor, layers: int, lr: float) -> torch.Tensor:
    x = z / torch.sqrt((z**2).mean(dim=1, keepdim=True) + 1e-8)
    for i in range(layers):
        x = fc(x, sd[f"mapping.fc{i}.weight"], sd[f"mapping.fc{i}.bias"], lr, True)
    return x  # [B, w_dim]
