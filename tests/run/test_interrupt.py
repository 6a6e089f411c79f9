"""Ctrl-C while the embedded Ray starts: exit 130, one line, and no Ray process left behind (issue 22)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.media import make_clip


def _processes_naming(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if (
                text in cmdline.read_bytes().decode(errors="replace")
                and int(cmdline.parent.name) != os.getpid()
            ):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_ctrl_c_while_ray_starts_leaves_no_ray_process_and_no_output(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "in.mp4", frames=5)
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    ray_marker = str(temp / "session")  # every process of this run's embedded Ray names its session dir
    out = tmp_path / "out.mp4"
    cmd = [
        str(Path(sys.executable).parent / "reel"),
        "restore",
        str(clip),
        "-o",
        str(out),
        "--set",
        f"run.temp_dir={temp}",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _processes_naming(ray_marker) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before Ray started: {proc.communicate()[1]}"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("reel: interrupted;")
    time.sleep(2)
    assert _processes_naming(ray_marker) == []
    assert not out.exists()
    shutil.rmtree(temp, ignore_errors=True)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]
