"""Decoding: frames with exact timestamps, in bounded memory, from any frame index.

A frame's index is the rank of its pts among all the stream's frame timestamps (found by demuxing
without decoding, `probe.frame_timestamps`). So the same index names the same picture whichever frame
a reader starts at, and a damaged frame leaves a gap instead of shifting every later index. To start
at frame `start` the reader seeks to a keyframe at or before it, decodes forward and drops what comes
before; if the seek lands past the target (a poor index), it seeks further back and tries again.

Deinterlacing (bwdif, one output frame per input frame, timestamps kept) happens here so that every
later stage sees progressive pictures. Inverse telecine (fieldmatch + decimate) changes the frame
count and rate: its output frames are numbered in output order and only a read from frame 0 is
supported.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from pipeline.errors import DecodeError, PipelineError
from pipeline.io.filters import build_graph, filter_chain
from pipeline.io.probe import (
    MATRICES,
    RANGES,
    check_input_path,
    detect_interlacing,
    file_version,
    frame_timestamps,
    main_video_stream,
    open_input,
    probe,
    stream_time_base,
)
from pipeline.types import ColorTags, VideoFrame, VideoInfo

if TYPE_CHECKING:  # PyAV's own stubs (av is imported where it is used: a heavy import)
    import av

log = logging.getLogger(__name__)

# Seek back this far first when a seek overshoots, doubling each retry.
_RESEEK_SECONDS = 2.0
# Inverse telecine (3:2 pulldown removed) keeps four frames in five: the decoded rate is the source's
# times this.
IVTC_RATE = Fraction(4, 5)
# Frames closer than this are decoded in one pass (`Video.pictures`); farther apart, the reader seeks
# (cheaper than decoding the frames between, about a GOP of x264's default keyframe interval).
_SEEK_GAP = 48
_GOP_GUESS = 250  # frames a seek may decode (x264's default keyframe interval)


@dataclass
class DecodeStats:
    """What a reader saw. `damaged` counts frames FFmpeg flagged corrupt or could not decode."""

    decoded: int = 0  # frames handed out
    damaged: int = 0  # corrupt frames handed out plus packets that failed to decode
    decode_errors: int = 0  # packets whose decoding raised (their frames are missing)
    expected: int = 0  # frames the index says lie in [start, end)
    missing: int = 0  # indexed frames in [start, end) never produced
    lost: int = 0  # frames absent from holes in a constant-rate timeline (damaged container data)
    truncated: int = 0  # frames the header promises after the last one present (read to the end only)

    @property
    def bad(self) -> int:
        return self.damaged + self.missing + self.lost + self.truncated

    @property
    def damaged_fraction(self) -> float:
        return self.bad / max(1, self.expected + self.lost + self.truncated)


def rgb_conversion(color: ColorTags, height: int) -> tuple[str, str]:
    """The YUV<->RGB matrix and range used for a stream (decode and encode use the same pair).

    Untagged streams follow the players' convention: BT.709 from 720 lines up, BT.601 below.
    """
    matrix = color.matrix
    if matrix in ("bt709",):
        cs = "ITU709"
    elif matrix in ("bt470bg", "smpte170m"):
        cs = "ITU601"
    elif matrix in ("bt2020nc", "bt2020c"):
        cs = "BT2020"
    elif matrix == "smpte240m":
        cs = "SMPTE240M"
    elif matrix == "fcc":
        cs = "FCC"
    else:
        cs = "ITU709" if height >= 720 else "ITU601"
    rng = "JPEG" if color.range == "pc" else "MPEG"
    return cs, rng


@functools.lru_cache(maxsize=16)
def _cached_index(path: str, mtime_ns: int, size: int) -> tuple[Fraction, tuple[int, ...]]:
    tb, pts = frame_timestamps(path)
    return tb, tuple(pts)


def frame_index(path: str | Path) -> tuple[Fraction, tuple[int, ...]]:
    """(time base, sorted frame pts) of the main video stream; cached per file version in-process."""
    path = check_input_path(path)
    mtime_ns, size = file_version(path)
    return _cached_index(str(path.resolve()), mtime_ns, size)


@functools.lru_cache(maxsize=16)
def _content_span(path: str) -> Fraction | None:
    """Seconds from the container's start to the end of its last packet, over every stream."""
    with open_input(path) as container:
        start = Fraction(container.start_time or 0, 1_000_000)
        end: Fraction | None = None
        try:
            for packet in container.demux():
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None or packet.time_base is None:
                    continue
                stop = (ts + (packet.duration or 0)) * Fraction(packet.time_base)
                end = stop if end is None or stop > end else end
        except Exception as exc:  # a damaged tail ends the content there
            log.debug("%s: demuxing stopped (%s)", path, exc)
        return None if end is None else end - start


def _reduced_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    if not max_size or max(width, height) <= max_size:
        return width, height
    s = max_size / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


@dataclass(frozen=True)
class DecodeOptions:
    """How a video's frames are decoded (the same for every reader of one opened video)."""

    deinterlace: str | bool = "auto"  # "auto" (as the frames are flagged), "on"/True, "off"/False
    inverse_telecine: bool = False  # fieldmatch + decimate: frames renumbered, read from frame 0 only
    max_damaged_fraction: float = 0.5  # more damaged or missing frames than this: DecodeError
    thread_count: int = 0  # the decoder's threads (0 = FFmpeg's choice)


class Video:
    """A video input opened once: its path checked, its frame index read (the time base and every
    frame's pts, `frame_index`), its decoding options fixed. It hands out readers of frame ranges
    (`reader`), each with its own decoder and position, and a few pictures at given indices
    (`pictures`); `info` is its probe, read when first asked for. Frames are numbered by this index,
    so every reader of the video agrees on which picture an index names."""

    def __init__(self, path: str | Path, options: DecodeOptions) -> None:
        self.path = check_input_path(path)
        self.options = options
        self.time_base, self.pts = frame_index(self.path)
        if not self.pts:
            raise DecodeError(self.path, "its video stream has no frames")

    @property
    def frames(self) -> int:
        """Frames in the stream's index (inverse telecine decodes fewer)."""
        return len(self.pts)

    @functools.cached_property
    def info(self) -> VideoInfo:
        return probe(self.path)

    def reader(self, start: int = 0, end: int | None = None, *, max_size: int | None = None) -> FrameReader:
        """Frames [start, end) as RGB VideoFrames (uint8, or uint16 for deeper sources); `max_size`
        caps the longer side (a reduced copy for detection). The reader is an iterator with `.stats`
        (DecodeStats), `.time_base` and `.frame_rate`; close it (or exhaust it) to release the file.
        Raises DecodeError when the range yields no frame or too many are damaged."""
        return FrameReader(self, start, end, max_size)

    def pictures(self, indices: Iterable[int]) -> dict[int, np.ndarray]:
        """The frames at `indices` (RGB uint8, as decoded, full size). Nearby frames are read in one
        pass, far ones after a seek; when seeking would decode more than one pass over the whole span
        (many frames spread over a long film), one pass it is. Only the frames asked for are
        converted to RGB. Frames the file does not have, or that fail to decode, are left out
        (logged)."""
        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            return {}
        runs: list[list[int]] = [[wanted[0]]]
        for i in wanted[1:]:
            if i - runs[-1][-1] <= _SEEK_GAP:
                runs[-1].append(i)
            else:
                runs.append([i])
        ivtc = self.options.inverse_telecine
        if ivtc or len(runs) * _GOP_GUESS > wanted[-1] - wanted[0]:
            runs = [wanted]  # inverse telecine numbers frames as it decodes: it reads from frame 0 anyway
        out: dict[int, np.ndarray] = {}
        for run in runs:
            keep = set(run)
            try:
                with self.reader(0 if ivtc else run[0], run[-1] + 1) as reader:
                    for index, _, frame in reader.native_frames():
                        if index in keep:
                            out[index] = frame.to_ndarray(format="rgb24")
            except PipelineError as exc:
                log.warning("frames %d-%d of %s not decoded (%s)", run[0], run[-1], self.path, exc)
        return out


def open_video(
    path: str | Path,
    *,
    deinterlace: str | bool = "auto",
    inverse_telecine: bool = False,
    max_damaged_fraction: float = 0.5,
    thread_count: int = 0,
) -> Video:
    """`path` opened for decoding (`Video`): checked and indexed once, then read by its readers.
    Raises InputError for a path that is not a readable file, DecodeError for a video stream with
    no frames."""
    return Video(path, DecodeOptions(deinterlace, inverse_telecine, max_damaged_fraction, thread_count))


class FrameReader(Iterator[VideoFrame]):
    """Iterator over VideoFrames of [start, end) of an opened `Video` (made by `Video.reader`);
    `stats` and `time_base` are readable any time."""

    def __init__(self, video: Video, start: int, end: int | None, max_size: int | None) -> None:
        import av

        options = video.options
        inverse_telecine = options.inverse_telecine
        self.path = video.path
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad frame range [{start}, {end})")
        if inverse_telecine and start:
            raise ValueError("inverse telecine renumbers frames: read from frame 0")
        self.time_base, self._pts = video.time_base, video.pts
        n = len(self._pts)
        self.start = min(start, n)
        self.end = n if end is None else min(end, n)
        self.max_size = max_size
        self.max_damaged_fraction = options.max_damaged_fraction
        self.stats = DecodeStats(expected=max(0, self.end - self.start))

        self._container = open_input(self.path)
        self._stream = main_video_stream(self._container, self.path)
        cc = self._stream.codec_context
        cc.thread_type = "AUTO"
        cc.thread_count = options.thread_count
        self.color = ColorTags(
            matrix=MATRICES.get(int(cc.colorspace)) if cc.colorspace is not None else None,
            range=RANGES.get(int(cc.color_range)) if cc.color_range is not None else None,
        )
        self._declared_frames = int(self._stream.frames or 0)  # the header's count (MP4/MOV), 0 = none
        self._declared_duration: Fraction | None = (
            Fraction(self._container.duration, 1_000_000) if self._container.duration else None
        )
        self.frame_rate: Fraction | None = (
            Fraction(self._stream.average_rate) if self._stream.average_rate else None
        )
        self._source_rate = self.frame_rate
        if inverse_telecine and self.frame_rate:
            self.frame_rate = self.frame_rate * IVTC_RATE  # decimation keeps four frames in five
        depth = max((c.bits for c in av.VideoFormat(cc.pix_fmt).components), default=8) if cc.pix_fmt else 8
        self.rgb_format = "rgb48le" if depth > 8 else "rgb24"
        self.dtype = np.uint16 if depth > 8 else np.uint8

        self._deinterlace = options.deinterlace
        self._field_order = int(cc.field_order or 0)
        self._filters: list[tuple[str, str]] | None = None  # decided at the first frame
        self._ivtc = inverse_telecine
        self._graph: av.filter.Graph | None = None

        self._next_ivtc_index = 0
        self._seen: set[int] = set()
        self._gen: Generator[VideoFrame, None, None] = self._frames()

    # -- iteration ------------------------------------------------------------------------
    def __iter__(self) -> FrameReader:
        return self

    def __next__(self) -> VideoFrame:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()
        self._container.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def native_frames(self) -> Generator[tuple[int, int, av.VideoFrame], None, None]:
        """(index, pts, PyAV frame) without the RGB conversion, for re-encoding frames untouched.

        Use instead of iterating the reader (not both). The frame's pts is in the decoder's time base,
        which filters may change: use the `pts` given, in `time_base`.
        """
        return self._frames(convert=False)

    def _frames(self, convert: bool = True) -> Generator[Any, None, None]:
        if self.start >= self.end:
            self._container.close()
            return
        try:
            for index, pts, frame in self._decode_range():
                if frame.is_corrupt:
                    self.stats.damaged += 1
                self.stats.decoded += 1
                yield self._to_video_frame(frame, index, pts) if convert else (index, pts, frame)
        finally:
            self._container.close()
        if self._ivtc:
            self.stats.expected = self.stats.decoded  # decimation drops frames by design
        self.stats.missing = self.stats.expected - self.stats.decoded
        if not self._ivtc:
            self.stats.lost = self._lost_frames()
            if self.end == len(self._pts):
                self.stats.truncated = self._truncated_frames()
        if self.stats.decoded == 0:
            raise DecodeError(self.path, f"no frame in [{self.start}, {self.end}) could be decoded")
        bad = self.stats.bad
        total = self.stats.expected + self.stats.lost + self.stats.truncated
        # Damage inside the range is judged against the range; frames cut off the end against the
        # whole file (a reader of the last segment alone must not call a 10% truncation 90%).
        st = self.stats
        in_range = (st.damaged + st.missing + st.lost) / max(1, st.expected + st.lost)
        cut_off = st.truncated / max(1, len(self._pts) + st.truncated)
        if max(in_range, cut_off) > self.max_damaged_fraction:
            if cut_off > in_range:
                bad, total = st.truncated, len(self._pts) + st.truncated
            cut = " (the file is truncated)" if self.stats.truncated else ""
            raise DecodeError(
                self.path,
                f"{bad} of {total} frames are damaged or missing{cut}, more than "
                f"{self.max_damaged_fraction:.0%}: the file is unusable",
            )
        if bad:
            log.warning(
                "%s: %d damaged, %d missing, %d lost and %d truncated frame(s) in [%d, %d)",
                self.path,
                self.stats.damaged,
                self.stats.missing,
                self.stats.lost,
                self.stats.truncated,
                self.start,
                self.end,
            )

    def _cfr_period(self) -> int | None:
        """The frame period in ticks when (nearly) every frame lasts the same; None for VFR."""
        deltas = sorted(b - a for a, b in itertools.pairwise(self._pts))
        if not deltas:
            return None
        period = deltas[len(deltas) // 2]
        steady = sum(abs(d - period) <= 1 for d in deltas)
        return period if period > 0 and steady >= 0.8 * len(deltas) else None

    def _lost_frames(self) -> int:
        """Frames missing from holes in [start, end) of a constant-rate stream (container damage)."""
        period = self._cfr_period()
        if period is None:
            return 0
        pts = self._pts[self.start : self.end]
        return sum(
            max(0, round((b - a) / period) - 1) for a, b in itertools.pairwise(pts) if b - a > 1.5 * period
        )

    def _truncated_frames(self) -> int:
        """Frames the container's declared duration promises beyond the last frame present."""
        declared = self._declared_duration
        if declared is None or not self._pts:
            return self._declared_frames_beyond()
        span = (self._pts[-1] - self._pts[0]) * self.time_base
        if len(self._pts) >= 2:
            ticks = self._cfr_period() or Fraction(self._pts[-1] - self._pts[0], len(self._pts) - 1)
            period = ticks * self.time_base
        elif self._source_rate:
            period = 1 / self._source_rate  # one frame left: the declared rate gives its period
        else:
            return self._declared_frames_beyond()
        if period <= 0:
            return self._declared_frames_beyond()
        gap = declared - span - period
        if gap <= 2 * period:
            return 0
        # The declared duration covers every stream: audio or subtitles may simply outlast the
        # picture. Truncation cuts them all, so look at where the last packet of any stream ends.
        content = _content_span(str(self.path))
        if content is not None and declared - content <= 2 * period + Fraction(1, 10):
            return 0
        return max(0, int(gap / period), self._declared_frames_beyond())

    def _declared_frames_beyond(self) -> int:
        """Frames the stream header counts (MP4/MOV store it) beyond those present."""
        declared = self._declared_frames
        return max(0, declared - len(self._pts)) if declared else 0

    def _decode_range(self) -> Iterator[tuple[int, int, av.VideoFrame]]:
        target = self._pts[self.start]
        last = self._pts[self.end - 1]
        back = Fraction(0)
        from_start = self.start == 0
        while True:
            if not from_start:
                self._seek(target - int(back / self.time_base))
            overshoot = False
            first = True
            for frame in self._decoded_frames():
                pts = self._frame_pts(frame)
                if first and not from_start and not self._ivtc and pts > target:
                    overshoot = True
                    break
                first = False
                if pts < target:
                    continue
                if pts > last and not self._ivtc:
                    return
                index = self._index_of(frame, pts)
                if index is not None:
                    yield index, pts, frame
                    if self._ivtc and index >= self.end - 1:
                        return
            if not overshoot:
                return
            # The seek landed after the target (a sparse or missing index, open GOPs): look further
            # back; once that means the start, read the file from its first byte instead.
            self._graph = None
            self._seen.clear()
            if back > 0 and target - back / self.time_base <= self._pts[0]:
                self._rewind()
                from_start = True
            back = max(Fraction(_RESEEK_SECONDS), back * 2)

    def _rewind(self) -> None:
        """Reopen the file: decoding restarts at its very beginning, with no seek involved."""
        self._container.close()
        self._container = open_input(self.path)
        self._stream = main_video_stream(self._container, self.path)
        self._stream.codec_context.thread_type = "AUTO"

    def _seek(self, pts: int) -> None:
        import av

        try:
            self._container.seek(max(pts, self._pts[0]), stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise DecodeError(self.path, f"cannot seek to pts {pts} ({exc})") from exc

    def _frame_pts(self, frame: av.VideoFrame) -> int:
        """The frame's pts in the stream's time base (bwdif doubles its output time base)."""
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            return self._pts[0]
        tb = Fraction(frame.time_base) if frame.time_base else self.time_base
        if self._ivtc or tb == self.time_base:
            return int(pts)
        return round(pts * tb / self.time_base)

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Decoded (and filtered) frames; packets that fail to decode are counted, not fatal."""
        import av

        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:
                self.stats.decode_errors += 1
                self.stats.damaged += 1
                log.debug("%s: undecodable packet at pts %s: %s", self.path, packet.pts, exc)
                continue
            except av.error.FFmpegError as exc:
                raise DecodeError(self.path, f"decoding failed: {exc}") from exc
            for frame in frames:
                yield from self._filter(frame)
        yield from self._filter(None)

    def _filter(self, frame: av.VideoFrame | None) -> Iterator[av.VideoFrame]:
        import av

        if self._filters is None and frame is not None:
            flagged = self._field_order >= 2 or bool(frame.interlaced_frame)
            seen = None
            if not flagged and self._deinterlace in ("on", True) and not self._ivtc:
                seen = detect_interlacing(self.path)  # which field comes first, when frames don't say
            self._filters = filter_chain(self._deinterlace, self._ivtc, flagged, seen)
        if not self._filters:
            if frame is not None:
                yield frame
            return
        if self._graph is None:
            if frame is None:
                return
            sar = self._stream.codec_context.sample_aspect_ratio or Fraction(1)
            rate = self._source_rate or Fraction(25)
            tb = stream_time_base(self._stream, self.path)
            self._graph = build_graph(frame, tb, sar, rate, self._filters)
        self._graph.push(frame)
        while True:
            try:
                yield cast("av.VideoFrame", self._graph.pull())  # a video graph: video frames

            except (av.error.BlockingIOError, av.error.EOFError):
                return

    def _index_of(self, frame: av.VideoFrame, pts: int) -> int | None:
        """The frame's index (its pts's rank in the index), or None for a frame to drop."""
        if self._ivtc:
            index = self._next_ivtc_index
            self._next_ivtc_index += 1
            if frame.time_base is not None and Fraction(frame.time_base) != self.time_base:
                self.time_base = Fraction(frame.time_base)
            return index
        index = bisect.bisect_left(self._pts, pts)
        if index >= len(self._pts) or self._pts[index] != pts or index in self._seen:
            # A timestamp the index does not know (or a repeat): damaged stream, drop it.
            self.stats.damaged += 1
            return None
        self._seen.add(index)
        return index

    def _to_video_frame(self, frame: av.VideoFrame, index: int, pts: int) -> VideoFrame:
        width, height = _reduced_size(frame.width, frame.height, self.max_size)
        cs, rng = rgb_conversion(self._frame_color(frame), frame.height)
        image = frame.to_ndarray(
            format=self.rgb_format,
            width=width,
            height=height,
            src_colorspace=cs,
            src_color_range=rng,
            dst_color_range="JPEG",
            interpolation="AREA" if (width, height) != (frame.width, frame.height) else "BICUBIC",
        )  # [H, W, 3] uint8 or uint16
        return VideoFrame(index=index, pts=pts, time=pts * self.time_base, image=image)

    def _frame_color(self, frame: av.VideoFrame) -> ColorTags:
        return ColorTags(
            matrix=MATRICES.get(int(frame.colorspace)) or self.color.matrix,
            range=RANGES.get(int(frame.color_range)) or self.color.range,
        )
