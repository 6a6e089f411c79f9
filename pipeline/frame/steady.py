"""Steadiness of the composed faces along their tracks, measured without a reference.

`Steadiness` is fed the frames of a segment in order by `pipeline.frame.compose.compose_frame`
and adds, to each face record, how much the output's face region changed since the track's
previous frame and how much the footage did there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pipeline.frame.compose import FacePlacement


class Steadiness:
    """Per face-frame, how much the output's face region changed since the track's previous frame,
    against how much the footage did there (no reference needed): `change_out` and `change_src`,
    RMS in [0, 1] units over the face square's box (source px; x scale in the output). A track's
    steadiness is mean(change_out) / mean(change_src): 1 moves as the film does, more flickers.

    Feed it the frames of a segment in order (`compose_frame(..., steadiness=s)`); it keeps only the
    previous frame.
    """

    def __init__(self) -> None:
        self._prev: tuple[int, np.ndarray, np.ndarray] | None = None  # frame index, source, output

    def measure(
        self,
        index: int,
        source: np.ndarray,
        output: np.ndarray,
        placements: Sequence[FacePlacement],
        records: list[dict[str, Any]],
    ) -> None:
        prev = self._prev if self._prev is not None and self._prev[0] == index - 1 else None
        self._prev = (index, source, output)
        if prev is None:
            return
        scale = output.shape[1] / source.shape[1]
        by_track = {int(p.restoration.track_id): p for p in placements}
        for rec in records:
            p = by_track[int(rec["track_id"])]
            corners = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], np.float64) * [
                p.crop_size,
                p.crop_size,
                1,
            ]
            pts = corners @ np.asarray(p.crop_to_frame, np.float64).T  # [4, 2] source px
            x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int), 0)
            x1, y1 = np.ceil(pts.max(0)).astype(int)
            x1, y1 = min(x1, source.shape[1]), min(y1, source.shape[0])
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            s0, s1 = prev[1][y0:y1, x0:x1], source[y0:y1, x0:x1]
            X0, Y0, X1, Y1 = (round(v * scale) for v in (x0, y0, x1, y1))
            o0, o1 = prev[2][Y0:Y1, X0:X1], output[Y0:Y1, X0:X1]
            rec["change_src"] = round(_rms_change(s0, s1), 6)
            rec["change_out"] = round(_rms_change(o0, o1), 6)


def _rms_change(a: np.ndarray, b: np.ndarray) -> float:
    peak = 255.0 if a.dtype == np.uint8 else 65535.0 if a.dtype == np.uint16 else 1.0
    d = (b.astype(np.float64) - a.astype(np.float64)) / peak
    return float(np.sqrt(np.mean(d * d)))
