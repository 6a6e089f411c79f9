"""Joining encoded video parts and the source's audio and subtitles into the output file.

Everything here is a stream copy. Two steps:
1. `join_parts` (PyAV): the video packets of every part, in order, into one video-only MOV. Each part
   starts at a keyframe and carries the source's absolute timestamps, so joining is concatenation;
   ffmpeg's concat demuxer is not used because it re-bases each file on the previous one's duration,
   which is not exact for variable frame rates. This step also writes what the system ffmpeg (5.1)
   cannot set itself: the display rotation, the colour description and the declared frame rate.
2. `mux` (ffmpeg through ffmpeg-python, `-c copy -copyts`): that video plus every audio stream and
   every subtitle stream the container can hold, with container metadata and chapters, from the
   source, byte for byte at their original timestamps, so sync is exactly the source's.

Matroska cannot store negative timestamps: when a source has them (AAC priming in MP4), ffmpeg
shifts every stream by the same amount, which keeps sync but moves the whole programme a few ms.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import DiskFullError, EncodeError, OutputError, disk_full_message, is_disk_full
from pipeline.io.presets import CONTAINER_FORMATS, is_rgb_format, mov_timescale
from pipeline.io.probe import MATRICES, PRIMARIES, RANGES, TRANSFERS
from pipeline.io.sequence import existing_outputs, is_sequence, is_sequence_output
from pipeline.io.verify import count_video_packets, verify_video
from pipeline.io.writer import StderrDrain, ffmpeg_error
from pipeline.types import ColorTags

if TYPE_CHECKING:
    import av
    from av.container import InputContainer
    from av.video.stream import VideoStream

log = logging.getLogger(__name__)

_NO_TAG = "\0\0\0\0"  # codec_tag 0: the muxer picks its own

# Codecs libavformat lists for a container but refuses to write there.
_REFUSED = {"mov": {"flac", "opus", "vorbis"}, "mp4": {"vorbis"}}
# ... and codec families it refuses (this ffmpeg writes no PCM into MP4).
_REFUSED_PREFIXES = {"mp4": ("pcm_",)}
# Text subtitles MP4/MOV hold only as mov_text: converted (the text is kept; styling may not be).
_TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}


def _time_base(stream: VideoStream) -> Fraction:
    if stream.time_base is None:
        raise EncodeError(Path(stream.container.name), "video stream has no time base")
    return Fraction(stream.time_base)


def temporary_path(output: Path, tag: str = "partial") -> Path:
    """A hidden name beside `output` (same directory, so the final rename is atomic)."""
    return output.with_name(f".{output.stem}.{tag}{output.suffix}")


def check_output(output: Path, *, overwrite: bool) -> None:
    """Refuse to clobber an existing file without --overwrite; make sure the directory exists and
    can be written (checked by creating and removing a hidden file there)."""

    if output.is_dir():
        raise OutputError(output, "is a directory")
    if output.exists() and not overwrite:
        raise OutputError(output, "already exists (use --overwrite to replace it)")
    if not output.parent.is_dir():
        raise OutputError(output, f"directory {output.parent} does not exist")
    _check_writable(output)
    if is_sequence_output(output):
        found = existing_outputs(output)
        if found and not overwrite:
            raise OutputError(
                output,
                f"{len(found)} file(s) of this sequence exist already ({found[0].name}, ...); "
                "use --overwrite to replace them",
            )
        return
    if output.suffix.lower() not in CONTAINER_FORMATS:
        raise OutputError(
            output, f"unsupported container {output.suffix!r}; use one of {', '.join(CONTAINER_FORMATS)}"
        )


def _check_writable(output: Path) -> None:
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=f".{output.name}.tmp-check-", dir=output.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(output, disk_full_message(output.parent)) from exc
        raise OutputError(output, f"cannot write in {output.parent} ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(name)


def _enum_tables() -> dict[str, dict[str, int]]:

    pairs = (("primaries", PRIMARIES), ("transfer", TRANSFERS), ("matrix", MATRICES), ("range", RANGES))
    return {key: {v: k for k, v in table.items()} for key, table in pairs}


def join_parts(
    parts: Sequence[Path],
    output: Path,
    *,
    color: ColorTags | None = None,
    rotation: int = 0,
    frame_rate: Fraction | None = None,
    codec_tag: str | None = None,
) -> Path:
    """Concatenate video-only MOV parts (stream copy) into one MOV, keeping every timestamp."""
    import av

    if not parts:
        raise EncodeError(output, "no video parts to join")
    with av.open(str(parts[0])) as first:
        codec = first.streams.video[0].codec_context.name
        timescale = mov_timescale(_time_base(first.streams.video[0]))
    # MOV takes any time base exactly; PyAV's libavformat writes FFV1 only in its MP4 flavour.
    fmt = "mp4" if codec == "ffv1" else "mov"
    try:
        with av.open(str(output), "w", format=fmt, options={"movie_timescale": str(timescale)}) as out:
            with av.open(str(parts[0])) as first:
                vin = first.streams.video[0]
                vout = out.add_stream_from_template(vin)
                vout.time_base = vin.time_base
            cc = vout.codec_context
            if color is not None:
                tables = _enum_tables()
                for attr, key, value in (
                    ("color_primaries", "primaries", color.primaries),
                    ("color_trc", "transfer", color.transfer),
                    ("colorspace", "matrix", color.matrix),
                    ("color_range", "range", color.range),
                ):
                    if value in tables[key]:
                        setattr(cc, attr, tables[key][value])
            if rotation % 360:
                vout.set_display_rotation(-(rotation % 360))  # PyAV takes counter-clockwise degrees
            if frame_rate:
                cc.framerate = frame_rate
            if codec_tag:
                cc.codec_tag = codec_tag
            for packet in joined_packets(parts):
                packet.stream = vout
                out.mux(packet)
    except EncodeError:
        output.unlink(missing_ok=True)
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        output.unlink(missing_ok=True)
        raise EncodeError(output, f"joining the encoded parts failed: {exc}") from exc
    return output


def joined_packets(parts: Sequence[Path]) -> Iterator[av.Packet]:
    """The video packets of `parts` in order (same time base), each part's timestamps kept."""
    import av

    last_dts: int | None = None
    time_base: Fraction | None = None
    for part in parts:
        with av.open(str(part)) as c:
            stream = c.streams.video[0]
            if time_base is None:
                time_base = _time_base(stream)
            elif _time_base(stream) != time_base:
                raise EncodeError(
                    part, f"time base {stream.time_base} differs from the first part's {time_base}"
                )
            for packet in c.demux(stream):
                if packet.size == 0 and packet.dts is None:
                    continue  # the demuxer's end-of-stream marker
                # A part may start with a dts at or below the previous part's last (B-frame delay).
                # Each part starts at a keyframe, so only the order matters: nudge such a dts up
                # by one tick, never past its pts.
                if last_dts is not None and packet.dts is not None and packet.dts <= last_dts:
                    packet.dts = last_dts + 1
                    if packet.pts is not None and packet.dts > packet.pts:
                        raise EncodeError(part, "parts overlap in time: cannot join them")
                if packet.dts is not None:
                    last_dts = packet.dts
                yield packet


def _audio_fix(codec: str, index: int, suffix: str) -> str:
    """ "PCM audio cannot go in .mp4: use .mov or .mkv" — naming the containers that do take it."""
    import av

    takers = []
    for ext, fmt in ((".mov", "mov"), (".mkv", "matroska")):
        if ext == suffix:
            continue
        with av.open(os.devnull, "w", format=fmt) as out:
            ok = codec in out.supported_codecs and codec not in _REFUSED.get(fmt, set())
        if ok:
            takers.append(ext)
    what = "PCM" if codec.startswith("pcm_") else codec
    fix = f"use {' or '.join(takers)}" if takers else "use .mkv"
    return f"{what} audio (stream #{index}, {codec}) cannot go in {suffix} without re-encoding: {fix}"


def plan_streams(source: Path, output: Path, fmt: str) -> tuple[list[int], dict[str, str]]:
    """Which source streams go into the output (by index), and codec options for converted ones.

    Raises EncodeError when an audio stream cannot go into the container as it is: call it before a
    long encode to fail early. The source's start timecode, if any, is carried as an option too.
    """
    import av

    if is_sequence(source):
        return [], {}  # an image sequence has no sound, subtitles or tags to carry
    with (
        av.open(str(source), metadata_errors="replace") as src,
        av.open(os.devnull, "w", format=fmt) as probe_out,
    ):
        supported = set(probe_out.supported_codecs) - _REFUSED.get(fmt, set())
        maps: list[int] = []
        codecs: dict[str, str] = {}
        n_sub = 0
        for s in src.streams:
            name = s.codec_context.name if s.codec_context is not None else "unknown"
            if s.type == "audio":
                if name not in supported or name.startswith(_REFUSED_PREFIXES.get(fmt, ("\0",))):
                    raise EncodeError(output, _audio_fix(name, s.index, output.suffix))
                maps.append(s.index)
            elif s.type == "subtitle":
                if name in supported:
                    maps.append(s.index)
                    n_sub += 1
                elif name in _TEXT_SUBTITLES:
                    # Text is kept, re-wrapped in the format the container takes (styling may not be).
                    maps.append(s.index)
                    codecs[f"c:s:{n_sub}"] = "mov_text" if fmt in ("mp4", "mov") else "srt"
                    n_sub += 1
                else:
                    log.warning(
                        "%s: subtitle stream #%d (%s) cannot be stored in %s and is left out "
                        "(use .mkv to keep it)",
                        output,
                        s.index,
                        name,
                        output.suffix,
                    )
            elif s.type == "attachment" and fmt == "matroska":
                maps.append(s.index)  # fonts for styled subtitles
        timecode = _timecode(src)
        if timecode:
            # A tape timecode (a MOV tmcd track or a tag): kept as the video's start timecode,
            # from which MOV/MP4 rebuild their timecode track.
            codecs["metadata:s:v:0"] = f"timecode={timecode}"
        return maps, codecs


def _timecode(container: InputContainer) -> str | None:

    for holder in (container, *container.streams):
        for key, value in holder.metadata.items():
            if key.lower() == "timecode" and value:  # Matroska tags come back upper-case
                return str(value)
    return None


def _container_options(
    joined: Path, fmt: str, color: ColorTags | None, sample_aspect_ratio: Fraction | None
) -> dict[str, str]:
    """The ffmpeg options that describe the joined video at the container level."""
    options: dict[str, str] = {}
    if color is not None:
        # Also at the container level (ffmpeg applies these to stream copies): Matroska keeps a
        # range even when the other tags are unspecified, which MP4's colour atom cannot.
        tags = {
            "color_primaries": color.primaries,
            "color_trc": color.transfer,
            "colorspace": "rgb" if color.matrix == "gbr" else color.matrix,  # the option's name
            "color_range": color.range,
        }
        options.update({k: v for k, v in tags.items() if v})
    if sample_aspect_ratio:
        # Not every codec stores its pixel aspect in the bitstream: declare it in the container.
        with _open_video(joined) as (width, height, _):
            dar = Fraction(width, height) * sample_aspect_ratio
        options["aspect"] = f"{dar.numerator}:{dar.denominator}"
    if fmt in ("mp4", "mov"):
        with _open_video(joined) as (_, _, time_base):
            options["movie_timescale"] = str(mov_timescale(time_base))
    return options


def mux(
    video_parts: Sequence[Path],
    source: Path,
    output: Path,
    *,
    overwrite: bool = False,
    color: ColorTags | None = None,
    rotation: int = 0,
    frame_rate: Fraction | None = None,
    variable_frame_rate: bool = False,
    sample_aspect_ratio: Fraction | None = None,
    codec_tag: str | None = None,
    ffmpeg: str = "ffmpeg",
    metadata: Mapping[str, str] | None = None,
    threads: int | None = None,
) -> Path:
    """Join `video_parts` (in order) with every audio/subtitle stream of `source` into `output`.

    `color` becomes the video's colour description, `rotation` (degrees clockwise) its display
    rotation, `sample_aspect_ratio` its pixel aspect, and a constant `frame_rate` its declared
    rate. Left as None, the pixel aspect is the first part's (VideoWriter stores it) and HEVC in MP4
    gets the `hvc1` tag Apple players require. Audio the container cannot hold is an error (never
    dropped or re-encoded); subtitles it cannot hold are converted (text into MP4) or left out with
    a warning. The file appears at `output` only when complete. `metadata` adds container tags (the
    report's provenance); the file is written bit-exact (no random ids or dates), so the same inputs
    give the same bytes.
    """
    output = Path(output)
    check_output(output, overwrite=overwrite)
    if not video_parts:
        raise EncodeError(output, "no video parts to join")

    if is_sequence_output(output):
        return write_sequence(video_parts, source, output, overwrite=overwrite)
    fmt = CONTAINER_FORMATS[output.suffix.lower()]
    part_sar, part_codec, part_color = _part_description(Path(video_parts[0]))
    if color is not None and part_color is not None:
        # RGB and YUV meet only in the writer (which tags each part): the part's matrix and range win.
        color = ColorTags(color.primaries, color.transfer, part_color.matrix, part_color.range)
    sample_aspect_ratio = sample_aspect_ratio or part_sar
    if codec_tag is None and part_codec == "hevc":
        codec_tag = "hvc1"
    maps, sub_codecs = plan_streams(Path(source), output, fmt)
    joined = output.with_name(f".{output.name}.video.mov")  # the whole name: x.mkv and x.mp4 never share it
    tmp = temporary_path(output)
    try:
        join_parts(
            video_parts,
            joined,
            color=color,
            rotation=rotation,
            frame_rate=None if variable_frame_rate else frame_rate,
            codec_tag=codec_tag if fmt in ("mp4", "mov") else None,
        )
        if rotation % 360 and fmt == "matroska":
            log.warning(
                "%s: this ffmpeg cannot store a display rotation in Matroska; the %d° rotation is lost "
                "(use .mp4 or .mov to keep it)",
                output,
                rotation,
            )
        sub_codecs = {**sub_codecs, **_container_options(joined, fmt, color, sample_aspect_ratio)}
        cmd = _mux_command(ffmpeg, joined, Path(source), maps, sub_codecs, fmt, codec_tag, tmp, metadata)
        if threads:
            cmd[1:1] = ["-threads", str(threads)]
        _run_ffmpeg(cmd, output)

        # Taken as done only when the muxed file reads back with every joined frame.
        verify_video(tmp, count_video_packets(joined), report_as=output)
        os.replace(tmp, output)
    finally:
        joined.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return output


def write_sequence(
    video_parts: Sequence[Path], source: Path, output: Path, *, overwrite: bool = False
) -> Path:
    """The parts' frames as numbered image files `output % n` (n from 0), by stream copy.

    The files are written into a hidden directory beside the pattern, counted against the parts,
    and only then moved into place (an older sequence of the same name is replaced with
    `overwrite`). Image sequences carry no sound: audio streams of the source are left out, said.
    """
    import shutil
    import tempfile

    output = Path(output)
    with contextlib.suppress(Exception):
        import av

        with av.open(str(source)) as src:
            if src.streams.audio:
                log.warning(
                    "%s: image sequences carry no sound: %d audio stream(s) of %s are left out",
                    output,
                    len(src.streams.audio),
                    source,
                )
    base = output.name.replace("%", "")
    joined = output.with_name(f".{base}.video.mov")
    staging = Path(tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=output.parent))
    try:
        join_parts(video_parts, joined)
        expected = count_video_packets(joined)
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(joined)]
        cmd += [
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-f",
            "image2",
            "-start_number",
            "0",
            str(staging / output.name),
        ]
        _run_ffmpeg(cmd, output)
        written = sorted(staging.iterdir())
        if len(written) != expected or any(f.stat().st_size == 0 for f in written):
            raise EncodeError(output, f"{len(written)} image files written for {expected} frames")
        if overwrite:
            for old in existing_outputs(output):
                old.unlink()
        for f in written:
            os.replace(f, output.parent / f.name)
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _part_description(part: Path) -> tuple[Fraction | None, str, ColorTags | None]:
    """(pixel aspect, codec name, matrix and range when the part is RGB or an RGB source's YUV)."""
    import av

    try:
        with av.open(str(part)) as c:
            stream = c.streams.video[0]
            cc = stream.codec_context
            sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
            color = None
            if is_rgb_format(cc.pix_fmt):
                color = ColorTags(matrix="gbr", range="pc")
            elif cc.colorspace is not None and MATRICES.get(int(cc.colorspace)):
                color = ColorTags(
                    matrix=MATRICES.get(int(cc.colorspace)),
                    range=RANGES.get(int(cc.color_range or 0)) or "tv",
                )
            return (Fraction(sar) if sar else None), cc.name, color
    except (av.error.FFmpegError, IndexError) as exc:
        raise EncodeError(part, f"not a readable video part ({exc})") from exc


@contextlib.contextmanager
def _open_video(path: Path) -> Iterator[tuple[int, int, Fraction]]:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        yield stream.codec_context.width, stream.codec_context.height, _time_base(stream)


def _mux_command(
    ffmpeg_bin: str,
    video: Path,
    source: Path,
    source_streams: list[int],
    options: dict[str, str],
    fmt: str,
    codec_tag: str | None,
    tmp: Path,
    metadata: Mapping[str, str] | None = None,
) -> list[str]:
    # Built by hand rather than with ffmpeg-python: its graph drops an input none of whose streams
    # is mapped, and the source must stay an input for its metadata and chapters.
    cmd = [ffmpeg_bin, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    # -copyts: absolute timestamps, so video and audio keep the source's common clock (ffmpeg would
    # otherwise shift each input by its own start time).

    from_sequence = is_sequence(source)  # nothing but pictures: no second input
    cmd += ["-copyts", "-i", str(video)]
    if not from_sequence:
        cmd += ["-i", str(source)]
    cmd += ["-map", "0:v:0"]
    for index in source_streams:
        cmd += ["-map", f"1:{index}"]
    cmd += ["-c", "copy"]
    for key, value in options.items():
        cmd += [f"-{key}", value]
    if not from_sequence:
        cmd += ["-map_metadata", "1", "-map_chapters", "1"]
        # the video stream's tags are the source's, not the intermediate part's (HANDLER_NAME, VENDOR_ID)
        cmd += ["-map_metadata:s:v:0", "1:s:v:0"]
    else:
        cmd += ["-map_metadata:s:v:0", "-1"]
    for key, value in (metadata or {}).items():
        cmd += ["-metadata", f"{key}={value}"]
    # bitexact: no random segment ids or muxing dates (Matroska), so a rerun gives the same bytes
    cmd += ["-fflags", "+bitexact"]
    if fmt in ("mp4", "mov"):
        # FLAC and Opus in MP4 are standard now but still flagged experimental in ffmpeg 5.1;
        # use_metadata_tags keeps tags MP4 has no atom for (the provenance tags).
        flags = "+faststart+use_metadata_tags" if metadata else "+faststart"
        cmd += ["-movflags", flags, "-strict", "experimental"]
        if codec_tag:
            cmd += ["-tag:v", codec_tag]
    return [*cmd, "-f", fmt, str(tmp)]


def _run_ffmpeg(cmd: list[str], output: Path) -> None:
    log.debug("mux: %s", " ".join(cmd))
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise EncodeError(output, f"cannot start ffmpeg ({exc.strerror})") from exc
    assert proc.stderr is not None  # stderr=PIPE
    drain = StderrDrain(proc.stderr)

    drain.start()
    try:
        rc = proc.wait()
    except BaseException:
        # Ctrl-C reaches ffmpeg too, which then finishes its file: stop it and wait, so the caller's
        # cleanup of the hidden partial output comes after ffmpeg's last write, not before it.
        proc.kill()
        proc.wait()
        raise
    finally:
        drain.join()
    if rc != 0:
        raise ffmpeg_error(output, f"muxing failed (ffmpeg exited with status {rc})", drain, rc)
