"""Domain errors. Every message names the file (or setting) and the problem in plain words.

Library exceptions (av.error.*, OSError, subprocess failures, pickle errors) are wrapped with
`raise XError(...) from exc` at the boundary where we know which file was involved. The CLI turns
any PipelineError into a one-line message and a non-zero exit code; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


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
