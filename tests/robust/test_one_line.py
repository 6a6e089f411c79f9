"""Failures read as one line naming the user's file; locks; verified artifacts."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import errors
from pipeline.errors import DecodeError, EncodeError, LockedError, one_line
from pipeline.files import save_arrays


def test_a_temporary_part_is_replaced_by_the_users_output() -> None:
    exc = EncodeError(
        Path("/films/.reel.part0000.mov"),
        'ffmpeg exited with status 1; ffmpeg said:\n[libx264 @ 0x5] Unable to parse option value "gbr"\n'
        "Error initializing output stream 0:0 -- Error while opening encoder for output stream #0:0 - maybe "
        "incorrect parameters such as bit_rate, rate, width or height",
    )
    line = one_line(exc, input="/films/in.mkv", output="/films/reel.mp4")
    assert "\n" not in line and line.startswith("/films/reel.mp4: ffmpeg exited with status 1")
    assert "part0000" not in line and 'Unable to parse option value "gbr"' in line


def test_work_directory_paths_and_input_errors() -> None:
    exc = DecodeError(Path("/films/reel.mp4.work/compose/abc/part-00000000.mov"), "unreadable")
    assert one_line(exc, input="/films/in.mkv", output="/films/reel.mp4") == "/films/in.mkv: unreadable"


def test_a_failed_unit_names_the_users_file() -> None:
    exc = errors.JobError("scan segment [0, 240) failed: ValueError: bad frame")
    line = one_line(exc, input="/films/in.mkv", output="/films/out.mkv")
    assert line == "/films/in.mkv: scan segment [0, 240) failed: ValueError: bad frame"
    assert one_line(errors.ConfigError("io.crf=99: must be between 0 and 51"), input="x") == (
        "io.crf=99: must be between 0 and 51"
    )


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_full_disk_is_named_with_the_space(code: int) -> None:
    exc = OSError(code, os.strerror(code), "/tmp/x/.tmp-abc")
    assert errors.is_disk_full(exc) and not errors.is_disk_full(OSError(errno.EACCES, "denied"))
    line = one_line(exc, output="/tmp/out.mkv", needed=10**15)
    assert line.startswith("/tmp/out.mkv: the disk is full (") and "needed" in line


def test_a_bug_is_one_line_that_says_so() -> None:
    line = one_line(ValueError("frame 22 follows 20"), input="/films/in.mkv")
    assert (
        line
        == "/films/in.mkv: unexpected ValueError: frame 22 follows 20 (a bug: run with -v for the traceback)"
    )


def test_ray_task_errors_are_unwrapped() -> None:
    class Wrapped(Exception):
        def __init__(self, cause: BaseException) -> None:
            super().__init__("RayTaskError(...)")
            self.cause = cause

    inner = DecodeError(Path("/films/in.mkv"), "3 of 50 frames are damaged")
    assert one_line(Wrapped(inner)) == "/films/in.mkv: 3 of 50 frames are damaged"


def test_cli_prints_one_line_and_a_traceback_only_with_v(tmp_path: Path) -> None:
    src = tmp_path / "clip.mkv"
    src.write_text("not a video")
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "restore",
        str(src),
        "-o",
        str(tmp_path / "o.mkv"),
        "--executor",
        "local",
    ]
    quiet = subprocess.run(cmd, capture_output=True, text=True)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines()[-1].startswith(f"reel: error: {src}: ")
    assert "Traceback" not in quiet.stderr
    loud = subprocess.run([cmd[0], *cmd[1:3], "-v", *cmd[3:]], capture_output=True, text=True)
    assert "Traceback" in loud.stderr and loud.returncode == 2


def test_lock_refuses_a_second_process_and_takes_over_a_dead_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.run import lock

    out = tmp_path / "o.mkv"
    monkeypatch.setenv("REEL_LOCK_DIR", str(tmp_path / "locks"))  # undone after the test, pass or fail
    env = dict(os.environ)
    # The holder keeps the lock until its stdin closes (never for a fixed time a slow machine outlasts).
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.run import lock; lock.acquire(sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"process {holder.pid}"):
            lock.acquire(out)
    finally:
        holder.kill()
        holder.wait()
    try:
        lock.acquire(out, tmp_path / "o.mkv.work")  # the dead holder's lock is taken over
        assert lock.holds(out)
        lock.acquire(out)  # re-entrant in one process
    finally:
        lock.release(out, tmp_path / "o.mkv.work")
    assert not lock.holds(out)


def test_workdir_redoes_what_does_not_verify(tmp_path: Path) -> None:
    import numpy as np

    from pipeline.run.workdir import WorkDir

    wd = WorkDir(tmp_path / "w")
    good = wd.artifact("scan", "k", "scan.npz")
    save_arrays(good, a=np.arange(1000))
    assert wd.has("scan", "k", "scan.npz")
    good.write_bytes(good.read_bytes()[:300])  # cut short, under its final name
    assert not wd.has("scan", "k", "scan.npz") and not good.exists()
    faces = wd.artifact("search", "k", "track-000001.faces.npy")
    np.save(faces, np.zeros((4, 16, 16, 3), np.float16))
    assert wd.has("search", "k", faces.name)
    faces.write_bytes(faces.read_bytes()[:500])
    assert not wd.has("search", "k", faces.name)
    part = wd.artifact("compose", "k", "part-00000000.mov")
    part.write_bytes(b"\0" * 1000)
    assert not wd.has("compose", "k", "part-00000000.mov")
    stray = wd.artifact("compose", "k", "x").with_name(".part-1.partial.mov")
    stray.write_bytes(b"x")
    assert wd.clean_temporaries() == 1 and not stray.exists()


def test_exit_codes_are_kept() -> None:
    assert errors.LockedError(Path("x"), "busy").exit_code == 2
