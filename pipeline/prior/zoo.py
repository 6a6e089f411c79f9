"""The model zoo (configs/models.yaml), the local model cache, and the API the pipeline calls.

    resolve_model(name_or_path) -> Path          a file on disk (never downloads)
    fetch_model(name) -> Path                     download (resume, verify) into the cache
    load_generator(name_or_path, device, dtype)   a ready Generator

The cache is `$REEL_CACHE/models` (default `~/.cache/reel/models`). A downloaded checkpoint is
converted once to our safetensors format beside it (`<name>.safetensors`), which later loads use.
`random:RES[:SEED]` names a seeded random generator (not a face model) for offline demos and tests.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.errors import CheckpointError, ConfigError, DownloadError, ModelNotAvailableError

if TYPE_CHECKING:
    import torch

    from pipeline.prior.stylegan2 import Generator

log = logging.getLogger(__name__)

ZOO_FILE = Path(__file__).resolve().parents[2] / "configs" / "models.yaml"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    url: str | None  # None: no direct download (the homepage says how to get it)
    filename: str  # file name in the cache
    format: str  # nvidia-pt, nvidia-tf, rosinality
    resolution: int
    size: int | None = None  # bytes, where known
    sha256: str | None = None  # where known; otherwise the file is verified by loading it
    homepage: str = ""
    license: str = ""


def cache_dir() -> Path:
    root = os.environ.get("REEL_CACHE")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "reel" / "models"


def load_zoo(path: Path | None = None) -> dict[str, ModelEntry]:
    path = ZOO_FILE if path is None else path
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the model list: {exc}") from exc
    fields = set(ModelEntry.__dataclass_fields__) - {"name"}
    out = {}
    for name, spec in (data.get("models") or {}).items():
        if not isinstance(spec, dict) or set(spec) - fields:
            raise ConfigError(f"{path}: model {name}: unknown keys {sorted(set(spec) - fields)}")
        try:
            out[name] = ModelEntry(name=name, **spec)
        except TypeError as exc:
            raise ConfigError(f"{path}: model {name}: {exc}") from exc
    return out


def model_paths(entry: ModelEntry) -> tuple[Path, Path]:
    """(downloaded original, converted safetensors) in the cache."""
    d = cache_dir()
    return d / entry.filename, d / f"{entry.name}.safetensors"


def _entry(name: str) -> ModelEntry:
    zoo = load_zoo()
    if name not in zoo:
        raise ModelNotAvailableError(
            f"{name}: not a file and not a model in {ZOO_FILE.name} (known: {', '.join(sorted(zoo))})"
        )
    return zoo[name]


def _not_available(entry: ModelEntry, why: str) -> ModelNotAvailableError:
    original, _ = model_paths(entry)
    if entry.url:
        how = f"download {entry.url} and put it at {original} (or `reel models fetch {entry.name}` online)"
    else:
        how = f"get it from {entry.homepage or 'its authors'} and put it at {original}"
    return ModelNotAvailableError(f"model {entry.name} is not in the cache ({why}): {how}")


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """The file for a path or a zoo name (its converted cache file if there is one). Never downloads."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.suffix or os.sep in str(name_or_path):
        raise CheckpointError(path, "no such file")
    entry = _entry(str(name_or_path))
    original, converted = model_paths(entry)
    if converted.is_file():
        return converted
    if original.is_file():
        return original
    raise _not_available(entry, "not downloaded yet")


def fetch_model(name: str, *, progress: bool | None = None, convert: bool = True) -> Path:
    """Download a zoo model into the cache (resuming, verifying), then convert it to our format."""
    from pipeline.prior.download import download, sha256_file

    entry = _entry(name)
    original, converted = model_paths(entry)
    if original.is_file() and not converted.is_file():
        _check_placed_file(entry, original)  # put there by hand: verify before trusting it
    if not original.is_file():
        if entry.url is None:
            raise _not_available(entry, "it has no direct download")
        try:
            download(entry.url, original, sha256=entry.sha256, size=entry.size, progress=progress)
        except DownloadError as exc:
            if "SHA-256" in str(exc) or "bytes, expected" in str(exc):
                raise
            raise _not_available(entry, str(exc)) from exc
        if entry.sha256 is None:
            log.warning("%s has no published SHA-256; downloaded file's is %s", name, sha256_file(original))
    if convert and not converted.is_file():
        from pipeline.prior.checkpoint import convert_checkpoint

        try:
            convert_checkpoint(original, converted)
        except CheckpointError:
            # a download that does not load is not kept: it would be picked up as valid next time
            original.replace(original.with_name(original.name + ".bad"))
            raise
    return converted if converted.is_file() else original


def load_generator(
    name_or_path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = "float32",
) -> Generator:
    """A Generator on `device` in `dtype`, frozen, in eval mode. Zoo models must be in the cache."""
    import torch

    from pipeline.prior.checkpoint import load_checkpoint, prepare

    if isinstance(dtype, str):
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"prior dtype {dtype!r}: expected float32 or bfloat16")
        dtype = getattr(torch, dtype)
    assert isinstance(dtype, torch.dtype)
    spec = str(name_or_path)
    if spec.startswith("random:"):
        G = _random_from_spec(spec)
    else:
        path = resolve_model(name_or_path)
        entry, converted = _maybe_converted(path)
        if entry is not None:
            _check_placed_file(entry, path)
        G, kind = load_checkpoint(path)
        if converted is not None and kind != "reel" and not converted.exists():
            # convert a zoo original once: later loads read the fast safetensors file
            from pipeline.prior.cache_format import save_generator

            save_generator(G, converted, source=f"{kind}:{path.name}")
    return prepare(G, device, dtype)


def _check_placed_file(entry: ModelEntry, path: Path) -> None:
    """A zoo original in the cache must match the published size and SHA-256, where known."""
    from pipeline.prior.download import sha256_file

    if entry.size is not None and path.stat().st_size != entry.size:
        raise CheckpointError(
            path, f"{path.stat().st_size} bytes, the zoo says {entry.size}: delete it, fetch again"
        )
    if entry.sha256 is not None and sha256_file(path) != entry.sha256.lower():
        raise CheckpointError(
            path, f"SHA-256 differs from the zoo's ({entry.sha256}): delete it and fetch again"
        )


def _maybe_converted(path: Path) -> tuple[ModelEntry | None, Path | None]:
    """The converted cache file for a downloaded zoo original, if `path` is one."""
    if path.parent != cache_dir():
        return None, None
    for entry in load_zoo().values():
        original, converted = model_paths(entry)
        if original == path:
            return entry, converted
    return None, None


def _random_from_spec(spec: str) -> Generator:
    from pipeline.prior.stylegan2 import make_random_generator

    parts = spec.split(":")
    try:
        res = int(parts[1])
        seed = int(parts[2]) if len(parts) > 2 else 0
        if len(parts) > 3:
            raise ValueError
        return make_random_generator(res, seed)
    except (ValueError, IndexError):
        raise ConfigError(f"{spec!r}: expected random:RESOLUTION[:SEED], e.g. random:64:0") from None


def describe(entry: ModelEntry) -> dict[str, Any]:
    original, converted = model_paths(entry)
    state = "ready" if converted.is_file() else "downloaded" if original.is_file() else "not downloaded"
    return {"name": entry.name, "resolution": entry.resolution, "format": entry.format, "state": state}
