"""Errors keep their file and problem when they cross a process boundary (Ray tasks pickle them)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from pipeline import errors


@pytest.mark.parametrize(
    "cls",
    [
        errors.InputError,
        errors.VideoOpenError,
        errors.DecodeError,
        errors.CheckpointError,
        errors.UnsafeCheckpointError,
        errors.OutputError,
        errors.EncodeError,
    ],
)
def test_path_errors_survive_pickling(cls: type[errors.InputError]) -> None:
    exc = cls(Path("/archive/reel 7.mkv"), "truncated after 812 frames")
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is cls
    assert again.path == Path("/archive/reel 7.mkv")
    assert again.problem == "truncated after 812 frames"
    assert str(again) == "/archive/reel 7.mkv: truncated after 812 frames"


def test_message_errors_survive_pickling() -> None:
    again = pickle.loads(pickle.dumps(errors.ConfigError("search.steps: expected an integer")))
    assert str(again) == "search.steps: expected an integer"
