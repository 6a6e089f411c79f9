"""Image sequences (film scans): `scan_%06d.dpx` patterns or a directory of numbered images.

Film archives scan to one file per frame, DPX or TIFF at 10–16 bits, or PNG. As an input a sequence
is opened with FFmpeg's image2 demuxer at a frame rate the user gives (`io.sequence_rate`, default
24; scans carry no rate of their own): frame i has pts i in a 1/rate time base. As an output the
restored frames are written as numbered files (`-o out_%06d.tiff`), 16-bit where the source is deeper
than 8 bits.

A sequence is named by a printf pattern (`%06d`, `%d`) or by its directory (the largest group of
files with one prefix, one suffix and numbers of one width). A missing number is an error naming the
missing file: image2 would stop reading there and silently drop the rest of the reel.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import VideoOpenError

if TYPE_CHECKING:
    from av.container import InputContainer


# Suffixes read and written as image sequences (FFmpeg image2 codecs).
IMAGE_SUFFIXES = {".dpx": "dpx", ".tif": "tiff", ".tiff": "tiff", ".png": "png", ".exr": "exr"}
# Sequence outputs: suffix -> (codec, 8-bit pixel format, deep pixel format).
OUTPUT_CODECS = {
    ".dpx": ("dpx", "rgb24", "rgb48le"),
    ".tif": ("tiff", "rgb24", "rgb48le"),
    ".tiff": ("tiff", "rgb24", "rgb48le"),
    ".png": ("png", "rgb24", "rgb48be"),
}
DEFAULT_RATE = Fraction(24)
_PATTERN = re.compile(r"%(0?)(\d*)d")
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")

# The rate sequences are read at, set once per process from io.sequence_rate (`set_sequence_rate`)
# or, for worker processes, from the environment.
_rate: Fraction | None = None


def set_sequence_rate(rate: Fraction | float | str | None) -> None:
    """The frame rate image sequences are read at in this process (and in workers it starts)."""
    global _rate
    _rate = None if rate is None else Fraction(str(rate))
    if _rate is not None:
        os.environ["REEL_SEQUENCE_RATE"] = str(_rate)


def sequence_rate() -> Fraction:
    if _rate is not None:
        return _rate
    env = os.environ.get("REEL_SEQUENCE_RATE")
    try:
        return Fraction(env) if env else DEFAULT_RATE
    except (ValueError, ZeroDivisionError):
        return DEFAULT_RATE


@dataclass(frozen=True)
class Sequence:
    """A numbered image sequence on disk."""

    pattern: Path  # printf pattern, e.g. /scans/reel1/scan_%06d.dpx
    start: int  # first number
    count: int  # files (numbers start .. start+count-1, none missing)
    size: int  # bytes of all files together

    def file(self, number: int) -> Path:
        return Path(_format(str(self.pattern), number))

    @property
    def files(self) -> list[Path]:
        return [self.file(n) for n in range(self.start, self.start + self.count)]


def is_sequence_pattern(path: str | Path) -> bool:
    """`scan_%06d.dpx`-style name (the image suffix is required)."""
    p = Path(path)
    return bool(_PATTERN.search(p.name)) and p.suffix.lower() in IMAGE_SUFFIXES


def is_sequence(path: str | Path) -> bool:
    """A sequence pattern, or a directory holding numbered image files."""
    p = Path(path)
    if is_sequence_pattern(p):
        return True
    return p.is_dir() and _directory_pattern(p) is not None


def _format(pattern: str, number: int) -> str:
    return _PATTERN.sub(
        lambda m: f"{number:{'0' if m.group(1) else ''}{m.group(2) or ''}d}", pattern, count=1
    )


def _directory_pattern(directory: Path) -> Path | None:
    groups: dict[tuple[str, str, int], int] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    for name in names:
        m = _NUMBERED.match(name)
        if m and m.group(3).lower() in IMAGE_SUFFIXES and not name.startswith("."):
            key = (m.group(1), m.group(3), len(m.group(2)))
            groups[key] = groups.get(key, 0) + 1
    if not groups:
        return None
    (prefix, suffix, width), _ = max(groups.items(), key=lambda kv: (kv[1], kv[0]))
    return directory / f"{prefix.replace('%', '%%')}%0{width}d{suffix}"


def resolve_sequence(path: str | Path) -> Sequence:
    """The sequence a pattern or directory names; VideoOpenError when it is empty or has holes."""
    path = Path(path)
    if path.is_dir():
        pattern = _directory_pattern(path)
        if pattern is None:
            raise VideoOpenError(
                path, "is a directory without numbered image files (.dpx, .tiff, .png, .exr)"
            )
    else:
        pattern = path
    directory = pattern.parent
    if not directory.is_dir():
        raise VideoOpenError(path, f"directory {directory} does not exist")
    m = _PATTERN.search(pattern.name)
    if m is None:
        raise VideoOpenError(path, "not an image sequence pattern (expected e.g. scan_%06d.dpx)")
    head, tail = pattern.name[: m.start()].replace("%%", "%"), pattern.name[m.end() :]
    width = int(m.group(2) or 0) if m.group(1) else 0
    numbers: dict[int, int] = {}
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        raise VideoOpenError(path, f"cannot list {directory} ({exc.strerror})") from exc
    for entry in entries:
        name = entry.name
        if not (name.startswith(head) and name.endswith(tail)) or len(name) <= len(head) + len(tail):
            continue
        digits = name[len(head) : len(name) - len(tail)]
        if not digits.isdigit() or (width and len(digits) != width):
            continue
        try:
            numbers[int(digits)] = entry.stat().st_size
        except OSError:
            continue
    if not numbers:
        raise VideoOpenError(path, "no image file matches this sequence pattern")
    start, last = min(numbers), max(numbers)
    missing = [n for n in range(start, last + 1) if n not in numbers]
    seq = Sequence(pattern, start, last - start + 1, sum(numbers.values()))
    if missing:
        raise VideoOpenError(
            path,
            f"frame file {seq.file(missing[0]).name} is missing ({len(missing)} of {seq.count} numbers "
            f"between {start} and {last} are absent); fill the gap or renumber the sequence",
        )
    empty = [n for n, size in sorted(numbers.items()) if size == 0]
    if empty:
        raise VideoOpenError(seq.file(empty[0]), "is an empty file (0 bytes) in an image sequence")
    return seq


def open_sequence(path: str | Path) -> InputContainer:
    """A PyAV input container reading the sequence at `sequence_rate()`."""
    import av

    seq = resolve_sequence(path)
    rate = sequence_rate()
    try:
        return av.open(
            str(seq.pattern),
            format="image2",
            options={"framerate": f"{rate.numerator}/{rate.denominator}", "start_number": str(seq.start)},
        )
    except av.error.FFmpegError as exc:
        raise VideoOpenError(path, f"not an image sequence FFmpeg can read ({exc.strerror or exc})") from exc


def file_version(path: str | Path) -> tuple[int, int]:
    """(newest mtime_ns, total size) of a sequence: a cache key that changes with any file."""
    seq = resolve_sequence(path)
    newest = max(f.stat().st_mtime_ns for f in seq.files)
    return newest, seq.size


# ---------------------------------------------------------------------- output


def is_sequence_output(path: str | Path) -> bool:
    return is_sequence_pattern(path) and Path(path).suffix.lower() in OUTPUT_CODECS


def existing_outputs(pattern: str | Path) -> list[Path]:
    """Files of an output pattern that exist already (any number)."""
    pattern = Path(pattern)
    m = _PATTERN.search(pattern.name)
    if m is None or not pattern.parent.is_dir():
        return []
    head, tail = pattern.name[: m.start()].replace("%%", "%"), pattern.name[m.end() :]
    return sorted(
        pattern.parent / n
        for n in os.listdir(pattern.parent)
        if n.startswith(head) and n.endswith(tail) and n[len(head) : len(n) - len(tail)].isdigit()
    )
