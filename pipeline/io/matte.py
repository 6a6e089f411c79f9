"""The provenance matte's video: a lossless gray mask beside the output, frame for frame.

`film.matte` asks for `OUTPUT.matte.mkv`: one gray frame per output frame, with the output's
timestamps, 0 where the output shows the footage (cleaned, upscaled) and up to 255 where a pixel
was synthesised (a pasted face, by its blend mask; a dust or scratch fill). Each compose step writes
its segment's part (`MatteWriter`: FFV1 in NUT, which keeps the source's time base exactly, under a
temporary name renamed when complete); the join copies the parts' packets into the Matroska file
(`join_mattes`, also written under a temporary name and renamed), as the output's parts are joined.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import EncodeError

if TYPE_CHECKING:
    from av.container import OutputContainer
    from av.video.stream import VideoStream


def matte_path(output: str | Path) -> Path:
    """Where the matte of `output` goes: `OUTPUT.matte.mkv` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".matte.mkv")


class MatteWriter:
    """`open()`, `write(mask, pts)` gray uint8 frames, `close()`: the part then exists, whole;
    `abort()` (or any error) leaves nothing at `path`."""

    def __init__(self, path: str | Path, *, width: int, height: int, time_base: Fraction) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.time_base = Fraction(time_base)
        self.frames_written = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")  # swept after a kill
        self._box: OutputContainer | None = None
        self._stream: VideoStream | None = None

    def open(self) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._box = av.open(str(self._tmp), "w", format="nut")
        stream = self._box.add_stream("ffv1")
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "gray"
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        stream.codec_context.thread_count = 1
        self._stream = stream

    def write(self, mask: np.ndarray, pts: int) -> None:
        """Queue one mask ([H, W] uint8, 0 = footage) at `pts` (in `time_base`)."""
        import av

        if mask.shape != (self.height, self.width) or mask.dtype != np.uint8:
            raise ValueError(f"matte {mask.shape} {mask.dtype} is not ({self.height}, {self.width}) uint8")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(mask), format="gray")
        frame.pts, frame.time_base = pts, self.time_base
        assert self._box is not None and self._stream is not None, "MatteWriter.write before open()"
        try:
            for packet in self._stream.encode(frame):
                self._box.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise EncodeError(self.path, f"writing the provenance matte failed: {exc}") from exc
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the part and move it into place."""
        import av

        assert self._box is not None and self._stream is not None, "MatteWriter.close before open()"
        try:
            for packet in self._stream.encode(None):
                self._box.mux(packet)
            self._box.close()
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise EncodeError(self.path, f"writing the provenance matte failed: {exc}") from exc
        self._box = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop and remove the temporary file."""
        if self._box is not None:
            with contextlib.suppress(Exception):
                self._box.close()
            self._box = None
        self._tmp.unlink(missing_ok=True)


def join_mattes(parts: Sequence[str | Path], output: Path) -> Path:
    """Copy the matte parts' packets, in order, into the Matroska file `output` (written under a
    temporary name and renamed when complete)."""
    import av

    from pipeline.io.mux import joined_packets, temporary_path

    if not parts:
        raise EncodeError(output, "no matte parts to join")
    tmp = temporary_path(output)
    try:
        with av.open(str(tmp), "w", format="matroska") as out:
            with av.open(str(parts[0])) as first:
                stream = out.add_stream_from_template(first.streams.video[0])
            for packet in joined_packets([Path(p) for p in parts]):
                packet.stream = stream
                out.mux(packet)
        os.replace(tmp, output)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise EncodeError(output, f"writing the provenance matte failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return output
