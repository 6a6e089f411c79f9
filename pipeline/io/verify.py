"""Checking a written video before it is taken as done: size, decodable, expected frame count.

Every encoded part and every joined or muxed output passes `verify_video` before it is renamed into
place, and the work directory checks a stored part again before a rerun reuses it, so a part cut
short by a full disk or a killed encoder is redone, never joined.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pipeline.errors import DiskFullError, EncodeError, disk_full_message
from pipeline.io.sequence import existing_outputs, is_sequence_output

log = logging.getLogger(__name__)

# Below this much free space a failed write is blamed on the disk.
_LOW_SPACE = 64 * 1024 * 1024


def disk_is_low(path: Path) -> bool:
    probe = path if path.is_dir() else path.parent
    try:
        return shutil.disk_usage(probe).free < _LOW_SPACE
    except OSError:
        return False


def count_video_packets(path: str | Path) -> int:
    """Video packets of the first video stream (one per frame for every codec we write)."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return sum(1 for p in c.demux(stream) if p.size > 0)


def verify_video(
    path: str | Path, expected_frames: int | None = None, *, report_as: str | Path | None = None
) -> int:
    """Raise EncodeError (DiskFullError when the disk is what failed) unless `path` is a complete
    video: non-empty, readable, its first frame decodes, and it holds `expected_frames` frames.
    Returns the frame count. `report_as` is the file named in the error (the user's, not a part)."""
    import av

    path = Path(path)
    name = Path(report_as) if report_as is not None else path
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise EncodeError(name, f"was not written ({exc.strerror})") from exc
    try:
        if size == 0:
            raise EncodeError(name, "was written empty (0 bytes)")
        try:
            with av.open(str(path)) as c:
                stream = c.streams.video[0]
                count = 0
                decoded = False
                for packet in c.demux(stream):
                    if packet.size <= 0:
                        continue
                    count += 1
                    if not decoded:
                        decoded = bool(packet.decode()) or decoded
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise EncodeError(name, f"the written video does not read back ({exc})") from exc
        if expected_frames is not None and count != expected_frames:
            raise EncodeError(
                name, f"the written video holds {count} frames, not the {expected_frames} expected"
            )
    except EncodeError as exc:
        if disk_is_low(path):
            raise DiskFullError(name, disk_full_message(path)) from exc
        raise
    return count


def is_complete_video(path: str | Path) -> bool:
    """True when `path` reads back as a video with at least one frame (for reusing stored parts)."""
    try:
        verify_video(path)
    except (EncodeError, OSError):
        return False
    return True


def output_frame_count(path: str | Path) -> int:
    """Frames of a finished output: video packets, or files of an image-sequence pattern."""

    if is_sequence_output(path):
        return len(existing_outputs(path))
    return count_video_packets(path)
