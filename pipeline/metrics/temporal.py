"""Consistency and steadiness measures for restored face sequences (numpy; no torch needed).

Sequences are arrays [T, H, W, C] float in [0, 1] (or anything of shape [T, ...]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB between two arrays of equal shape (capped at 100 dB for identical inputs)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 100.0 if mse <= 1e-10 else 10.0 * float(np.log10(peak * peak / mse))


def frame_changes(seq: np.ndarray) -> np.ndarray:
    """RMS change between consecutive frames: [T, ...] -> [T - 1]."""
    d = np.diff(np.asarray(seq, np.float64), axis=0)
    return np.sqrt((d**2).reshape(d.shape[0], -1).mean(1))


def flicker(out: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RMS of the frame-to-frame change the output makes beyond the truth's own change: [T - 1].

    Zero when the output moves exactly as the truth does (whatever its per-frame error); a steady
    wrong answer scores well only as long as the truth is steady too.
    """
    d = np.diff(np.asarray(out, np.float64), axis=0) - np.diff(np.asarray(truth, np.float64), axis=0)
    return np.sqrt((d**2).reshape(d.shape[0], -1).mean(1))


def relative_change(out: np.ndarray, truth: np.ndarray) -> float:
    """Mean frame-to-frame change of the output divided by the truth's: 1 = moves as much as the truth."""
    return float(frame_changes(out).mean() / max(frame_changes(truth).mean(), 1e-12))


def boundary_ratio(changes: np.ndarray, boundary: Sequence[int]) -> float:
    """Mean change at the given transitions (index t = change from frame t to t + 1) ÷ mean elsewhere."""
    changes = np.asarray(changes, np.float64)
    mask = np.zeros(changes.shape[0], bool)
    mask[[b for b in boundary if 0 <= b < changes.shape[0]]] = True
    if not mask.any() or mask.all():
        raise ValueError("boundary_ratio needs transitions both at and away from the boundaries")
    return float(changes[mask].mean() / max(changes[~mask].mean(), 1e-12))
