"""A restricted unpickler for NVIDIA's network pickles that never runs code from the file.

Python's pickle can call any importable function while loading; NVIDIA's pickles rely on that (their
`torch_utils.persistence` records carry module source code that the official loader `exec`s, and TF
pickles `exec` their `build_module_src`). Here `find_class` answers only a short allow-list, and the
two NVIDIA record types are rebuilt as inert data holders:

- `torch_utils.persistence._reconstruct_persistent_obj(meta)` -> PersistentRecord(meta): the class name,
  the (never executed) module source and the module state (`_parameters`, `_buffers`, `_modules`, init
  arguments, attributes).
- `dnnlib.tflib.network.Network` -> TFNetworkRecord: its pickled state (static kwargs, components and
  the variables as (name, numpy array) pairs).

Tensors come back through torch's own `weights_only` loader; numpy arrays through numpy's array
reconstruction (no object arrays). Any other global is refused with UnsafeCheckpointError before it is
imported, so a malicious file cannot make anything run.
"""

from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pipeline.errors import CheckpointError, UnsafeCheckpointError

if TYPE_CHECKING:
    import numpy as np
    import torch


class PersistentRecord:
    """What NVIDIA's persistence decorator pickled for one module, without its code being run."""

    def __init__(self, meta: dict[str, Any]) -> None:
        if not isinstance(meta, dict):
            raise pickle.UnpicklingError("persistent object record is not a dict")
        self.meta = meta

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name", ""))

    @property
    def state(self) -> dict[str, Any]:
        state = self.meta.get("state") or {}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"state of {self.class_name} is not a dict")
        return state

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name})"


class TFNetworkRecord:
    """The pickled state of a dnnlib.tflib.network.Network (TensorFlow StyleGAN2)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("TF network state is not a dict")
        self.state = state

    def __repr__(self) -> str:
        return f"TFNetworkRecord({self.state.get('name')})"


class EasyDictRecord(dict[str, Any]):
    """dnnlib.util.EasyDict (a dict with attribute access) as a plain dict."""


class _Refused(Exception):
    """Raised inside the unpickler; load_restricted turns it into UnsafeCheckpointError naming the file."""


def _load_storage(data: object) -> object:
    import torch

    if not isinstance(data, bytes | bytearray):
        raise pickle.UnpicklingError("tensor storage record does not hold bytes")
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise _Refused(f"an embedded tensor record asks for more than tensors ({str(exc)[:200]})") from exc


def _rebuild_tensor(
    storage: object, offset: int, size: Iterable[int], stride: Iterable[int], *rest: object
) -> torch.Tensor:
    import torch

    if not isinstance(storage, torch.storage.TypedStorage | torch.UntypedStorage):
        raise pickle.UnpicklingError("tensor record without a storage")
    # requires_grad and backward hooks from the file are dropped on purpose.
    return torch._utils._rebuild_tensor_v2(storage, int(offset), tuple(size), tuple(stride), False, {})


def _rebuild_parameter(data: object, requires_grad: bool = False, *rest: object) -> torch.Tensor:
    import torch

    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter record without a tensor")
    return data  # parameters are loaded as plain tensors; hooks and state are dropped


def _numpy_reconstruct(subtype: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    import numpy as np

    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("numpy record of an unexpected array type")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _numpy_dtype(spec: str | np.dtype, align: bool = False, copy: bool = False) -> np.dtype:
    import numpy as np

    dt = np.dtype(spec, align, copy)
    if dt.hasobject:
        raise _Refused("numpy object arrays are not allowed in a checkpoint")
    return dt


def _numpy_scalar(dtype: object, data: bytes | None = None) -> np.generic:
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("unsupported numpy scalar record")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _allowed() -> dict[tuple[str, str], Callable[..., object] | type]:
    import numpy as np
    import torch

    table: dict[tuple[str, str], Callable[..., object] | type] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentRecord,
        ("dnnlib.util", "EasyDict"): EasyDictRecord,
        ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage,
        ("torch", "device"): torch.device,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _numpy_dtype,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = _numpy_reconstruct
        table[(mod, "scalar")] = _numpy_scalar
    for name in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
        table[("torch", name)] = getattr(torch, name)
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], path: Path) -> None:
        super().__init__(file)
        self._path = path
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Callable[..., object] | type:
        try:
            return self._table[(module, name)]
        except KeyError:
            raise _Refused(
                f"the pickle asks for {module}.{name}, which a network checkpoint never needs; refusing to "
                "load it (loading it could run code)"
            ) from None

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids are not used by network pickles")


def load_restricted(path: str | Path) -> Any:
    """Unpickle `path` with the allow-list; errors name the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except _Refused as exc:
        raise UnsafeCheckpointError(path, str(exc)) from None
    except EOFError as exc:
        raise CheckpointError(path, "the file ends early (truncated or partial download)") from exc
    except pickle.UnpicklingError as exc:
        if "truncated" in str(exc):
            raise CheckpointError(path, "the file ends early (truncated or partial download)") from exc
        raise CheckpointError(path, f"not a readable network pickle ({exc})") from exc
    except (
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        RuntimeError,
        OverflowError,
        MemoryError,
    ) as exc:
        raise CheckpointError(path, f"not a readable network pickle ({type(exc).__name__}: {exc})") from exc
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc}") from exc


# The allow-list's names, known without importing torch or numpy (the preflight scan uses them);
# equal to the keys of `_allowed()`, which tests check along with pinning both.
ALLOWED_NAMES: frozenset[tuple[str, str]] = frozenset(
    {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"),
        ("dnnlib.util", "EasyDict"),
        ("dnnlib.tflib.network", "Network"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch.storage", "_load_from_bytes"),
        ("torch", "device"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *(
            (mod, name)
            for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")
        ),
        *(
            ("torch", n)
            for n in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool")
        ),
    }
)


def allowed_globals() -> frozenset[tuple[str, str]]:
    """The (module, name) pairs a checkpoint pickle may ask for: the whole allow-list, pinned by tests."""
    return frozenset(_allowed())


def scan_pickle(path: str | Path) -> None:
    """Check a pickle's structure and every global it names against the allow-list, running nothing.

    Cheap enough for a preflight check (opcodes are walked, not executed; tensor bytes are skipped):
    a truncated file or a refused global fails in seconds, before any frame is scanned.
    """
    import pickletools

    path = Path(path)
    allowed = ALLOWED_NAMES
    strings: list[str] = []  # the last two strings pushed (STACK_GLOBAL's module and name)
    memo: dict[int, str] = {}  # memoised strings by memo index
    memo_count = 0
    last_string = False
    try:
        with open(path, "rb") as raw:
            f = _Bounded(raw, path.stat().st_size)
            for opcode, arg, _ in pickletools.genops(f):  # type: ignore[arg-type]
                name = opcode.name
                was_string, last_string = last_string, False
                if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                    strings = [*strings[-1:], str(arg)]
                    last_string = True
                elif name == "MEMOIZE":
                    if was_string:
                        memo[memo_count] = strings[-1]
                    memo_count += 1
                    last_string = was_string
                elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    if was_string:
                        memo[int(arg or 0)] = strings[-1]
                    last_string = was_string
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    if int(arg or 0) in memo:
                        strings = [*strings[-1:], memo[int(arg or 0)]]
                        last_string = True
                elif name == "GLOBAL":
                    module, _, attr = str(arg).partition(" ")
                    _check_global(path, allowed, module, attr)
                elif name == "STACK_GLOBAL":
                    if len(strings) < 2:
                        raise UnsafeCheckpointError(path, "the pickle names a global it builds at load time")
                    _check_global(path, allowed, strings[-2], strings[-1])
                if name == "STOP":
                    return
    except UnsafeCheckpointError:
        raise
    except (ValueError, EOFError, MemoryError, OverflowError) as exc:
        raise CheckpointError(
            path, f"the file ends early or is damaged (truncated or partial download): {exc}"
        ) from exc
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc}") from exc
    raise CheckpointError(path, "the file ends early (truncated or partial download)")


class _Bounded:
    """A file whose reads never ask for more than it holds: a pickle that declares a 4 EiB string
    fails as truncated instead of allocating the declared size."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f, self._size = f, size

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return bytes(self._f.read())
        return bytes(self._f.read(max(0, min(n, self._size - self._f.tell()))))

    def readline(self) -> bytes:
        return bytes(self._f.readline())

    def tell(self) -> int:
        return int(self._f.tell())


def _check_global(path: Path, allowed: frozenset[tuple[str, str]], module: str, name: str) -> None:
    if (module, name) not in allowed:
        raise UnsafeCheckpointError(
            path,
            f"the pickle asks for {module}.{name}, which a network checkpoint never needs; refusing to "
            "load it (loading it could run code)",
        )
