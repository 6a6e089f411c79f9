"""`probe`: what a media file holds, exactly — the contract every later stage reads.

Cheap by default (the container's header plus the first decoded frames, which carry rotation,
interlacing and colour tags reliably); `exact=True` also demuxes every video packet (no decoding) to
count frames and list every frame's timestamp.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pipeline.errors import VideoOpenError
from pipeline.io.sequence import file_version as sequence_version
from pipeline.io.sequence import is_sequence, open_sequence, resolve_sequence
from pipeline.types import AudioStreamInfo, ColorTags, SubtitleStreamInfo, VideoInfo, VideoStreamInfo

if TYPE_CHECKING:  # PyAV's own stubs (av is imported where it is used: a heavy import)
    import av
    from av.container import InputContainer
    from av.video.codeccontext import VideoCodecContext
    from av.video.stream import VideoStream

log = logging.getLogger(__name__)

# FFmpeg's enum values (libavutil/pixfmt.h) -> the names ffmpeg's command line takes.
PRIMARIES = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
    10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "jedec-p22",
}  # fmt: skip
TRANSFERS = {
    1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
    10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10",
    15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67",
}  # fmt: skip
MATRICES = {
    0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
    9: "bt2020nc", 10: "bt2020c", 14: "ictcp",
}  # fmt: skip
RANGES = {1: "tv", 2: "pc"}
FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}

# Frames decoded by a cheap probe to read per-frame flags (interlacing, rotation, colour).
_PROBE_FRAMES = 8


def check_input_path(path: str | Path) -> Path:
    """Fail early, in plain words, for the inputs FFmpeg would describe badly."""

    path = Path(path)
    if is_sequence(path):
        resolve_sequence(path)  # names a missing or empty frame file
        return path
    if not path.exists():
        raise VideoOpenError(path, "no such file")
    if path.is_dir():
        raise VideoOpenError(path, "is a directory, neither a video file nor an image sequence")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise VideoOpenError(path, f"cannot be read ({exc.strerror})") from exc
    if size == 0:
        raise VideoOpenError(path, "is an empty file (0 bytes)")
    return path


def open_input(path: str | Path) -> InputContainer:
    """Open a container with PyAV, turning its errors into VideoOpenError."""
    import av

    path = check_input_path(path)
    if is_sequence(path):
        return open_sequence(path)
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise VideoOpenError(path, f"not a media file FFmpeg can read ({exc.strerror or exc})") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise VideoOpenError(path, f"cannot be opened ({exc})") from exc


def file_version(path: str | Path) -> tuple[int, int]:
    """(mtime_ns, size) of a file, or of a whole image sequence: a cache key for per-file results."""

    path = Path(path)
    if is_sequence(path):
        return sequence_version(path)
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def main_video_stream(container: InputContainer, path: Path) -> VideoStream:
    """The first real video stream (cover art and thumbnails are skipped)."""
    import av

    for stream in container.streams.video:
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        if stream.codec_context is None or not stream.codec_context.width:
            continue
        return stream
    kinds = sorted({s.type for s in container.streams})
    has = f" (it has only {', '.join(kinds)} streams)" if kinds else ""
    raise VideoOpenError(path, f"has no video stream{has}")


def stream_time_base(stream: VideoStream, path: Path) -> Fraction:
    """The stream's time base (seconds per pts tick); a stream without one is not a usable video."""
    if stream.time_base is None:
        raise VideoOpenError(path, "its video stream has no time base")
    return Fraction(stream.time_base)


def frame_timestamps(path: str | Path) -> tuple[Fraction, list[int]]:
    """Every frame's pts of the main video stream, sorted (presentation order), by demuxing only.

    A frame's index everywhere in the pipeline is its position in this list, so the same index names
    the same picture whichever frame a reader starts at.
    """
    path = Path(path)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None:
                    pts.append(ts)
        except Exception as exc:  # a damaged tail: keep what was read
            log.warning("%s: demuxing stopped early (%s); %d frames indexed", path, exc, len(pts))
        pts.sort()
        return stream_time_base(stream, path), pts


def _fraction(value: Fraction | None) -> Fraction | None:
    if value is None:
        return None
    f = Fraction(value)
    return f if f > 0 else None


def _bit_depth(pix_fmt: str | None) -> int:
    import av

    if not pix_fmt:
        return 8
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        return 8
    return max((c.bits for c in fmt.components), default=8)


def variable_rate(pts: Sequence[int]) -> bool:
    """Frame durations that differ by more than one tick (a 1 ms container rounds CFR to 33/34 ms)."""
    deltas = [b - a for a, b in itertools.pairwise(pts)]
    return bool(deltas) and max(deltas) - min(deltas) > 1


def _first_frames(
    container: InputContainer, stream: VideoStream, path: Path
) -> tuple[av.VideoFrame, bool, list[int]]:
    """The first decodable frame, whether any of the first few is flagged interlaced, and their pts
    (per-frame flags live on decoded frames)."""
    import av

    interlaced = False
    first_frame = None
    early_pts: list[int] = []
    try:
        for i, frame in enumerate(container.decode(stream)):
            first_frame = first_frame or frame
            interlaced = interlaced or bool(frame.interlaced_frame)
            if frame.pts is not None:
                early_pts.append(frame.pts)
            if i + 1 >= _PROBE_FRAMES:
                break
    except av.error.FFmpegError as exc:
        log.debug("%s: decoding the first frames failed: %s", path, exc)
    if first_frame is None:
        raise VideoOpenError(path, "its video stream has no decodable frame (damaged or truncated file)")
    return first_frame, interlaced, early_pts


def _tag(table: dict[int, str], frame_value: int | None, stream_value: int | None) -> str | None:

    for v in (frame_value, stream_value):
        if v is not None and int(v) in table:
            return table[int(v)]
    return None


def _color(frame: av.VideoFrame, cc: VideoCodecContext) -> ColorTags:
    return ColorTags(
        primaries=_tag(PRIMARIES, frame.color_primaries, cc.color_primaries),
        transfer=_tag(TRANSFERS, frame.color_trc, cc.color_trc),
        matrix=_tag(MATRICES, frame.colorspace, cc.colorspace),
        range=_tag(RANGES, frame.color_range, cc.color_range),
    )


def _frame_count(
    path: Path,
    container: InputContainer,
    stream: VideoStream,
    frame_rate: Fraction | None,
    span: Fraction | None,
    early_pts: list[int],
    exact: bool,
) -> tuple[int | None, bool, bool, tuple[int, ...] | None]:
    """(frame count, whether the file states it, variable rate, every frame's pts when `exact`)."""
    if exact:
        _, all_pts = frame_timestamps(path)
        return len(all_pts), True, variable_rate(all_pts), tuple(all_pts)
    frame_count = stream.frames or None
    if container.format.name == "image2":
        frame_count = resolve_sequence(path).count  # one file per frame, none missing
    stated = frame_count is not None
    if frame_count is None and span and frame_rate:
        frame_count = round(span * frame_rate)
    early_pts.sort()
    base = _fraction(stream.base_rate)
    variable = variable_rate(early_pts) or (
        base is not None and frame_rate is not None and abs(frame_rate - base) > frame_rate / 100
    )
    return frame_count, stated, variable, None


def _other_streams(
    container: InputContainer,
) -> tuple[tuple[AudioStreamInfo, ...], tuple[SubtitleStreamInfo, ...]]:
    audio = tuple(
        AudioStreamInfo(
            index=s.index,
            codec=s.codec_context.name,
            sample_rate=s.codec_context.sample_rate,
            channels=s.codec_context.channels,
            channel_layout=getattr(s.codec_context.layout, "name", None),
            time_base=Fraction(cast(Fraction, s.time_base)),  # FFmpeg gives every stream one
            language=s.metadata.get("language"),
        )
        for s in container.streams.audio
    )
    subtitles = tuple(
        SubtitleStreamInfo(index=s.index, codec=s.codec_context.name, language=s.metadata.get("language"))
        for s in container.streams.subtitles
    )
    return audio, subtitles


def probe(path: str | Path, *, exact: bool = False) -> VideoInfo:
    """Describe `path`; raise VideoOpenError (naming the file) when it holds no usable video."""
    path = check_input_path(path)
    with open_input(path) as container:
        stream = main_video_stream(container, path)
        cc = stream.codec_context
        time_base = stream_time_base(stream, path)

        first_frame, interlaced, early_pts = _first_frames(container, stream, path)
        rotation = int(-round(first_frame.rotation)) % 360  # PyAV: counter-clockwise degrees
        field_order = FIELD_ORDERS.get(int(cc.field_order or 0), "unknown")
        if interlaced and field_order in ("unknown", "progressive"):
            field_order = "tt" if first_frame.interlaced_frame and _top_field_first(first_frame) else "bb"
        interlaced = interlaced or field_order in ("tt", "bb", "tb", "bt")

        frame_rate = _fraction(stream.average_rate) or _fraction(stream.guessed_rate)
        frame_rate = frame_rate or _fraction(stream.base_rate)
        sar = _fraction(stream.sample_aspect_ratio) or _fraction(cc.sample_aspect_ratio) or Fraction(1)
        duration = Fraction(stream.duration) * time_base if stream.duration else None
        container_duration = Fraction(container.duration, 1_000_000) if container.duration else None
        frame_count, stated, variable, frame_pts = _frame_count(
            path, container, stream, frame_rate, duration or container_duration, early_pts, exact
        )
        pix_fmt = cc.pix_fmt or first_frame.format.name
        video = VideoStreamInfo(
            index=stream.index,
            codec=cc.name,
            width=cc.width,
            height=cc.height,
            pix_fmt=pix_fmt,
            bit_depth=_bit_depth(pix_fmt),
            time_base=time_base,
            frame_rate=frame_rate,
            variable_frame_rate=variable,
            frame_count=frame_count,
            duration=duration,
            start_pts=stream.start_time,
            sample_aspect_ratio=sar,
            rotation=rotation,
            field_order=field_order,
            interlaced=interlaced,
            color=_color(first_frame, cc),
            frame_count_stated=stated,
        )
        audio, subtitles = _other_streams(container)
        return VideoInfo(
            path=path,
            container=container.format.name,
            duration=container_duration,
            video=video,
            audio=audio,
            subtitles=subtitles,
            frame_pts=frame_pts,
            metadata=dict(container.metadata),
        )


# Frames the idet filter looks at, and how clear its verdict must be.
_IDET_FRAMES = 24


def detect_interlacing(path: str | Path) -> str | None:
    """ "tt" or "bb" when FFmpeg's idet filter finds most frames combed, None for progressive pictures.

    Only the first frames are examined (decoding, not the whole file); cached per file version.
    """
    path = Path(path)
    mtime_ns, size = file_version(path)
    return _detect_interlacing(str(path.resolve()), mtime_ns, size)


@functools.lru_cache(maxsize=32)
def _detect_interlacing(path: str, mtime_ns: int, size: int) -> str | None:
    import av

    counts: dict[str, int] = {}
    with open_input(path) as container:
        stream = main_video_stream(container, Path(path))
        graph = None
        n = 0
        try:
            for frame in container.decode(stream):
                if graph is None:
                    graph = av.filter.Graph()
                    src = graph.add_buffer(template=stream)
                    idet = graph.add("idet")
                    sink = graph.add("buffersink")
                    src.link_to(idet)
                    idet.link_to(sink)
                    graph.configure()
                graph.push(frame)
                while True:
                    try:
                        out = graph.pull()
                    except (av.error.BlockingIOError, av.error.EOFError):
                        break
                    meta = out.metadata
                    for key in ("tff", "bff", "progressive"):
                        value = meta.get(f"lavfi.idet.multiple.{key}")
                        if value is not None:
                            counts[key] = int(float(value))
                n += 1
                if n >= _IDET_FRAMES:
                    break
        except av.error.FFmpegError as exc:
            log.debug("%s: interlace detection stopped: %s", path, exc)
    combed = counts.get("tff", 0) + counts.get("bff", 0)
    if combed < max(4, n // 4) or combed < 2 * counts.get("progressive", 0):
        return None
    return "tt" if counts.get("tff", 0) >= counts.get("bff", 0) else "bb"


def _top_field_first(frame: av.VideoFrame) -> bool:

    return bool(getattr(frame, "top_field_first", True))
