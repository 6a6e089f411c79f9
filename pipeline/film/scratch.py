"""Vertical line scratches: found column by column and inpainted from the picture either side.

A scratch is a thin line, brighter or darker than both sides, down most of the frame. The
background is the picture's median over a square window wider than a scratch (OpenCV; edges of
objects survive a median, thin lines do not), and a column's line strength is the median over
rows of the picture minus that background. Columns whose strength stands out from all columns'
(in robust standard deviations, and by at least `_MIN_CONTRAST`) and that group into runs no wider
than `max_width`
are scratches; their rows where the line is present are filled by linear interpolation between
the columns just outside it.

Picture detail can pass that test in one frame (a pole, the edge of a sleeve), so two more are made
before a line is taken for a scratch: its profile is a scratch's (a narrow ridge or valley with the
same picture either side, not a step between two areas), and it persists: a line near the same
columns is found in each neighbouring frame (`scratch_stage`, one frame either side). A scratch stays
put on the film while the camera moves the picture under it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from pipeline.film import torch_ops
from pipeline.film.torch_ops import is_tensor
from pipeline.film.window import Work, luma, sliding

_MIN_CONTRAST = 0.02  # a scratch differs from its surroundings by at least this (0..1)
_MIN_ROWS = 0.6  # ... along at least this fraction of the rows
_SIDES_ALIKE = 0.5  # ... and its two sides differ by less than this x its contrast (a ridge, not a step)
_NEAR = 1  # px: a line in a neighbouring frame this close (or overlapping) is the same scratch


class ColumnResponse:
    """The line response of a tensor luma picture, made on its device where it is read: every other
    row for the column strengths, whole columns for the few columns that may hold a scratch."""

    def __init__(self, y: Any, k: int) -> None:
        import torch

        self.y, self.k = y, k
        self.y8 = torch.floor((y * 255.0 + 0.5).clamp(0, 255)).to(torch.uint8)
        self.shape = tuple(y.shape)

    def strength(self) -> np.ndarray:
        """[W] the median down every other row of the response."""
        import torch

        background = torch_ops.median_blur(self.y8, self.k, row_step=2).to(torch.float32) / 255.0
        return torch_ops.to_numpy(torch_ops.median_rows(self.y[::2] - background))

    def columns(self, cols: np.ndarray) -> np.ndarray:
        """[H, len(cols)] the response down those columns (numpy)."""
        import torch

        at = torch.as_tensor(np.asarray(cols, np.int64), device=self.y.device)
        background = torch_ops.median_blur(self.y8, self.k, cols=at).to(torch.float32) / 255.0
        return torch_ops.to_numpy(self.y[:, at] - background)


def line_response(y: Any, max_width: int) -> tuple[Any, np.ndarray]:
    """([H, W] float32 line response: the luma minus its median over a window wider than a scratch,
    [W] its median down every other row) for an [H, W] float32 luma picture (numpy, or a tensor: then
    a `ColumnResponse`, made on the device where it is read)."""
    import cv2

    k = 2 * max_width + 3  # median window, odd, wider than any scratch
    if is_tensor(y):
        response = ColumnResponse(y, k)
        return response, response.strength()
    y8 = np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)
    background = cv2.medianBlur(y8, k)  # [H, W]: a thin line is under half of any k x k window
    response = y - background.astype(np.float32) / 255.0  # [H, W]
    return response, np.median(response[::2], axis=0)  # [W] (every other row is plenty)


def find_scratches(y: Any, threshold: float, max_width: int) -> tuple[list[tuple[int, int]], Any]:
    """([(x0, x1) column runs], [H, W] float32 line response) for an [H, W] float32 luma picture
    (numpy, or a tensor: only the columns looked at come to the CPU)."""
    response, strength = line_response(y, max_width)
    centred = strength - np.median(strength)
    spread = max(1.4826 * float(np.median(np.abs(centred))), 1e-3)
    hit = (np.abs(centred) > threshold * spread) & (np.abs(centred) > _MIN_CONTRAST)
    if hit.any():  # ... and the line runs down most rows (a picture's vertical detail rarely does)
        cols = np.nonzero(hit)[0]
        lines = _columns(response, cols)
        along = (lines * np.sign(centred[cols]) > 0.25 * np.abs(centred[cols])).mean(axis=0)
        hit[cols[along < _MIN_ROWS]] = False
    runs: list[tuple[int, int]] = []
    x = 0
    w = hit.shape[0]
    while x < w:
        if not hit[x]:
            x += 1
            continue
        x1 = x
        sign = np.sign(centred[x])
        while True:  # one scratch: columns of the same sign, with gaps of one column bridged
            if x1 + 1 < w and hit[x1 + 1] and np.sign(centred[x1 + 1]) == sign:
                x1 += 1
            elif x1 + 2 < w and hit[x1 + 2] and np.sign(centred[x1 + 2]) == sign:
                x1 += 2
            else:
                break
        if x1 - x + 1 <= max_width and x > 1 and x1 < w - 2 and _ridge(y, x, x1 + 1):
            runs.append((x, x1 + 1))
        x = x1 + 1
    return runs, response


def _columns(response: Any, cols: np.ndarray) -> np.ndarray:
    """[H, len(cols)] numpy: those columns of a line response (an array or a `ColumnResponse`)."""
    if isinstance(response, ColumnResponse):
        return response.columns(cols)
    return np.asarray(response[:, cols])


def _ridge(y: Any, x0: int, x1: int) -> bool:
    """Whether columns [x0, x1) of luma `y` stand out from both sides alike (a scratch's profile)."""
    part = torch_ops.to_numpy(y[:, x0 - 2 : x1 + 2])  # from 2 left of the run to 1 right of it
    left, right = part[:, 0], part[:, -1]
    line = part[:, 2 : 2 + x1 - x0].mean(axis=1)
    contrast = float(np.median(np.abs(line - 0.5 * (left + right))))
    return float(np.median(np.abs(left - right))) < _SIDES_ALIKE * contrast


def _near(run: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    return any(o0 <= run[1] - 1 + _NEAR and run[0] <= o1 - 1 + _NEAR for o0, o1 in others)


def persistent(
    runs: list[tuple[int, int]], before: list[tuple[int, int]] | None, after: list[tuple[int, int]] | None
) -> list[tuple[int, int]]:
    """The runs also found near the same columns in each neighbouring frame there is (None: none)."""
    if before is None and after is None:
        return []
    return [r for r in runs if all(_near(r, n) for n in (before, after) if n is not None)]


def scratch_stage(works: Iterator[Work], threshold: float, max_width: int) -> Iterator[Work]:
    """Frames with their persistent vertical line scratches inpainted (`info["scratches"]`: how many)."""
    found = ((w, *find_scratches(luma(w.image), threshold, max_width)) for w in works)
    for past, (work, runs, response), future in sliding(found, 1, 1, lambda item: item[1]):
        keep = persistent(runs, past[-1] if past else None, future[0][1] if future else None)
        if keep:
            filled = np.zeros(work.image.shape[:2], bool)
            work.image = inpaint_scratches(work.image, keep, response, filled)
            work.info["filled"] = filled
        work.info["scratches"] = len(keep)
        yield work


def inpaint_scratches(
    image: Any, runs: list[tuple[int, int]], response: Any, filled: np.ndarray | None = None
) -> Any:
    """`image` ([H, W, 3] float32, numpy or a tensor) with each scratch run filled where its line is
    present; the pixels filled are set in `filled` ([H, W] bool) when given."""
    out = image.clone() if is_tensor(image) else image.copy()
    w = image.shape[1]
    for x0, x1 in runs:
        a, b = max(0, x0 - 1), min(w - 1, x1)  # columns just outside the (slightly widened) run
        line = _columns(response, np.arange(x0, x1)).mean(axis=1)  # [H]
        sign = np.sign(np.median(line))
        rows = (line * sign) > 0.5 * _MIN_CONTRAST
        # close small gaps along the line
        rows = np.convolve(rows.astype(np.float32), np.ones(5, np.float32), mode="same") > 0
        if not rows.any():
            continue
        at: Any = rows
        if is_tensor(image):
            import torch

            at = torch.as_tensor(rows, device=image.device)
        left, right = image[at, a], image[at, b]  # [n, 3]
        for x in range(a + 1, b):
            t = (x - a) / (b - a)
            out[at, x] = (1 - t) * left + t * right
        if filled is not None:
            filled[rows, a + 1 : b] = True
    return out


def remove_scratches(image: Any, threshold: float, max_width: int) -> tuple[Any, int]:
    """(`image` with its vertical line scratches inpainted, number of scratches found)."""
    runs, response = find_scratches(luma(image), threshold, max_width)
    if not runs:
        return image, 0
    return inpaint_scratches(image, runs, response), len(runs)
