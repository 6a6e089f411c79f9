"""The ground floor: atomic files, verified artifacts, content keys, model files inside packages.

Imports only `pipeline.errors` of the project.

Every durable file the pipeline writes goes through `atomic_path` (a temporary name in the same
directory, fsynced and renamed into place), so a killed writer leaves only a file with a temporary
name (`TMP_MARK`); `is_complete` checks that a file under its final name reads back. Artifacts
are npz (arrays) and JSON (everything else): never pickles, so a file from someone else cannot run
code.

Keys: `file_key` is the content key of one plain file (size and sampled blocks), `settings_key` a
stable hash of exactly the settings a result depends on. The key of an input video, which may be an
image sequence, is `pipeline.run.workdir.WorkDir.video_key` (the sequence dispatch lives above).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import importlib.util
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from pipeline.errors import ModelNotAvailableError

# Bumped when the layout or the meaning of artifacts changes: every key changes with it.
SCHEMA_VERSION = 1
# file_key samples this many blocks of this size (plus the file size): fast on multi-GB files and
# still different for any two real videos (headers, first and last GOPs are always read).
_SAMPLE_BLOCKS = 16
_BLOCK_SIZE = 1 << 16
TMP_MARK = ".tmp-"  # prefix of every temporary name atomic_path makes
KEY_LENGTH = 20  # hex digits of a key (80 bits)

# A value JSON holds: what `save_json` writes (after converting) and `_canonical` hashes.
JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None


def file_key(path: str | Path) -> str:
    """Content key of a plain file: its size and a hash of evenly spaced sampled blocks.

    Independent of the file's name, location and modification time, so a copied or renamed
    file keeps its key; any edit that changes the size or a sampled block changes it.
    """
    path = Path(path)
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


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed to `path`.

    On an exception (or a kill) the temporary file is removed (or left with a temporary name that
    a `TMP_MARK` name that the work directory never accepts); an existing `path` is never truncated.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TMP_MARK}{path.name}.", dir=path.parent)
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


def save_json(path: str | Path, obj: object) -> None:
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
        # Any: numpy's stub lets `**` arrays land on `allow_pickle: bool` (the names never clash)
        payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
        np.savez(f, **payload)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read an npz written by `save_arrays` fully into memory (pickles are refused)."""
    with np.load(Path(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def is_complete(path: str | Path) -> bool:
    """A stored data artifact reads back completely: not empty, npz a whole zip archive, JSON
    parses, .npy holds every byte its header declares. Other suffixes only need to be non-empty
    (encoded video is checked above this floor, by `pipeline.io.verify`)."""
    path = Path(path)
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
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return True


def package_file(package: str, relative: str, what: str, install_hint: str) -> Path:
    """A data file (`what`, e.g. "face detector model") inside an installed package, found without
    importing the package; ModelNotAvailableError naming the package or the file when it is not there."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(f"{what}: package {package!r} is not installed; {install_hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ModelNotAvailableError(f"{what}: {path} is missing; {install_hint}")
    return path


# ---------------------------------------------------------------------- helpers


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


def _canonical(value: object) -> JSONValue:
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


def _jsonable(obj: object) -> JSONValue:

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
