"""Telecine cadence, measured: inverse telecine only where 3:2 pulldown is actually there.

Each frame's two fields are compared with the same fields of the frame before. In 3:2 pulldown two
frames in five carry a field that repeats the previous frame's (that field barely changes while
the other does), always at the same two places in the five-frame cycle; a progressive source (film
scanned at its own rate, computer animation, a digital master) changes both fields alike. Held
drawings and still titles change neither, so only frames that change count. The verdict:
"telecine" when at least `_TELECINE` of the moving frames repeat a field, mostly five frames apart
(a cadence broken at a cut, or edited after the telecine, shifts its phase but keeps its period);
"progressive" when fewer do; "unknown" with too few moving frames to tell.

`resolve_inverse_telecine(config, input)` turns `io.inverse_telecine: auto` into true or false
before anything decodes, so a progressive cartoon keeps every frame. FFmpeg's fieldmatch +
decimate (pipeline.io.filters) then follow a cadence that breaks at cuts, matching fields afresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.io.probe import check_input_path, main_video_stream, open_input

log = logging.getLogger(__name__)

_TELECINE = 0.2  # 3:2 pulldown: 0.4 of moving frames repeat a field; progressive: ~0
_PERIODIC = 0.6  # ... and this share of them have another five frames away
_REPEAT = 0.5  # a field "repeats" when it changed less than this fraction of the other field's change
_MOTION = 0.8  # mean absolute luma change (8-bit levels) of the busier field that makes a frame move


@dataclass(frozen=True)
class Cadence:
    """What `measure_cadence` saw in the frames it examined."""

    frames: int  # frames examined
    moving: int  # ... of which changed from the frame before (only they can show a cadence)
    repeated: int  # moving frames one of whose fields repeats the frame before's
    at: tuple[int, ...] = ()  # indices of the frames that repeat a field
    min_moving: int = 24  # fewer moving frames than this: no verdict

    @property
    def repeated_fraction(self) -> float:
        return self.repeated / max(1, self.moving)

    @property
    def periodic_share(self) -> float:
        """Share of the repeating frames with another one five frames before or after: the cadence's
        period (a cadence broken at a cut only loses the few frames around the break)."""
        at = set(self.at)
        return sum(1 for i in at if i - 5 in at or i + 5 in at) / max(1, len(at))

    @property
    def verdict(self) -> str:
        """ "telecine", "progressive" or "unknown"."""
        if self.moving < self.min_moving:
            return "unknown"
        if self.repeated_fraction >= _TELECINE and self.periodic_share >= _PERIODIC:
            return "telecine"
        return "progressive"


def field_changes(prev: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Mean absolute change of the top and the bottom field between two [H, W] luma frames."""
    d = np.abs(cur.astype(np.int16) - prev.astype(np.int16))
    return float(d[0::2].mean()), float(d[1::2].mean())


def measure_cadence(path: str | Path, *, max_frames: int = 600, min_moving: int = 24) -> Cadence:
    """Compare fields over the first `max_frames` frames (it stops early once enough moved)."""
    import av

    path = check_input_path(path)
    frames = moving = repeated = 0
    at: list[int] = []
    prev: np.ndarray | None = None
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        try:
            for frame in container.decode(stream):
                luma = frame.to_ndarray(format="gray")  # [H, W] uint8: fields are its even and odd rows
                if prev is not None and prev.shape == luma.shape:
                    top, bottom = field_changes(prev, luma)
                    busy, calm = max(top, bottom), min(top, bottom)
                    if busy >= _MOTION:
                        moving += 1
                        if calm < _REPEAT * busy:
                            repeated += 1
                            at.append(frames)
                prev = luma
                frames += 1
                if frames >= max_frames or moving >= 8 * min_moving:
                    break
        except av.FFmpegError as exc:  # a damaged stretch ends the measurement there
            log.debug("%s: cadence measurement stopped (%s)", path, exc)
    return Cadence(frames, moving, repeated, tuple(at), min_moving)


def resolve_inverse_telecine(config: Config, input: str | Path) -> tuple[Config, Cadence | None]:
    """`config` with io.inverse_telecine a plain true/false: "auto" measured on `input`, "on"/"off" read.

    An "unknown" verdict (too little motion to tell) keeps every frame."""
    value = config.io.inverse_telecine
    if isinstance(value, bool):
        return config, None
    if value not in ("auto", "on", "off"):
        raise ConfigError(f"io.inverse_telecine={value!r}: must be true, false or auto")
    if value != "auto":
        return replace(config, io=replace(config.io, inverse_telecine=value == "on")), None
    cadence = measure_cadence(input)
    on = cadence.verdict == "telecine"
    log.info(
        "%s: %s (%d of %d moving frames repeat a field): inverse telecine %s",
        input,
        cadence.verdict,
        cadence.repeated,
        cadence.moving,
        "on" if on else "off, every frame kept",
    )
    return replace(config, io=replace(config.io, inverse_telecine=on)), cadence
