"""The ground floor (pipeline.files): keys that finished work depends on, and what it imports."""

from __future__ import annotations

import ast
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline import files
from pipeline.run.workdir import WorkDir

# Keys computed before the file I/O moved out of run/workdir.py: a changed value here would make
# every existing work directory and report provenance stale, so it must never change silently.
KNOWN_LARGE = "01fc42868cfe67fda8a3"  # 2 MB of seeded bytes: sampled blocks
KNOWN_SMALL = "816eaafda1eaef2f9c72"  # 2560 bytes: hashed whole
KNOWN_SETTINGS = "489a8dcb8b369822ba69"


def test_content_and_settings_keys_are_the_ones_work_directories_hold(tmp_path: Path) -> None:
    large = tmp_path / "large.bin"
    large.write_bytes(np.random.default_rng(7).integers(0, 256, 2_000_000, dtype=np.uint8).tobytes())
    small = tmp_path / "small.mkv"
    small.write_bytes(bytes(range(256)) * 10)
    assert files.file_key(large) == KNOWN_LARGE
    assert files.file_key(small) == KNOWN_SMALL
    # a plain file's video key is its file key (model weights are keyed with file_key directly)
    assert WorkDir.video_key(large) == KNOWN_LARGE
    settings = ("scan", {"a": Fraction(1, 3), "b": [1, 2.5, None, True]}, (1.5, float("nan")))
    key = files.settings_key(*settings, Path("/x"), np.arange(4, dtype=np.float32))
    assert key == KNOWN_SETTINGS


def test_is_complete_refuses_empty_and_cut_artifacts(tmp_path: Path) -> None:
    good = tmp_path / "a.npz"
    files.save_arrays(good, x=np.arange(1000))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-40])
    npy = tmp_path / "b.npy"
    np.save(npy, np.arange(1000))
    short = tmp_path / "short.npy"
    short.write_bytes(npy.read_bytes()[:-8])
    bad_json = tmp_path / "c.json"
    bad_json.write_text('{"a": ')
    (tmp_path / "empty.json").write_text("")
    assert files.is_complete(good) and files.is_complete(npy)
    for path in (cut, short, bad_json, tmp_path / "empty.json", tmp_path / "missing.json"):
        assert not files.is_complete(path), path


def test_the_ground_floor_imports_only_the_errors() -> None:
    tree = ast.parse(Path(files.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m.split(".")[0] == "pipeline"] == ["pipeline.errors"]
