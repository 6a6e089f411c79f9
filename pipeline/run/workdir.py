"""The work directory: every durable result of a run, keyed so that a rerun skips what is done.

Layout: `<root>/<stage>/<key>/<name>`. A key is built by the stage from the input video's content
key (`WorkDir.video_key`) and a hash of exactly the settings its result depends on
(`WorkDir.settings_key`), e.g. `settings_key(video_key, config.scan)`. A changed setting gives a new
key, so only the stages that depend on it are recomputed; the old artifacts stay (they are cheap to
delete by hand and make switching back free).

Artifacts are npz (arrays) and JSON (everything else): never pickles, so a work directory from
someone else cannot run code. Every write goes to a temporary name in the same directory and is
renamed into place after an fsync, so a killed writer leaves only a temporary file, which `has()`
never accepts and `clean_temporaries()` removes. Files made by other writers (encoded video parts)
use `atomic_path()` for the same guarantee.

On a cluster the work directory must be on a filesystem every node sees (NFS, Lustre, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Bumped when the layout or the meaning of artifacts changes: every key changes with it.
SCHEMA_VERSION = 1
# video_key samples this many blocks of this size (plus the file size): fast on multi-GB files and
# still different for any two real videos (headers, first and last GOPs are always read).
_SAMPLE_BLOCKS = 16
_BLOCK_SIZE = 1 << 16
_TMP_MARK = ".tmp-"
KEY_LENGTH = 20  # hex digits of a key (80 bits)


def default_workdir(output: str | Path, workdir: str | Path | None = None) -> Path:
    """The work directory for an output: `workdir` when given, else `<output>.work` beside it."""
    if workdir is not None:
        return Path(workdir)
    output = Path(output)
    return output.with_name(output.name + ".work")


class WorkDir:
    """A directory of durable, atomically written, content-keyed artifacts."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"WorkDir({str(self.root)!r})"

    def __reduce__(self) -> tuple[type[WorkDir], tuple[str]]:
        # Sent to Ray workers as its path only.
        return (WorkDir, (str(self.root),))

    # ------------------------------------------------------------------ keys

    @staticmethod
    def video_key(path: str | Path) -> str:
        """Content key of a file: its size and a hash of evenly spaced sampled blocks.

        Independent of the file's name, location and modification time, so a copied or renamed
        input keeps its finished work; any edit that changes the size or a sampled block changes it.
        """
        path = Path(path)
        from pipeline.io.sequence import is_sequence

        if is_sequence(path):
            return WorkDir.sequence_key(path)
        size = path.stat().st_size
        digest = hashlib.blake2b(digest_size=KEY_LENGTH // 2)
        digest.update(f"reel-video-v{SCHEMA_VERSION}:{size}".encode())
        with path.open("rb") as f:
            if size <= _SAMPLE_BLOCKS * _BLOCK_SIZE:
                digest.update(f.read())
            else:
                last = size - _BLOCK_SIZE
                for i in range(_SAMPLE_BLOCKS):
                    f.seek(last * i // (_SAMPLE_BLOCKS - 1))
                    digest.update(f.read(_BLOCK_SIZE))
        return digest.hexdigest()

    @staticmethod
    def sequence_key(path: str | Path) -> str:
        """Content key of an image sequence: its frame rate, every file's name and size, and the
        content keys of its first, middle and last files."""
        from pipeline.io.sequence import resolve_sequence, sequence_rate

        seq = resolve_sequence(path)
        files = seq.files
        digest = hashlib.blake2b(digest_size=KEY_LENGTH // 2)
        digest.update(f"reel-sequence-v{SCHEMA_VERSION}:{sequence_rate()}:{seq.start}:{seq.count}".encode())
        for f in files:
            digest.update(f"{f.name}:{f.stat().st_size};".encode())
        for f in {files[0], files[len(files) // 2], files[-1]}:
            digest.update(WorkDir.video_key(f).encode())
        return digest.hexdigest()

    @staticmethod
    def settings_key(*parts: object) -> str:
        """Stable hash of dataclasses, mappings, sequences, strings, numbers, paths and arrays.

        The same values give the same key in every process and on every machine (no `hash()`, no
        reprs with addresses); a changed field anywhere gives a different key. Dataclasses are
        hashed with their class name, so two config sections with equal fields do not collide.
        """
        canonical = json.dumps(
            [f"reel-settings-v{SCHEMA_VERSION}", *(_canonical(p) for p in parts)],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=True,
        )
        return hashlib.blake2b(canonical.encode(), digest_size=KEY_LENGTH // 2).hexdigest()

    # ------------------------------------------------------------------ paths

    def artifact(self, stage: str, key: str, name: str) -> Path:
        """Path of one artifact (its directory is created; the file may not exist yet)."""
        for label, part in (("stage", stage), ("key", key), ("name", name)):
            if not part or "/" in part or "\\" in part or part in (".", "..") or part.startswith(_TMP_MARK):
                raise ValueError(f"work directory {label} {part!r} is not a plain file name")
        directory = self.root / stage / key
        directory.mkdir(parents=True, exist_ok=True)
        return directory / name

    def has(self, stage: str, key: str, name: str) -> bool:
        """True when the artifact exists and verifies; one that does not is removed (and redone).

        Writes are atomic, but a disk that filled up, a copy cut short or a writer from an older
        version can still leave a damaged file under a final name: npz files must open as complete
        zip archives, JSON must parse, and encoded video parts must read back with their frames.
        """
        if name.startswith(_TMP_MARK):
            return False
        path = self.root / stage / key / name
        if not path.is_file():
            return False
        if _verifies(path):
            return True
        log.warning("%s: damaged or incomplete; it is removed and redone", path)
        with contextlib.suppress(OSError):
            path.unlink()
        return False

    def clean_temporaries(self) -> int:
        """Remove temporary files left by killed writers (ours and the encoder's hidden partial
        parts); returns how many were removed."""
        removed = 0
        for pattern in (f"{_TMP_MARK}*", ".*.partial.*"):
            for tmp in self.root.rglob(pattern):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    tmp.unlink()
                    removed += 1
        if removed:
            log.info("%s: removed %d temporary file(s) an interrupted run left", self.root, removed)
        return removed

    # ------------------------------------------------------------------ atomic I/O

    # The module functions, also reachable from an instance (`wd.save_json(path, obj)`).

    @staticmethod
    def save_json(path: str | Path, obj: Any) -> None:
        save_json(path, obj)

    @staticmethod
    def load_json(path: str | Path) -> Any:
        return load_json(path)

    @staticmethod
    def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
        save_arrays(path, **arrays)

    @staticmethod
    def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
        return load_arrays(path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed to `path`.

    On an exception (or a kill) the temporary file is removed (or left with a temporary name that
    `WorkDir.has` never accepts); an existing `path` is never truncated.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_MARK}{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes owner-only files; results get the usual permissions
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def save_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (dataclasses, Paths, Fractions and numpy scalars are converted)."""
    text = json.dumps(_jsonable(obj), indent=1, sort_keys=True, allow_nan=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """Write named arrays as an (uncompressed) npz atomically. Object arrays are refused."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; artifacts never hold pickles")
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
        np.savez(f, **payload)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read an npz written by `save_arrays` fully into memory (pickles are refused)."""
    with np.load(Path(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ---------------------------------------------------------------------- helpers


def _verifies(path: Path) -> bool:
    """A stored artifact reads back completely (see WorkDir.has)."""
    import zipfile

    suffix = path.suffix.lower()
    try:
        if path.stat().st_size == 0:
            return False
        if suffix == ".npz":
            with zipfile.ZipFile(path) as z:
                return z.testzip() is None
        if suffix == ".json":
            json.loads(path.read_text())
            return True
        if suffix == ".npy":
            return _npy_complete(path)
        if suffix in (".mov", ".mkv", ".mp4"):
            from pipeline.io.verify import is_complete_video

            return is_complete_video(path)
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return True


def _npy_complete(path: Path) -> bool:
    """The .npy header parses and the file holds every byte its shape and dtype declare."""
    with path.open("rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            return False
        need = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return path.stat().st_size >= need


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform/filesystem.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _canonical(value: object) -> Any:
    """A JSON-able value that identifies `value` exactly (types that could be confused are tagged)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # repr round-trips exactly; json would also print nan/inf, tag them to stay valid JSON
        return value if np.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, enum.Enum):
        return {"__enum__": f"{type(value).__qualname__}.{value.name}"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        body = {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__dataclass__": type(value).__qualname__, "fields": body}
    if isinstance(value, Mapping):
        keys = list(value)
        if not all(isinstance(k, str) for k in keys):
            return {"__items__": sorted(([_canonical(k), _canonical(v)] for k, v in value.items()), key=repr)}
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return {"__set__": sorted((_canonical(v) for v in value), key=repr)}
    if isinstance(value, Fraction):
        return {"__fraction__": f"{value.numerator}/{value.denominator}"}
    if isinstance(value, Path):
        return {"__path__": value.as_posix()}
    if isinstance(value, bytes):
        return {"__bytes__": hashlib.blake2b(value, digest_size=16).hexdigest()}
    if isinstance(value, np.generic):
        return _canonical(value.item())
    if isinstance(value, np.ndarray):
        contiguous = np.ascontiguousarray(value)
        digest = hashlib.blake2b(contiguous.tobytes(), digest_size=16).hexdigest()
        return {"__array__": [contiguous.dtype.str, list(contiguous.shape), digest]}
    raise TypeError(f"settings_key cannot hash a {type(value).__name__}: pass its settings explicitly")


def _jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list | set | frozenset):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Fraction):
        return f"{obj.numerator}/{obj.denominator}"
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON")
