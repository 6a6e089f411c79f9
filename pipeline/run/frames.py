"""Frames for the steps: the one place a step decodes pixels, and one thread per task.

`read_frames(video, cfg, start, end, max_size)` is the only way a step reads frames (scan,
crops and compose all go through it), so a whole-frame treatment before everything else (film
cleaning, `pipeline.film.clean`) plugs in here once. It is re-exported as
`pipeline.run.steps.read_frames`, the name the integration contract uses.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import Config
from pipeline.files import load_arrays, save_arrays
from pipeline.film.clean import CleanStats, clean_frames, context, enabled
from pipeline.io.sequence import set_sequence_rate
from pipeline.types import VideoFrame

if TYPE_CHECKING:
    import av

    from pipeline.io.decode import DecodeStats, Video

# Frames this process has taken from the decoder and put through film cleaning, context frames
# included. `pipeline.run.schedule.run_step` takes the difference around each step (in-process or in
# a Ray worker); both executors add the steps' figures up into the report's "decode" section.
COUNTS: dict[str, int] = {"decoded": 0, "cleaned": 0}


def frame_counts() -> dict[str, int]:
    """A copy of this process's decoded and cleaned frame counts."""
    return dict(COUNTS)


def inverse_telecine(cfg: Config) -> bool:
    """Whether frames are inverse-telecined ("auto" is resolved to true or false before any step)."""
    return cfg.io.inverse_telecine is True


def film_cleaning(cfg: Config) -> bool:
    """Whether any film-cleaning stage is on (none while `cfg` has no `film` section): a stage switch
    that is true (dither only shapes the output of the others), grain other than "keep", or a line
    denoise above 0. The film helper owns this rule and may replace it."""

    return enabled(cfg)


def film_on_torch(cfg: Config) -> bool:
    """Film cleaning is on and its torch stages run on a torch device (`film.device` not "numpy"):
    its steps ask for a GPU share where the cluster has GPUs (`pipeline.run.work.KINDS`)."""
    return film_cleaning(cfg) and cfg.film.device != "numpy"


def open_source(video: str | Path, cfg: Config) -> Video:
    """The input opened with the job's decoding settings (`pipeline.io.decode.open_video`), one
    decoder thread per reader: the worker count sets the parallelism."""
    from pipeline.io.decode import open_video

    set_sequence_rate(cfg.io.sequence_rate)  # image-sequence inputs carry no rate (any worker)
    return open_video(
        video,
        deinterlace=cfg.io.deinterlace,
        inverse_telecine=inverse_telecine(cfg),
        max_damaged_fraction=cfg.io.max_damaged_fraction,
        thread_count=1,
    )


class Frames:
    """Frames [start, end) as VideoFrames, as a context manager; `time_base`, `frame_rate` and
    `stats` as the decoder's (a reader of `open_source`). `native()` gives the decoded PyAV
    frames untouched (only when nothing changes the pictures: no film cleaning)."""

    def __init__(self, video: Path, cfg: Config, start: int, end: int | None, max_size: int | None) -> None:
        self.start = start
        self._cfg = cfg
        self._clean = film_cleaning(cfg)
        self.film_stats: CleanStats | None = (
            None  # film: the CleanStats of the frames handed out (when cleaning is on)
        )
        before = after = 0
        if self._clean:
            before, after = context(cfg)
        # Inverse telecine numbers frames as it decodes: it reads from frame 0 and skips to `start`.
        first = 0 if inverse_telecine(cfg) else max(0, start - before)
        last = None if end is None else end + after
        self._reader = open_source(video, cfg).reader(first, last, max_size=max_size)
        self.end: int = end if end is not None else self._reader.end

    @property
    def time_base(self) -> Fraction:
        return Fraction(self._reader.time_base)

    @property
    def frame_rate(self) -> Fraction | None:
        return self._reader.frame_rate

    @property
    def stats(self) -> DecodeStats:
        return self._reader.stats

    def __enter__(self) -> Frames:
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.close()

    def __iter__(self) -> Iterator[VideoFrame]:
        frames: Iterator[VideoFrame] = self._counted(self._reader)
        if self._clean:
            cleaned = clean_frames(frames, self._cfg, start=self.start, end=self.end)
            self.film_stats = cleaned.stats
            frames = cleaned
        for frame in frames:
            if frame.index < self.start:
                continue
            if frame.index >= self.end:
                break
            yield frame

    def _counted(self, frames: Iterator[VideoFrame]) -> Iterator[VideoFrame]:
        """`frames`, each one counted as decoded (and as cleaned when cleaning is on) as it passes."""
        for frame in frames:
            COUNTS["decoded"] += 1
            COUNTS["cleaned"] += self._clean
            yield frame

    def native(self) -> Iterator[tuple[int, int, av.VideoFrame]]:
        """(index, pts, PyAV frame) of [start, end) without the RGB conversion."""
        if self._clean:
            raise ValueError("film cleaning changes the pictures: native frames are not available")
        for index, pts, frame in self._reader.native_frames():
            COUNTS["decoded"] += 1
            if index < self.start:
                continue
            if index >= self.end:
                break
            yield index, pts, frame


@dataclass(frozen=True)
class CleanSegment:
    """A clean step's artifact: the decoded (and film-cleaned) frames [start, end) at full size,
    `frames` an .npy [end - start, H, W, 3] (slot i holds frame start + i) and `meta` an npz with the
    indices present, their pts, the time base, the frame rate and the segment's film figures."""

    start: int
    end: int
    frames: str
    meta: str


def save_segment_meta(
    segment: CleanSegment,
    frames: Frames,
    index: list[int],
    pts: list[int],
    grain: Sequence[np.ndarray | None] = (),
    filled: Sequence[np.ndarray | None] = (),
) -> None:
    """The npz beside a clean segment's frames (written last: an existing npz means both are
    complete); `grain` the frames' grain measurements (regrain) and `filled` the pixels film fills
    synthesised (bit-packed), one per index or none at all."""
    rate = frames.frame_rate
    measured = [g for g in grain if g is not None]
    width = measured[0].size if measured else 0
    table = np.full((len(index) if measured else 0, width), np.nan, np.float32)
    for row, g in enumerate(grain):
        if g is not None and width:
            table[row] = g
    stats = asdict(frames.film_stats) if frames.film_stats is not None else None
    save_arrays(
        segment.meta,
        index=np.array(index, np.int64),
        pts=np.array(pts, np.int64),
        time_base=np.array([frames.time_base.numerator, frames.time_base.denominator], np.int64),
        frame_rate=np.array([rate.numerator, rate.denominator] if rate else [0, 1], np.int64),
        film=np.array(json.dumps(stats)),
        grain=table,
        **_packed_fills(filled, len(index)),
    )


def _packed_fills(filled: Sequence[np.ndarray | None], n: int) -> dict[str, np.ndarray]:
    """`filled` masks as npz arrays: bit-packed rows and which frames have one (none: empty)."""
    masks = [f for f in filled if f is not None]
    if not masks:
        return {}
    shape = masks[0].shape
    rows = np.zeros((n, (shape[0] * shape[1] + 7) // 8), np.uint8)
    for row, f in enumerate(filled):
        if f is not None:
            rows[row] = np.packbits(f.ravel())
    return {
        "filled": rows,
        "filled_any": np.array([f is not None for f in filled], bool),
        "filled_shape": np.array(shape, np.int64),
    }


def _unpacked_fill(meta: dict[str, np.ndarray], row: int) -> np.ndarray | None:
    if "filled" not in meta or not meta["filled_any"][row]:
        return None
    h, w = (int(v) for v in meta["filled_shape"])
    return np.unpackbits(meta["filled"][row], count=h * w).reshape(h, w).astype(bool)


class StoredFrames:
    """Frames [start, end) read back from the clean segments that cover them (memory-mapped), with
    `time_base`, `frame_rate` and `film_stats` as `Frames` has them; nothing is decoded again."""

    def __init__(self, segments: Sequence[CleanSegment], start: int, end: int | None) -> None:

        self.start = start
        self.end: int = end if end is not None else max(s.end for s in segments)
        self._segments = sorted(
            (s for s in segments if s.start < self.end and s.end > start), key=lambda s: s.start
        )
        if not self._segments:
            raise ValueError(f"no clean segment covers frames [{start}, {self.end})")
        self._meta = [_load_meta(s) for s in self._segments]
        tb, rate = self._meta[0]["time_base"], self._meta[0]["frame_rate"]
        self.time_base = Fraction(int(tb[0]), int(tb[1]))
        self.frame_rate: Fraction | None = Fraction(int(rate[0]), int(rate[1])) if rate[0] else None
        film = [json.loads(str(m["film"])) for m in self._meta]
        self.film_stats: CleanStats | None = None
        for figures in film:
            if figures is not None:
                part = CleanStats(**figures)
                self.film_stats = part if self.film_stats is None else self.film_stats.merge(part)

    def __enter__(self) -> StoredFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __iter__(self) -> Iterator[VideoFrame]:
        for segment, meta in zip(self._segments, self._meta, strict=True):
            images = np.load(segment.frames, mmap_mode="r")
            grain = meta["grain"] if "grain" in meta and len(meta["grain"]) else None
            stamps = zip(meta["index"].tolist(), meta["pts"].tolist(), strict=True)
            for row, (index, pts) in enumerate(stamps):
                if not self.start <= index < self.end:
                    continue
                g = None if grain is None or not np.isfinite(grain[row]).all() else np.array(grain[row])
                yield VideoFrame(
                    index=index,
                    pts=pts,
                    time=pts * self.time_base,
                    image=np.array(images[index - segment.start]),
                    grain=g,
                    filled=_unpacked_fill(meta, row),
                )

    def native(self) -> Iterator[tuple[int, int, av.VideoFrame]]:
        raise ValueError("stored frames are RGB pictures: native frames are not available")


def _load_meta(segment: CleanSegment) -> dict[str, np.ndarray]:

    return load_arrays(segment.meta)


def read_frames(
    video: str | Path,
    cfg: Config,
    start: int,
    end: int | None,
    max_size: int | None = None,
    stored: Sequence[CleanSegment] = (),
) -> Frames | StoredFrames:
    """Frames [start, end) of `video` (RGB, reduced to `max_size` on the longer side when given),
    cleaned by `pipeline.film.clean.clean_frames` when a film stage is on (which decodes the few
    frames of context before and after the range that `pipeline.film.clean.context(cfg)` asks for).
    With `stored` (the clean steps' segments covering the range), the frames are read back from
    them at full size instead: decoded and cleaned once per run (`max_size` must then be None)."""
    if stored:
        if max_size is not None:
            raise ValueError("stored frames are full size: reduce them after reading")
        return StoredFrames(stored, start, end)
    return Frames(Path(video), cfg, start, end, max_size)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Pin the libraries a step uses to one thread for its duration (restored afterwards), so the
    number of workers, not library threading, sets the parallelism, and the search's floats are the
    same in every executor (a batched CPU search depends on torch's thread count in the last bits)."""
    import cv2

    saved_cv = cv2.getNumThreads()
    cv2.setNumThreads(1)
    torch = sys.modules.get("torch")
    saved_torch = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(saved_cv)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(saved_torch if saved_torch is not None else torch.get_num_threads())


def pin_torch() -> None:
    """One torch thread (called by the search steps after importing torch)."""
    import torch

    torch.set_num_threads(1)
