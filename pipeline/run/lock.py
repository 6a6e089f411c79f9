"""One run per output: a lock on the output file and on its work directory.

Two runs writing the same output (or sharing a work directory) would overwrite each other's parts
and temporary files. `acquire(output, workdir)` takes an exclusive `flock` on a small lock file per
path and keeps it until `release` or the end of the process; a second run, in another process,
refuses at once with a LockedError naming the output and the process that holds it.

The lock files live in a directory of their own (`$REEL_LOCK_DIR`, default `<tmp>/reel-locks`),
named by a hash of the resolved path, so nothing appears beside the user's files. The kernel drops
an flock when its process dies, however it dies: the lock of a killed run is free at once, and the
next run takes it over (the log says which dead process held it). The lock is per machine; runs on
different machines writing to one shared directory are not excluded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import LockedError

log = logging.getLogger(__name__)

# Locks this process holds: resolved path -> open file descriptor (re-entrant within the process).
_held: dict[str, int] = {}


def lock_dir() -> Path:
    return Path(os.environ.get("REEL_LOCK_DIR") or Path(tempfile.gettempdir()) / "reel-locks")


def _lock_file(path: Path) -> Path:
    digest = hashlib.blake2b(str(path).encode(), digest_size=10).hexdigest()
    return lock_dir() / f"{digest}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_one(path: Path, label: Path) -> None:
    key = str(path)
    if key in _held:
        return
    directory = lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        directory.chmod(0o1777)  # shared by every user of the machine, like /tmp
    file = _lock_file(path)
    fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        who = f" (process {holder})" if holder else ""
        raise LockedError(
            label, f"another reel run{who} is writing it or its work directory now; wait for it to finish"
        ) from None
    except OSError:
        os.close(fd)
        log.warning("%s: cannot lock %s; running without a lock", label, file)
        return
    previous = _read_holder(fd)
    if previous and previous != os.getpid() and not _pid_alive(previous):
        log.info("%s: taking over the lock of process %d, which is no longer running", label, previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {path}\n".encode(), 0)
    _held[key] = fd


def _read_holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("utf-8", "replace").split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def acquire(output: str | Path, workdir: str | Path | None = None) -> None:
    """Lock `output` (and `workdir` when given) for this process; LockedError if another holds either."""
    output = Path(output)
    paths = [output.resolve()]
    if workdir is not None:
        paths.append(Path(workdir).resolve())
    taken: list[str] = []
    try:
        for p in paths:
            before = str(p) in _held
            _lock_one(p, output)
            if not before and str(p) in _held:
                taken.append(str(p))
    except BaseException:
        for key in taken:
            _unlock(key)
        raise


def release(output: str | Path, workdir: str | Path | None = None) -> None:
    """Drop the locks `acquire` took (a no-op for locks this process does not hold)."""
    _unlock(str(Path(output).resolve()))
    if workdir is not None:
        _unlock(str(Path(workdir).resolve()))


def _unlock(key: str) -> None:
    fd = _held.pop(key, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def holds(output: str | Path) -> bool:
    return str(Path(output).resolve()) in _held


@contextlib.contextmanager
def locked(output: str | Path, workdir: str | Path | None = None) -> Iterator[None]:
    """`with locked(output, workdir):` the run; released however the block ends."""
    acquire(output, workdir)
    try:
        yield
    finally:
        release(output, workdir)
