"""A slow trend and the fast wobble about it, within a stage's window of frames.

Weave and flicker are both the fast part of a curve over time (a frame's position, its log
brightness) whose slow part is the film's own: a pan or a handheld sway, a fade or light that
changes as the camera moves. Each stage measures the step from frame to frame, chains the steps
into the curve relative to the centre frame (`chain`), fits a low-order polynomial to the window
robustly (`trend_at_centre`: the slow part; a quadratic keeps accelerating pans and curved fades)
and measures the fast part from second differences (`wobble`: a smooth curve has almost none, so a
shot without weave or flicker is left alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MIN_POINTS = 3  # fewer frames than this in a window: no trend is fitted (nothing is corrected)
_QUADRATIC = 7  # ... this many or more: a quadratic, else a straight line


def chain(
    past_steps: Sequence[np.ndarray | None], own: np.ndarray | None, future_steps: Sequence[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """(offsets [n] int, values [n, d]) of the curve relative to the centre frame (offset 0, value 0).

    `past_steps[i]` is the step into past frame i+1 from frame i (oldest first), `own` the step into
    the centre frame, `future_steps[k]` the step into future frame k from the one before. A None step
    (a cut, a failed measurement) ends the chain in that direction."""
    dim = next((len(s) for s in (*past_steps, own, *future_steps) if s is not None), 1)
    offsets, values = [0], [np.zeros(dim)]
    pos = np.zeros(dim)
    for k, s in enumerate(future_steps, start=1):  # c[t+k] - c[t] = sum of the steps into t+1 .. t+k
        if s is None:
            break
        pos = pos + s
        offsets.append(k)
        values.append(pos)
    pos = np.zeros(dim)
    backward = [own, *reversed(past_steps)]  # steps into t, t-1, t-2, ...
    for k in range(1, len(past_steps) + 1):  # c[t-k] - c[t] = -(steps into t, ..., t-k+1)
        s = backward[k - 1]
        if s is None:
            break
        pos = pos - s
        offsets.insert(0, -k)
        values.insert(0, pos)
    return np.array(offsets), np.stack(values)


def trend_at_centre(offsets: np.ndarray, values: np.ndarray, max_degree: int = 2) -> np.ndarray | None:
    """[d] the robust polynomial trend of `values` ([n, d]) at offset 0, or None (too few frames): a
    quadratic from `_QUADRATIC` frames on, a straight line below (`max_degree` 1: a straight line
    always; its value at the centre of a window is twice as steady as a quadratic's).

    Least squares, then once more with points far from the first fit (a flash, a bad measurement)
    given little weight (Tukey's biweight on the residuals' robust spread)."""
    n = len(offsets)
    if n < _MIN_POINTS:
        return None
    degree = min(max_degree, 2 if n >= _QUADRATIC else 1)
    x = offsets.astype(np.float64) / max(1.0, float(np.abs(offsets).max()))
    a = np.vander(x, degree + 1)  # [n, degree + 1], the constant last
    out = np.zeros(values.shape[1])
    for j in range(values.shape[1]):
        y = values[:, j]
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        res = y - a @ coef
        scale = 4.685 * max(1.4826 * float(np.median(np.abs(res))), 1e-9)
        w = np.clip(1.0 - (res / scale) ** 2, 0.0, 1.0) ** 2
        if float(w.sum()) > degree + 1:
            sw = np.sqrt(w)
            coef = np.linalg.lstsq(a * sw[:, None], y * sw, rcond=None)[0]
        out[j] = float(coef[-1])
    return out


def wobble(values: np.ndarray) -> float:
    """Robust std of the frame-to-frame wobble of `values` ([n, d], consecutive frames), from second
    differences (white wobble of std s gives second differences of std s * sqrt(6); a smooth curve
    almost none); the mean over the d columns. 0 for fewer than 3 frames."""
    if len(values) < 3:
        return 0.0
    d2 = values[2:] - 2.0 * values[1:-1] + values[:-2]  # [n - 2, d]
    return float(np.mean(1.4826 * np.median(np.abs(d2), axis=0)) / np.sqrt(6.0))
