"""Deflicker: each frame's mean brightness, per channel, matched to its temporal window.

Flicker (exposure and printing-light variation from frame to frame) is a per-frame gain. A frame's
target is the geometric mean of its window's frame means (`radius` frames either side), so a slow
change of scene brightness passes and only the frame-to-frame pumping goes; the window stops at a
cut (brightness-normalised thumbnails of consecutive frames that do not correlate). FFmpeg's `deflicker`
filter works the same way but on luma only, with a window ahead of the frame and no colour; the
few lines here keep the window centred, per channel, and free of running state (segments agree).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipeline.film.window import Work, is_cut, same_shot, sliding, thumbnail

_EPS = 1e-3  # means are floored here (black frames are not flicker)


def frame_means(image: np.ndarray) -> np.ndarray:
    """[3] float64 mean of each channel of an [H, W, 3] float32 picture (on a reduced copy: fast)."""
    import cv2

    h, w = image.shape[:2]
    step = max(1, min(h, w) // 128)
    small = image if step == 1 else cv2.resize(image, (w // step, h // step), interpolation=cv2.INTER_AREA)
    return np.maximum(small.reshape(-1, 3).mean(axis=0, dtype=np.float64), _EPS)


def gains(means: list[np.ndarray], centre: int, max_gain: float) -> np.ndarray:
    """[3] gains bringing window item `centre` onto the window's geometric-mean brightness."""
    logs = np.log(np.stack(means))  # [n, 3]
    g = np.exp(logs.mean(axis=0) - logs[centre])
    return np.clip(g, 1.0 / max_gain, max_gain)


def _measured(works: Iterator[Work]) -> Iterator[tuple[Work, np.ndarray, bool]]:
    """Each frame with its channel means and whether it starts a new shot."""
    prev = None
    for w in works:
        thumb = thumbnail(w.image)
        yield w, frame_means(w.image), is_cut(prev, thumb)
        prev = thumb


def deflicker(works: Iterator[Work], radius: int, max_gain: float) -> Iterator[Work]:
    """Frames with per-channel gains applied; `info["gain"]` holds the [3] gains used. The window
    stops at cuts: a shot's brightness is never pulled towards its neighbour's."""
    for past, (work, m, cut), future in sliding(_measured(works), radius, radius, lambda item: item[1:]):
        earlier, later = same_shot([c for _, c in past], cut, [f[2] for f in future])
        window = [*(pm for pm, _ in past[len(past) - earlier :]), m, *(f[1] for f in future[:later])]
        g = gains(window, earlier, max_gain)
        if np.any(np.abs(g - 1.0) > 1e-4):
            work.image = np.clip(work.image * g.astype(np.float32), 0.0, 1.0)
        work.info["gain"] = g
        yield work
