"""Learned upscalers for tests: tiny Real-ESRGAN compact networks with seeded random weights (their
placement, speed and plumbing are under test, not their looks). Never downloaded."""

from __future__ import annotations

from pathlib import Path


def save_compact(path: Path, *, num_feat: int = 8, num_conv: int = 2, scale: int = 2, seed: int = 0) -> Path:
    """Write a compact network's state dict (spandrel recognises it) to `path`; returns `path`."""
    import torch

    from pipeline.frame.sr import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv, upscale=scale)
    torch.save(net.state_dict(), path)
    return path
