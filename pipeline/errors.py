"""Domain errors. Every message names the file (or setting) and the problem in plain words.

Library exceptions (av.error.*, OSError, subprocess failures, pickle errors) are wrapped with
`raise XError(...) from exc` at the boundary where we know which file was involved. The CLI turns
any PipelineError into a one-line message and a non-zero exit code; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from pathlib import Path


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices` to a mistyped `word`, else ``."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class PipelineError(Exception):
    """Base class: an expected failure with a message fit for the user."""

    exit_code = 2


class ConfigError(PipelineError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class PathError(PipelineError):
    """A problem with one file: the message is "<path>: <problem>"."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        # Errors cross process boundaries (Ray tasks): rebuild from (path, problem), not the message.
        return (type(self), (self.path, self.problem))


class InputError(PathError):
    """An input file cannot be used."""


class VideoOpenError(InputError):
    """The file does not exist, is not a media file, or has no usable video stream."""


class DecodeError(InputError):
    """Decoding failed beyond what can be counted as damaged frames."""


class OutputError(PathError):
    """The output cannot be written (exists without --overwrite, bad directory, ...)."""


class EncodeError(OutputError):
    """The encoder (ffmpeg) failed; the message carries ffmpeg's own last lines."""


class CheckpointError(InputError):
    """A model checkpoint cannot be read or does not describe a supported generator."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint asks to import or call something we never allow (code execution on load)."""


class ModelNotAvailableError(PipelineError):
    """A named model is not in the local cache and cannot be fetched (offline, unknown name)."""


class DownloadError(PipelineError):
    """A download failed or its content did not verify."""


class SearchError(PipelineError):
    """Latent search was given inputs it cannot work with."""


class JobError(PipelineError):
    """A distributed job or one of its units failed."""


class DiskFullError(OutputError):
    """The filesystem holding the output or the work directory has no room left."""


class ResourceError(PipelineError):
    """The job needs more memory or output space than is sensible or available (checked up front)."""


class LockedError(OutputError):
    """Another reel run is writing the same output or work directory right now."""


# ---------------------------------------------------------------------- one-line messages

# Names our own temporary files take: hidden parts beside the output, work-dir temporaries.
_TEMP_MARKS = (".tmp-", ".partial", ".part", ".video.mov")


def is_temporary_path(path: str | Path) -> bool:
    """True for files the user never named: hidden parts beside an output, anything in a work dir."""
    p = Path(path)
    if p.name.startswith(".") and any(m in p.name for m in _TEMP_MARKS):
        return True
    return any(part.endswith(".work") for part in p.parts[:-1]) or any(m in p.name for m in (".tmp-",))


def disk_full_message(where: Path, needed: int | None = None) -> str:
    """ "the disk is full (N MB free on <mount>; about M MB needed)"."""
    import shutil

    free: int | None = None
    probe = where if where.is_dir() else where.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        free = None
    parts = [f"{_mb(free)} free in {probe}"] if free is not None else []
    if needed and (free is None or needed > free):  # an estimate below what is free explains nothing
        parts.append(f"about {_mb(needed)} needed")
    detail = f" ({'; '.join(parts)})" if parts else ""
    return f"the disk is full{detail}: free some space and run again (finished work is kept)"


def _mb(n: int | None) -> str:
    if n is None:
        return "unknown"
    if n >= 10 * 1024**3:
        return f"{n / 1024**3:.0f} GB"
    if n >= 1024**2:
        return f"{n / 1024**2:.0f} MB" if n >= 10 * 1024**2 else f"{n / 1024**2:.1f} MB"
    return f"{n / 1024:.0f} KB"


def is_disk_full(exc: BaseException) -> bool:
    """The OS refused a write for lack of space: a full disk, a quota, or the file size limit."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def looks_disk_full(text: str) -> bool:
    return "No space left on device" in text or "Disk quota exceeded" in text or "File too large" in text


def one_line(
    exc: BaseException,
    *,
    input: str | Path | None = None,
    output: str | Path | None = None,
    needed: int | None = None,
) -> str:
    """What the user sees for any failure: one line naming their own file and the problem.

    A temporary part or work-directory file in a message is replaced by the user's output (for
    output errors) or input; a full disk is said as such; an encoder's quoted stderr is reduced to
    its last meaningful line; anything unexpected is named by its type and marked as a bug.
    """

    cause = _unwrap(exc)
    text = str(cause)
    path: Path | None = getattr(cause, "path", None)
    problem: str = getattr(cause, "problem", text)
    if not isinstance(cause, PipelineError) and isinstance(cause, OSError) and cause.filename:
        path = Path(str(cause.filename))
        problem = cause.strerror or text
    user_out = Path(output) if output is not None else None
    user_in = Path(input) if input is not None else None
    if path is None and isinstance(cause, PipelineError):
        path, problem = _split_path(text)
    if path is not None and is_temporary_path(path):
        is_input = isinstance(cause, InputError) and not isinstance(cause, OutputError)
        path = (user_in if is_input else user_out) or path
    if is_disk_full(cause) or looks_disk_full(text) or isinstance(cause, DiskFullError):
        where: Path = path or user_out or Path.cwd()
        if isinstance(cause, DiskFullError):
            return f"{where}: {cause.problem}"
        return f"{where}: {disk_full_message(where, needed)}"
    problem = _first_and_last(problem)
    if path is None and isinstance(cause, JobError | SearchError) and user_in is not None:
        path = user_in  # a failed unit of a distributed job: say whose job it was
    if isinstance(cause, PipelineError):
        return f"{path}: {problem}" if path is not None else problem
    if isinstance(cause, MemoryError):
        prefix = f"{user_in or user_out}: " if (user_in or user_out) else ""
        return f"{prefix}not enough memory for this job (try a smaller --scale or fewer parallel tasks)"
    if isinstance(cause, OSError):
        named = path or user_out or user_in
        prefix = f"{named}: " if named else ""
        return f"{prefix}{problem}"
    prefix = f"{user_in or user_out}: " if (user_in or user_out) else ""
    return f"{prefix}unexpected {type(cause).__name__}: {problem} (a bug: run with -v for the traceback)"


def _unwrap(exc: BaseException) -> BaseException:
    """The underlying error of a Ray task failure (RayTaskError.cause), else `exc` itself."""
    seen = 0
    while seen < 5 and isinstance(getattr(exc, "cause", None), BaseException):
        exc = getattr(exc, "cause")  # noqa: B009 (any exception type may carry one)
        seen += 1
    return exc


def _split_path(text: str) -> tuple[Path | None, str]:
    """("/a/b.mov", "problem") from "/a/b.mov: problem" when the text starts with a path."""
    head, sep, rest = text.partition(": ")
    if sep and head.startswith(("/", "./", "..")) and "\n" not in head:
        return Path(head), rest
    return None, text


def _first_and_last(problem: str) -> str:
    """One line: the first line, and the last telling line of quoted tool output, if any."""
    lines = [ln.strip() for ln in problem.splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else problem
    first, rest = lines[0], lines[1:]
    telling = [ln for ln in rest if not ln.endswith("--") and "maybe incorrect parameters" not in ln]
    last = (telling or rest)[-1]
    if "] " in last and last.startswith("["):
        last = last.split("] ", 1)[1]  # "[libx264 @ 0x...] msg" -> "msg"
    first = first.removesuffix("; ffmpeg said:").removesuffix(":")
    return f"{first}: {last}"
