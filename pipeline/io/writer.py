"""Encoding RGB frames with ffmpeg, each at its original timestamp.

PyAV writes the frames as uncompressed video in a NUT stream on ffmpeg's stdin; NUT carries every
frame's exact pts in the source's own time base, so ffmpeg (driven through ffmpeg-python, with
`-fps_mode passthrough -enc_time_base -1`) encodes exactly the timestamps it is given: variable frame
rates survive and 30000/1001 stays 30000/1001. The result is a video-only *part* (MOV, which keeps
any time base exactly); `mux` joins parts and adds the source's audio and subtitles.

ffmpeg's stderr is drained by a thread into a bounded buffer, so a chatty encoder can never fill the
pipe and stall; when ffmpeg fails, its own last lines become the EncodeError message.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import subprocess
import threading
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

import numpy as np

from pipeline.errors import (
    ConfigError,
    DiskFullError,
    EncodeError,
    OutputError,
    disk_full_message,
    looks_disk_full,
)
from pipeline.io.decode import rgb_conversion
from pipeline.io.presets import (
    EncoderPreset,
    encoder_options,
    get_preset,
    is_rgb_format,
    mov_timescale,
    output_pix_fmt,
)
from pipeline.io.verify import disk_is_low, verify_video
from pipeline.types import ColorTags

if TYPE_CHECKING:
    import av
    from av.container import OutputContainer
    from av.video.stream import VideoStream

log = logging.getLogger(__name__)

# Names the scale filter takes for the matrices and ranges `rgb_conversion` returns.
_SCALE_MATRIX = {
    "ITU709": "bt709",
    "ITU601": "bt601",
    "BT2020": "bt2020",
    "SMPTE240M": "smpte240m",
    "FCC": "fcc",
}
_SCALE_RANGE = {"JPEG": "pc", "MPEG": "tv"}


# io.rgb_matrix -> the matrix tag a YUV output of an RGB source carries.
RGB_MATRICES = {"bt709": "bt709", "bt601": "smpte170m", "bt2020": "bt2020nc"}


def output_color(
    color: ColorTags, source_pix_fmt: str | None, out_pix_fmt: str, rgb_matrix: str
) -> ColorTags:
    """The colour tags of a stored stream: the source's, except where RGB and YUV meet.

    RGB stored as RGB is tagged as RGB, full range. An RGB source stored as YUV is converted with
    `rgb_matrix` (one of RGB_MATRICES) to limited range, and tagged so; a YUV source keeps its tags.
    """
    from dataclasses import replace

    source_rgb = is_rgb_format(source_pix_fmt) or color.matrix == "gbr"
    if is_rgb_format(out_pix_fmt):
        return replace(color, matrix="gbr", range="pc")
    if source_rgb:
        if rgb_matrix not in RGB_MATRICES:
            raise ConfigError(f"io.rgb_matrix={rgb_matrix!r}: must be one of {', '.join(RGB_MATRICES)}")
        return replace(color, matrix=RGB_MATRICES[rgb_matrix], range="tv")
    return color


class StderrDrain(threading.Thread):
    """Reads a pipe to its end, keeping the last lines (ffmpeg's error is at the end)."""

    def __init__(self, pipe: IO[bytes], keep: int = 60) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)

    def run(self) -> None:
        for raw in iter(self.pipe.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())
        self.pipe.close()

    def tail(self, n: int = 12) -> str:
        return "\n".join(list(self.lines)[-n:])


def ffmpeg_error(path: Path, what: str, drain: StderrDrain, returncode: int | None = None) -> OutputError:
    """ffmpeg's failure as an EncodeError quoting its last lines, or a DiskFullError when what
    failed was space: "No space left on device", a killed-by-SIGXFSZ encoder (the file size limit),
    or a filesystem with next to nothing free."""
    import signal

    tail = drain.tail()
    if returncode is not None and returncode == -signal.SIGXFSZ:
        return DiskFullError(path, "the file size limit (ulimit -f) was reached while writing it")
    if looks_disk_full(tail) or disk_is_low(path):
        return DiskFullError(path, disk_full_message(path))
    return EncodeError(path, f"{what}; ffmpeg said:\n{tail}" if tail else what)


class VideoWriter:
    """Context manager: `write(image, pts)` RGB frames; on clean exit the part file exists, complete.

    The part is written under a temporary name and renamed when ffmpeg has finished; on any error
    the temporary file is removed and nothing is left at `path`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        width: int,
        height: int,
        time_base: Fraction,
        frame_rate: Fraction | None = None,
        preset: str | EncoderPreset = "delivery-x264",
        crf: int | None = None,
        deep: bool = False,
        source_pix_fmt: str | None = None,
        color: ColorTags | None = None,
        sample_aspect_ratio: Fraction = Fraction(1),
        native_format: str | None = None,
        rgb_matrix: str = "bt709",
        threads: int | None = None,
        ffmpeg: str = "ffmpeg",
    ) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.time_base = Fraction(time_base)
        self.frame_rate = frame_rate
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.deep = deep
        self.pix_fmt = output_pix_fmt(self.preset, source_pix_fmt, deep, width, height)
        # The colour the part is tagged with: an RGB source stored as YUV gets `rgb_matrix`.
        self.color = output_color(color or ColorTags(), source_pix_fmt, self.pix_fmt, rgb_matrix)
        self.sample_aspect_ratio = sample_aspect_ratio
        self.crf = crf
        self.ffmpeg = ffmpeg
        self.threads = threads  # encoder and filter threads (None = ffmpeg's choice)
        # Frames handed over as decoded (write_frame) in exactly the stored format: no conversion at all.
        if native_format is not None and native_format != self.pix_fmt:
            raise ValueError(f"native frames must already be {self.pix_fmt}, not {native_format}")
        self.native_format = native_format
        self.frames_written = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mov'}")
        self.expected_frames: int | None = None  # set by the caller to have close() check the count
        self._proc: subprocess.Popen[bytes] | None = None
        self._drain: StderrDrain | None = None
        self._nut: OutputContainer | None = None
        self._stream: VideoStream | None = None
        self._last_pts: int | None = None

    # -- command ----------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The ffmpeg command line (also useful in logs)."""
        import ffmpeg

        setsar = f"setsar={self.sample_aspect_ratio.numerator}/{self.sample_aspect_ratio.denominator}"
        if self.native_format:
            vf = setsar
        elif is_rgb_format(self.pix_fmt):
            vf = f"format={self.pix_fmt},{setsar}"  # RGB stays RGB: no matrix, full range
        else:
            cs, rng = rgb_conversion(self.color, self.height)
            # RGB in is full range; convert with the matrix the decoder used, and tag as the source.
            vf = (
                f"scale=out_color_matrix={_SCALE_MATRIX[cs]}:out_range={_SCALE_RANGE[rng]}"
                f":flags=bicubic+accurate_rnd+full_chroma_int,format={self.pix_fmt},{setsar}"
            )
        out: dict[str, str | None] = {
            "vf": vf,
            **encoder_options(self.preset, self.pix_fmt, self.crf),
            "fps_mode": "passthrough",  # never drop, duplicate or retime a frame
            "enc_time_base": "-1",  # the encoder counts in the source's time base
            "an": None,
            "f": "mov",
            "movie_timescale": str(mov_timescale(self.time_base)),
            "video_track_timescale": str(mov_timescale(self.time_base)),
        }
        tags = {
            "color_primaries": self.color.primaries,
            "color_trc": self.color.transfer,
            # probe names FFmpeg's RGB matrix "gbr"; the command line's option calls it "rgb"
            "colorspace": "rgb" if self.color.matrix == "gbr" else self.color.matrix,
            "color_range": self.color.range,
        }
        out.update({k: v for k, v in tags.items() if v})
        if self.preset.codec_tag:
            out["tag:v"] = self.preset.codec_tag
        if self.threads:
            out["threads"] = str(self.threads)
            out["filter_threads"] = str(self.threads)
        stream = ffmpeg.input("pipe:0", format="nut").output(str(self._tmp), **out)
        # -copyts: keep absolute timestamps (ffmpeg would shift the first frame to 0), so a part that
        # starts mid-programme stays where it belongs.
        stream = stream.global_args("-nostdin", "-hide_banner", "-loglevel", "error", "-copyts")
        return list(ffmpeg.compile(stream, cmd=self.ffmpeg, overwrite_output=True))

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> VideoWriter:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        log.debug("encoder: %s", " ".join(cmd))
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        except OSError as exc:
            raise EncodeError(self.path, f"cannot start ffmpeg ({exc.strerror})") from exc
        assert self._proc.stderr is not None  # stderr=PIPE
        self._drain = StderrDrain(self._proc.stderr)

        self._drain.start()
        self._nut = av.open(self._proc.stdin, mode="w", format="nut")
        rgb = "rgb48le" if self.deep else "rgb24"
        stream = self._nut.add_stream("rawvideo", rate=self.frame_rate)
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = self.native_format or rgb
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        self._stream = stream
        self._rgb = rgb

    def write(self, image: np.ndarray, pts: int) -> None:
        """Queue one frame ([H, W, 3] RGB, uint8 or uint16 as `deep` says) at `pts` (in time_base)."""
        import av

        if self._nut is None:
            raise RuntimeError("VideoWriter.write before open()")
        expected_dtype = np.uint16 if self.deep else np.uint8
        if image.shape != (self.height, self.width, 3) or image.dtype != expected_dtype:
            raise ValueError(
                f"frame {image.shape} {image.dtype} does not match the writer "
                f"({self.height}, {self.width}, 3) {np.dtype(expected_dtype)}"
            )
        if self.native_format:
            raise RuntimeError("this writer takes decoded frames (write_frame), not RGB images")
        # Zero-copy view of the array: the rawvideo encoder copies it into a packet at once.
        frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(image), format=self._rgb)
        self._send(frame, pts)

    def write_frame(self, frame: av.VideoFrame, pts: int) -> None:
        """Queue a decoded PyAV frame as it is (the writer was made with its `native_format`)."""
        if self._nut is None:
            raise RuntimeError("VideoWriter.write_frame before open()")
        if frame.format.name != self.native_format or (frame.width, frame.height) != (
            self.width,
            self.height,
        ):
            raise ValueError(
                f"frame {frame.width}x{frame.height} {frame.format.name} does not match the writer "
                f"{self.width}x{self.height} {self.native_format}"
            )
        self._send(frame, pts)

    def _send(self, frame: av.VideoFrame, pts: int) -> None:
        import av

        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"timestamps must increase: {pts} after {self._last_pts}")
        frame.pts = pts
        frame.time_base = self.time_base
        assert self._nut is not None and self._stream is not None  # open() set both
        try:
            for packet in self._stream.encode(frame):
                self._nut.mux(packet)
        except (BrokenPipeError, OSError, av.error.FFmpegError) as exc:
            self.abort()
            raise self._failure("ffmpeg stopped reading frames") from exc
        self._last_pts = pts
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the encode and move the part into place; returns its path."""
        import av

        if self._proc is None or self._nut is None:
            raise RuntimeError("VideoWriter.close before open()")
        assert self._stream is not None  # open() set it with the container
        try:
            for packet in self._stream.encode(None):
                self._nut.mux(packet)
            self._nut.close()
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        except (BrokenPipeError, OSError, av.error.FFmpegError) as exc:
            self.abort()
            raise self._failure("ffmpeg stopped reading frames") from exc
        rc = self._proc.wait()
        assert self._drain is not None
        self._drain.join()
        if rc != 0:
            self._remove_tmp()
            raise self._failure(f"ffmpeg exited with status {rc}")
        if self.frames_written == 0:
            self._remove_tmp()
            raise EncodeError(self.path, "no frames were written")

        try:  # nothing partial is taken as done: the part must decode and hold every frame
            verify_video(self._tmp, self.expected_frames or self.frames_written, report_as=self.path)
        except BaseException:
            self._remove_tmp()
            raise
        self._tmp.replace(self.path)
        self._nut = None
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file (safe to call more than once)."""
        if self._nut is not None:
            with contextlib.suppress(Exception):  # the pipe may be broken already; it is discarded anyway
                self._nut.close()
            self._nut = None
        if self._proc is not None:
            if self._proc.stdin and not self._proc.stdin.closed:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            if self._drain is not None:
                self._drain.join(timeout=5)
        self._remove_tmp()

    def _failure(self, what: str) -> OutputError:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._drain is not None:
            self._drain.join(timeout=5)
            rc = self._proc.returncode if self._proc is not None else None
            return ffmpeg_error(self.path, what, self._drain, rc)
        return EncodeError(self.path, what)

    def _remove_tmp(self) -> None:
        self._tmp.unlink(missing_ok=True)
