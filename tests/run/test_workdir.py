"""The work directory: keys, atomic artifacts, and what a killed writer leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Config
from pipeline.files import atomic_path, load_arrays, load_json, save_arrays, save_json, settings_key
from pipeline.run.workdir import WorkDir, default_workdir

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_keys_are_stable_across_processes(tmp_path: Path) -> None:
    video = tmp_path / "clip.bin"
    video.write_bytes(np.random.default_rng(0).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes())
    config = Config()
    here = {
        "video": WorkDir.video_key(video),
        "settings": settings_key("scan", config.scan, {"b": 1, "a": Fraction(1, 3)}, (1.5, None)),
    }
    proc = _python(
        """
        import json, sys
        from fractions import Fraction
        from pipeline.config import Config
        from pipeline.files import settings_key
        from pipeline.run.workdir import WorkDir
        config = Config()
        print(json.dumps({
            "video": WorkDir.video_key(sys.argv[1]),
            "settings": settings_key("scan", config.scan, {"a": Fraction(1, 3), "b": 1}, (1.5, None)),
        }))
        """,
        str(video),
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert json.loads(out) == here
    # a renamed copy of the same content keeps its key (finished work survives a move)
    moved = tmp_path / "renamed.mkv"
    moved.write_bytes(video.read_bytes())
    assert WorkDir.video_key(moved) == here["video"]


def test_a_changed_setting_or_content_gives_a_new_key(tmp_path: Path) -> None:
    config = Config()
    base = settings_key("scan", config.scan)
    assert settings_key("scan", config.scan) == base
    assert settings_key("scan", replace(config.scan, min_face=13)) != base
    assert settings_key("scan", replace(config.scan, score_threshold=0.5000001)) != base
    assert settings_key("crops", config.scan) != base
    # equal fields in different sections do not collide; 1 and 1.0 and "1" are different settings
    assert settings_key(1) != settings_key(1.0) != settings_key("1")
    arr = np.arange(6, dtype=np.float32)
    assert settings_key(arr) != settings_key(arr.reshape(2, 3))
    assert settings_key(arr) != settings_key(arr.astype(np.float64))
    with pytest.raises(TypeError, match="cannot hash"):
        settings_key(object())

    # video content: one changed byte in a sampled block, or a different size, changes the key
    big = bytearray(np.random.default_rng(1).integers(0, 256, 4_000_000, dtype=np.uint8).tobytes())
    a = tmp_path / "a.bin"
    a.write_bytes(big)
    key = WorkDir.video_key(a)
    big[-1] ^= 0xFF  # the last block is always sampled
    a.write_bytes(big)
    assert WorkDir.video_key(a) != key
    a.write_bytes(big + b"\0")
    assert WorkDir.video_key(a) not in (key,)


def test_artifacts_round_trip_and_has_only_accepts_complete_ones(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path / "work")
    key = settings_key("x")
    path = wd.artifact("search", key, "unit-3.npz")
    assert path.parent.is_dir() and not wd.has("search", key, "unit-3.npz")
    latents = np.random.default_rng(2).standard_normal((5, 8, 16)).astype(np.float32)
    save_arrays(path, latents=latents, frames=np.arange(5))
    assert wd.has("search", key, "unit-3.npz")
    back = load_arrays(path)
    assert back["latents"].dtype == np.float32 and np.array_equal(back["latents"], latents)
    assert back["frames"].tolist() == [0, 1, 2, 3, 4]

    # written with the usual permissions (not the owner-only mode of temporary files)
    assert path.stat().st_mode & 0o777 == 0o666 & ~_current_umask()

    meta = wd.artifact("scan", key, "tracks.json")
    save_json(meta, {"fps": Fraction(30000, 1001), "path": Path("/x"), "n": np.int64(3)})
    assert load_json(meta) == {"fps": "30000/1001", "path": "/x", "n": 3}

    with pytest.raises(TypeError, match="pickles"):
        save_arrays(wd.artifact("scan", key, "bad.npz"), x=np.array([{"a": 1}], dtype=object))
    assert not wd.has("scan", key, "bad.npz")
    with pytest.raises(ValueError, match="plain file name"):
        wd.artifact("scan", "../escape", "x.json")


def test_a_failed_write_keeps_the_previous_artifact(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path)
    path = wd.artifact("compose", "k", "part.mkv")
    path.write_bytes(b"old complete part")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert path.read_bytes() == b"old complete part"
    assert sorted(p.name for p in path.parent.iterdir()) == ["part.mkv"]


def test_a_killed_writer_leaves_nothing_has_accepts(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path / "work")
    proc = _python(
        """
        import sys
        from pipeline.files import atomic_path
        from pipeline.run.workdir import WorkDir
        wd = WorkDir(sys.argv[1])
        with atomic_path(wd.artifact("search", "k", "unit.npz")) as tmp, tmp.open("wb") as f:
            f.write(b"x" * 1000)
            f.flush()
            print("writing", flush=True)
            sys.stdin.read()  # until killed: never a time a slow machine could outlast
        """,
        str(wd.root),
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    directory = wd.root / "search" / "k"
    leftovers = list(directory.iterdir())
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 1000  # the half-written temporary
    assert not wd.has("search", "k", "unit.npz")
    assert not wd.has("search", "k", leftovers[0].name)
    assert wd.clean_temporaries() == 1
    assert list(directory.iterdir()) == []


def test_default_workdir_sits_beside_the_output(tmp_path: Path) -> None:
    assert default_workdir(tmp_path / "out.mkv") == tmp_path / "out.mkv.work"
    assert default_workdir(tmp_path / "out.mkv", tmp_path / "w") == tmp_path / "w"
    wd = WorkDir(default_workdir(tmp_path / "sub" / "out.mkv"))
    assert wd.root.is_dir()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
