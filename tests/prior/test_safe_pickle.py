"""The restricted unpickler against hostile checkpoints, and its allow-list pinned.

Every payload is built from raw pickle opcodes (or by pickling an object whose reduction names the
callable), written to a file, then given to both the loader (`load_restricted`, what `reel` runs)
and the preflight scan (`scan_pickle`, which walks the opcodes without running them). Each must be
refused, name the file, run nothing (a marker file stays absent) and allocate nothing large.
"""

from __future__ import annotations

import collections
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pipeline.errors import CheckpointError, UnsafeCheckpointError
from pipeline.prior import safe_pickle
from pipeline.prior.checkpoint import load_checkpoint

# The whole allow-list. Widening it (builtins.*, torch.*, os.*: anything that can run or import
# code) must be a deliberate change to this test, reviewed as such.
PINNED = {
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
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    *(("torch", n) for n in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool")),
}

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
TUPLE1, TUPLE2, REDUCE, STOP, STACK_GLOBAL = b"\x85", b"\x86", b"R", b".", b"\x93"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(s: str) -> bytes:
    raw = s.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def call(fn: bytes, *args: bytes) -> bytes:
    assert len(args) in (1, 2)
    return fn + b"".join(args) + (TUPLE1 if len(args) == 1 else TUPLE2) + REDUCE


def _payloads(marker: Path) -> dict[str, bytes]:
    shell = text(f"open({str(marker)!r}, 'w').write('x')")
    touch = text(f"touch {marker}")
    return {
        "eval": PROTO2 + call(glob("builtins", "eval"), shell) + STOP,
        "exec": PROTO2 + call(glob("builtins", "exec"), shell) + STOP,
        "compile": PROTO2 + call(glob("builtins", "compile"), shell, text("x")) + STOP,
        "getattr": PROTO2
        + call(glob("builtins", "getattr"), glob("builtins", "object"), text("__subclasses__"))
        + STOP,
        "__import__": PROTO2 + call(glob("builtins", "__import__"), text("os")) + STOP,
        "open": PROTO2 + call(glob("builtins", "open"), text(str(marker)), text("w")) + STOP,
        "os.system": PROTO2 + call(glob("os", "system"), touch) + STOP,
        "posix.system": PROTO2 + call(glob("posix", "system"), touch) + STOP,
        "subprocess": PROTO2 + call(glob("subprocess", "getoutput"), touch) + STOP,
        "importlib": PROTO2 + call(glob("importlib", "import_module"), text("os")) + STOP,
        "torch.load": PROTO2 + call(glob("torch", "load"), text(str(marker))) + STOP,
        "torch.serialization.load": PROTO2
        + call(glob("torch.serialization", "load"), text(str(marker)))
        + STOP,
        "torch.hub": PROTO2 + call(glob("torch.hub", "load"), text("x/y"), text("m")) + STOP,
        "torch.jit": PROTO2 + call(glob("torch.jit", "load"), text(str(marker))) + STOP,
        "numpy.load": PROTO2 + call(glob("numpy", "load"), text(str(marker))) + STOP,
        "pickle.loads": PROTO2 + call(glob("pickle", "loads"), text("x")) + STOP,
        # getattr(__import__("os"), "system")("touch marker"): a chain of reductions
        "nested-reduce": PROTO2
        + call(
            call(
                glob("builtins", "getattr"), call(glob("builtins", "__import__"), text("os")), text("system")
            ),
            touch,
        )
        + STOP,
        # protocol 4: the global's names come from the stack, not the opcode
        "stack-global": PROTO4
        + text("builtins")
        + text("eval")
        + STACK_GLOBAL
        + shell
        + TUPLE1
        + REDUCE
        + STOP,
        # ... and from the memo: "builtins" stored, popped, fetched back later
        "memo-global": PROTO4
        + text("builtins")
        + b"\x94"  # MEMOIZE -> memo[0]
        + b"0"  # POP
        + b"h\x00"  # BINGET 0
        + text("exec")
        + STACK_GLOBAL
        + shell
        + TUPLE1
        + REDUCE
        + STOP,
        # an allowed container holding a refused call deep inside
        "inside-ordereddict": PROTO2
        + glob("collections", "OrderedDict")
        + b")R"  # EMPTY_TUPLE, REDUCE -> OrderedDict()
        + text("G_ema")
        + call(glob("os", "system"), touch)
        + b"s"  # SETITEM
        + STOP,
    }


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.mark.parametrize("name", sorted(_payloads(Path("/x"))))
def test_code_execution_payloads_are_refused(tmp_path: Path, marker: Path, name: str) -> None:
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(_payloads(marker)[name])
    with pytest.raises(UnsafeCheckpointError) as loaded:
        safe_pickle.load_restricted(path)
    assert str(path) in str(loaded.value) and "refusing" in str(loaded.value)
    with pytest.raises(UnsafeCheckpointError) as scanned:
        safe_pickle.scan_pickle(path)  # the preflight check refuses it too, running nothing
    assert str(path) in str(scanned.value)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


class _Reduces:
    """An object whose pickle calls `fn(*args)` on load."""

    def __init__(self, fn: Callable[..., object], *args: object) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (self.fn, self.args)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickled_torch_load_is_refused_at_every_protocol(tmp_path: Path, marker: Path, protocol: int) -> None:
    path = tmp_path / "torchload.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Reduces(torch.load, str(marker))}, protocol=protocol))
    with pytest.raises(UnsafeCheckpointError, match="torch"):
        safe_pickle.load_restricted(path)
    with pytest.raises(UnsafeCheckpointError, match="torch"):
        safe_pickle.scan_pickle(path)


def test_embedded_storage_bytes_that_reduce_are_refused(tmp_path: Path, marker: Path) -> None:
    # torch.storage._load_from_bytes is allowed; the bytes it is given must still be tensors only.
    inner = pickle.dumps(_Reduces(os.system, f"touch {marker}"), protocol=2)
    path = tmp_path / "storage.pkl"
    path.write_bytes(
        PROTO2 + call(glob("torch.storage", "_load_from_bytes"), b"C" + bytes([len(inner)]) + inner) + STOP
    )
    if len(inner) > 255:
        pytest.skip("payload too long for SHORT_BINBYTES")
    with pytest.raises(CheckpointError):
        safe_pickle.load_restricted(path)
    assert not marker.exists()


def _fast(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    with pytest.raises(CheckpointError):
        fn()
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "payload",
    [
        PROTO4 + b"\x8e" + (2**62).to_bytes(8, "little") + b"abc" + STOP,  # BINBYTES8 of 4 EiB
        PROTO4 + b"\x8d" + (2**62).to_bytes(8, "little") + b"abc" + STOP,  # BINUNICODE8 of 4 EiB
        PROTO2 + b"X" + (2**32 - 1).to_bytes(4, "little") + b"abc" + STOP,  # BINUNICODE of 4 GiB
        PROTO4 + b"\x96" + (2**62).to_bytes(8, "little") + b"abc" + STOP,  # BYTEARRAY8
        PROTO2 + b"B" + (2**31 - 1).to_bytes(4, "little") + b"x" * 16 + STOP,  # BINBYTES of 2 GiB
    ],
    ids=["binbytes8", "binunicode8", "binunicode", "bytearray8", "binbytes"],
)
def test_huge_declared_sizes_fail_fast(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "huge.pkl"
    path.write_bytes(payload)
    assert _fast(lambda: safe_pickle.load_restricted(path)) < 5
    assert _fast(lambda: safe_pickle.scan_pickle(path)) < 5


def test_huge_array_shape_is_an_error_not_an_allocation(tmp_path: Path) -> None:
    import numpy as np

    class HugeArray:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (np._core.multiarray._reconstruct, (np.ndarray, (2**46,), b"b"))

    path = tmp_path / "array.pkl"
    path.write_bytes(pickle.dumps({"w": HugeArray()}, protocol=2))
    assert _fast(lambda: safe_pickle.load_restricted(path)) < 5


def test_huge_tensor_size_over_a_small_storage_is_an_error(tmp_path: Path) -> None:
    storage = torch.zeros(4).untyped_storage()

    class HugeTensor:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (
                torch._utils._rebuild_tensor_v2,
                (storage, 0, (2**40,), (1,), False, collections.OrderedDict()),
            )

    path = tmp_path / "tensor.pkl"
    path.write_bytes(pickle.dumps({"w": HugeTensor()}, protocol=2))
    assert _fast(lambda: safe_pickle.load_restricted(path)) < 5


def test_truncated_pickle_is_named_truncated_by_the_scan(tmp_path: Path) -> None:
    data = pickle.dumps({"a": list(range(1000)), "b": collections.OrderedDict(x=1)}, protocol=4)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="ends early"):
        safe_pickle.scan_pickle(path)
    with pytest.raises(CheckpointError, match="ends early"):
        safe_pickle.load_restricted(path)


def test_a_benign_pickle_passes_the_scan(tmp_path: Path) -> None:
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps({"a": collections.OrderedDict(x={1, 2}), "t": "text"}, protocol=4))
    safe_pickle.scan_pickle(path)  # no error
    assert safe_pickle.load_restricted(path)["a"]["x"] == {1, 2}


def test_allow_list_is_pinned() -> None:
    assert set(safe_pickle.allowed_globals()) == PINNED
    assert set(safe_pickle.ALLOWED_NAMES) == PINNED  # what the preflight scan admits


# Modules whose members can run code, import modules, touch files or the network.
_NEVER = (
    *("builtins", "os", "posix", "nt", "subprocess", "sys", "importlib", "pickle", "runpy", "shutil"),
    *("socket", "ctypes", "types", "codecs", "io", "marshal", "functools", "operator", "code"),
)
_BUILTINS_ALLOWED = {("builtins", "set"), ("builtins", "frozenset")}


def test_allow_list_holds_nothing_that_runs_code() -> None:
    for module, name in safe_pickle.allowed_globals():
        assert not name.startswith("__"), (module, name)
        if module.split(".")[0] in _NEVER:
            assert (module, name) in _BUILTINS_ALLOWED, (module, name)
        if module == "torch":
            assert name in {"device"} or isinstance(getattr(torch, name), torch.dtype), (module, name)
        assert name not in {"eval", "exec", "getattr", "load", "loads", "system", "compile", "open", "apply"}


def test_every_allowed_global_resolves_to_our_stand_in_or_an_inert_type() -> None:
    import numpy as np

    inert = (type, torch.dtype)
    for (module, name), target in safe_pickle._allowed().items():
        own = getattr(target, "__module__", "") == safe_pickle.__name__
        assert own or isinstance(target, inert) or target in (np.ndarray, torch.device), (
            module,
            name,
            target,
        )
