"""Scene cuts: where one shot ends and the next begins, so no face track ever crosses a cut.

PySceneDetect's adaptive content detector runs on the same reduced frames the face detector sees,
in one pass. It scores the frame-to-frame change of hue, saturation and brightness (brightness only
for black-and-white footage, where hue and saturation are noise) and calls a cut where the change
is several times that of the neighbouring frames. The ratio, unlike a fixed threshold, holds up
on grainy, low-contrast footage, where a cut may change the mean brightness by little while the
grain alone keeps every frame-to-frame difference well above zero.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from pipeline.types import Shot


class CutDetector:
    """Feed frames in order with `push`; `finish` returns the first frame index of every new shot.

    The adaptive score needs two frames after a cut to confirm it, so a cut in the last two
    frames of a range goes unreported (its shot is too short to matter).
    """

    def __init__(
        self, threshold: float = 3.0, min_change: float = 12.0, min_shot_len: int = 4, gray: bool = False
    ) -> None:
        from scenedetect.detectors import AdaptiveDetector

        self._detector = AdaptiveDetector(
            adaptive_threshold=threshold,
            min_scene_len=min_shot_len,
            min_content_val=min_change,
            luma_only=gray,
        )
        self._cuts: list[int] = []
        self._last: int | None = None
        self._previous: np.ndarray | None = None  # the last picture, standing in for missing frames

    def push(self, frame_index: int, image: np.ndarray) -> None:
        """`image`: [h, w, 3] uint8 RGB; frame indices must increase.

        A gap (frames a damaged file could not give) is a gap, not an error: the last picture stands
        in for the missing frames, so the detector's window stays aligned and no cut is invented.
        """

        if self._last is not None and frame_index <= self._last:
            raise ValueError(f"CutDetector: frame {frame_index} follows {self._last}; frames must increase")
        if self._last is not None and frame_index > self._last + 1 and self._previous is not None:
            for missing in range(self._last + 1, frame_index):
                self._process(missing, self._previous)
        self._last = frame_index
        self._previous = image
        self._process(frame_index, image)

    def _process(self, frame_index: int, image: np.ndarray) -> None:
        from scenedetect.common import FrameTimecode

        # The frame rate only converts min_scene_len when given in seconds; ours is in frames.
        found = self._detector.process_frame(FrameTimecode(frame_index, 25.0), image[:, :, ::-1])
        self._cuts.extend(int(tc.frame_num) for tc in found)

    def finish(self) -> list[int]:
        return sorted(set(self._cuts))


def shots_from_cuts(cuts: Sequence[int], start: int, end: int) -> list[Shot]:
    """Shots covering [start, end), split at every cut inside the range, numbered from 0."""
    bounds = [start, *sorted(c for c in set(cuts) if start < c < end), end]
    return [Shot(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds)) if b > a]
