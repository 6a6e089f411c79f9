"""Sliding windows over a frame stream, and the float working picture the stages pass on.

Every temporal stage is a pure function of a fixed window of its input (never a running state), so
a frame's result depends only on the frames within the stages' summed radii: segments cleaned
separately with that much overlap equal the whole clip cleaned at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np

from pipeline.film import torch_ops
from pipeline.film.torch_ops import is_tensor
from pipeline.types import VideoFrame

if TYPE_CHECKING:
    from torch import Tensor

T = TypeVar("T")
S = TypeVar("S")


@dataclass(eq=False)
class Work:
    """One frame inside the cleaning chain."""

    frame: VideoFrame  # the decoded frame (index, pts, time; its image is the original)
    # [H, W, 3] float32 in [0, 1], the picture as cleaned so far: numpy, or a tensor on the torch
    # `film.device` (pipeline.film.torch_ops)
    image: Any
    info: dict[str, Any] = field(default_factory=dict)  # per-frame stage figures (CleanStats reads them)


def sliding(
    items: Iterable[T], before: int, after: int, summary: Callable[[T], S]
) -> Iterator[tuple[list[S], T, list[T]]]:
    """(summaries of up to `before` earlier items, item, up to `after` later items) for every item.

    Earlier items are kept only as `summary(item)` (cheap features, or the item itself when a stage
    needs whole pictures), later ones whole. Near the ends of the stream the lists are shorter.
    """
    past: deque[S] = deque(maxlen=max(0, before))
    future: deque[T] = deque()
    for item in items:
        future.append(item)
        if len(future) > after:
            centre = future.popleft()
            yield list(past), centre, list(future)
            if before:
                past.append(summary(centre))
    while future:
        centre = future.popleft()
        yield list(past), centre, list(future)
        if before:
            past.append(summary(centre))


@overload
def luma(image: np.ndarray) -> np.ndarray: ...
@overload
def luma(image: Tensor) -> Tensor: ...
def luma(image: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """[H, W] float32 Rec.601 luma of an [H, W, 3] float32 RGB picture (a tensor stays on its device)."""
    import cv2

    if is_tensor(image):
        return torch_ops.luma(image)
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))


def gray8(image: np.ndarray | Tensor) -> np.ndarray:
    """[H, W] uint8 luma (what OpenCV's flow and phase correlation work on), numpy also for a tensor."""
    import cv2

    if is_tensor(image):
        return torch_ops.gray8(image)
    return np.asarray(cv2.cvtColor(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY))


_CUT_CORRELATION = 0.5  # consecutive frames whose brightness-normalised thumbnails correlate less: a cut


def thumbnail(image: np.ndarray | Tensor) -> np.ndarray:
    """[24, 32] float32 luma thumbnail, zero mean and unit variance (flicker does not change it)."""
    import cv2

    if is_tensor(image):  # reduced on the device, judged here
        t = torch_ops.to_numpy(torch_ops.area_resize(luma(image), (32, 24))).astype(np.float32)
    else:
        t = cv2.resize(luma(image), (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (t - t.mean()) / max(float(t.std()), 1e-3)


def is_cut(prev_thumb: np.ndarray | None, thumb: np.ndarray) -> bool:
    """Whether a frame starts a new shot: its thumbnail barely correlates with the previous frame's."""
    if prev_thumb is None or prev_thumb.shape != thumb.shape:
        return prev_thumb is not None
    return float((prev_thumb * thumb).mean()) < _CUT_CORRELATION


def same_shot(past_cuts: list[bool], own_cut: bool, future_cuts: list[bool]) -> tuple[int, int]:
    """(earlier, later): how many window items either side belong to the centre frame's shot.

    `past_cuts`, `future_cuts` say for each earlier / later item (oldest first) whether it starts a
    shot, `own_cut` whether the centre frame does."""
    earlier = 0
    if not own_cut:
        for cut in reversed(past_cuts):
            earlier += 1
            if cut:
                break
    later = 0
    for cut in future_cuts:
        if cut:
            break
        later += 1
    return earlier, later


def measured_steps(
    works: Iterator[Work],
    measure: Callable[[Any], np.ndarray],
    step: Callable[[np.ndarray, np.ndarray], np.ndarray | None],
) -> Iterator[tuple[Work, np.ndarray | None, bool]]:
    """Each frame with `step(previous measure, this measure)` and whether it starts a shot (no step
    across a cut, at the first frame, or between measures of different shapes)."""
    prev: np.ndarray | None = None
    prev_thumb: np.ndarray | None = None
    for w in works:
        thumb = thumbnail(w.image)
        logs = measure(w.image)
        cut = is_cut(prev_thumb, thumb)
        moved = None if cut or prev is None or prev.shape != logs.shape else step(prev, logs)
        yield w, moved, cut
        prev, prev_thumb = logs, thumb
