"""Frames for the steps: the one place a step decodes pixels, and one thread per task.

`read_frames(video, info, cfg, start, end, max_size)` is the only way a step reads frames (scan,
crops and compose all go through it), so a whole-frame treatment before everything else (film
cleaning, `pipeline.film.clean`) plugs in here once. It is re-exported as
`pipeline.run.steps.read_frames`, the name the integration contract uses.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.types import VideoFrame, VideoInfo

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
    from pipeline.film.clean import enabled

    return enabled(cfg)


class Frames:
    """Frames [start, end) as VideoFrames, as a context manager; `time_base`, `frame_rate` and
    `stats` as the decoder's (`pipeline.io.decode.FrameReader`). `native()` gives the decoded PyAV
    frames untouched (only when nothing changes the pictures: no film cleaning)."""

    def __init__(self, video: Path, cfg: Config, start: int, end: int | None, max_size: int | None) -> None:
        from pipeline.io.decode import FrameReader
        from pipeline.io.sequence import set_sequence_rate

        set_sequence_rate(cfg.io.sequence_rate)  # image-sequence inputs carry no rate (any worker)
        self.start = start
        self._cfg = cfg
        self._clean = film_cleaning(cfg)
        self.film_stats: Any = None  # film: the CleanStats of the frames handed out (when cleaning is on)
        before = after = 0
        if self._clean:
            from pipeline.film.clean import context

            before, after = context(cfg)
        # Inverse telecine numbers frames as it decodes: it reads from frame 0 and skips to `start`.
        first = 0 if inverse_telecine(cfg) else max(0, start - before)
        last = None if end is None else end + after
        self._reader = FrameReader(
            video,
            start=first,
            end=last,
            max_size=max_size,
            deinterlace=cfg.io.deinterlace,
            inverse_telecine=inverse_telecine(cfg),
            max_damaged_fraction=cfg.io.max_damaged_fraction,
            thread_count=1,  # one thread per task: the worker count sets the parallelism
        )
        self.end: int = end if end is not None else self._reader.end

    @property
    def time_base(self) -> Fraction:
        return Fraction(self._reader.time_base)

    @property
    def frame_rate(self) -> Fraction | None:
        return self._reader.frame_rate

    @property
    def stats(self) -> Any:
        return self._reader.stats

    def __enter__(self) -> Frames:
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.close()

    def __iter__(self) -> Iterator[VideoFrame]:
        frames: Iterator[VideoFrame] = self._counted(self._reader)
        if self._clean:
            from pipeline.film.clean import clean_frames

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

    def native(self) -> Iterator[tuple[int, int, Any]]:
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


def read_frames(
    video: str | Path,
    info: VideoInfo | None,
    cfg: Config,
    start: int,
    end: int | None,
    max_size: int | None = None,
) -> Frames:
    """Frames [start, end) of `video` (RGB, reduced to `max_size` on the longer side when given),
    cleaned by `pipeline.film.clean.clean_frames` when a film stage is on (which decodes the few
    frames of context before and after the range that `pipeline.film.clean.context(cfg)` asks for).
    `info` is the probed input (kept in the signature for cleaning steps that need the source's
    tags; None is accepted)."""
    del info  # part of the contract; nothing here needs it yet
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
