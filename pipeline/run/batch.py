"""Batches: many inputs from one manifest, restored one after another on one Ray instance.

A manifest is YAML:

    preset: [newsreel]               # optional, for every item (name or file; a string or a list)
    set: {search: {steps: 50}}       # optional, for every item (a mapping, or a list of "k.e.y=value")
    output_dir: restored/            # optional; relative outputs go here (default: beside the manifest)
    items:
      - input: reels/1931-04.mp4     # relative paths are relative to the manifest
        output: 1931-04.mkv          # optional; default <output_dir>/<input stem>.restored.mkv
        preset: cartoon              # optional, after the manifest's presets
        set: ["upscale.scale=4"]     # optional, after the manifest's settings
      - input: interview.mp4
        mode: anonymize              # optional (also manifest-wide): `reel anonymize` for this item

Settings apply in this order: defaults, the command line's --preset, the manifest's presets, the
item's presets, then the command line's --set, the manifest's `set`, the item's `set`. Every item
runs on the same Ray instance (its search actors share the GPUs); an item that fails is reported and
the batch goes on; an item whose output already exists is skipped unless --overwrite (so a batch
that was interrupted can simply be run again). The summary lists every item.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from pipeline.config import Config, apply_overrides, load_config, parse_set_option
from pipeline.errors import ConfigError, InputError, OutputError, PipelineError
from pipeline.run.mode import Mode, RunReport
from pipeline.run.ray_runtime import ray_session
from pipeline.run.restore import RESTORE, executor_of, make_job
from pipeline.run.restore import restore as restore_item

log = logging.getLogger(__name__)

RESTORE_ONLY: Mapping[str, Mode[RunReport]] = MappingProxyType({"restore": RESTORE})  # the default `modes`

_MANIFEST_KEYS = {"preset", "set", "output_dir", "items", "mode"}
_ITEM_KEYS = {"input", "output", "preset", "set", "mode"}


@dataclass(frozen=True)
class BatchItem:
    input: Path
    output: Path
    presets: tuple[str, ...] = ()
    overrides: tuple[dict[str, object], ...] = ()  # nested mappings, applied in order
    where: str = ""  # "MANIFEST: items[3]" for messages
    mode: str = "restore"  # a mode's name, a key of the batch's `modes`


@dataclass(frozen=True)
class ItemResult:
    input: str
    output: str
    status: str  # "done", "failed" or "skipped"
    seconds: float
    error: str | None = None


@dataclass
class BatchReport:
    manifest: str
    items: list[ItemResult] = field(default_factory=list)

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.items if r.status == "failed"]

    def summary(self) -> str:
        """A plain table: status, seconds, input -> output, and the error of each failed item."""
        counts = {s: sum(r.status == s for r in self.items) for s in ("done", "skipped", "failed")}
        lines = [f"batch {self.manifest}: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
        for r in self.items:
            lines.append(f"  {r.status:7} {r.seconds:7.1f}s  {r.input} -> {r.output}")
            if r.error:
                lines.append(f"          {r.error}")
        return "\n".join(lines)


def _as_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: expected a name or a list of names, got {value!r}")


def _as_overrides(value: object, where: str) -> tuple[dict[str, object], ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(parse_set_option(v) for v in value)
    raise ConfigError(f"{where}: expected a mapping or a list of section.key=value, got {value!r}")


def load_manifest(
    path: str | Path, modes: Mapping[str, Mode[RunReport]] = RESTORE_ONLY
) -> tuple[list[BatchItem], tuple[str, ...], tuple[dict[str, object], ...]]:
    """Items of a manifest, and the manifest-wide presets and overrides; errors name file and item.
    `modes`: the modes an item may name, by name."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(path, "manifest not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with an `items` list")
    unknown = sorted(set(data) - _MANIFEST_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_MANIFEST_KEYS))}"
        )
    base = path.parent
    output_dir = base / str(data.get("output_dir") or ".")
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise ConfigError(f"{path}: `items` must be a non-empty list")
    items: list[BatchItem] = []
    for i, raw in enumerate(raw_items):
        where = f"{path}: items[{i}]"
        if isinstance(raw, str):
            raw = {"input": raw}
        if not isinstance(raw, dict) or "input" not in raw:
            raise ConfigError(f"{where}: expected a mapping with an `input`")
        unknown = sorted(set(raw) - _ITEM_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_ITEM_KEYS))}"
            )
        source = base / str(raw["input"])
        mode = str(raw.get("mode", data.get("mode", "restore")))
        if mode not in modes:
            raise ConfigError(f"{where}: mode {mode!r}: expected {' or '.join(sorted(modes))}")
        output = (
            output_dir / str(raw["output"])
            if raw.get("output")
            else output_dir / f"{source.stem}.{modes[mode].output_word}.mkv"
        )
        items.append(
            BatchItem(
                input=source,
                output=output,
                presets=_as_list(raw.get("preset"), f"{where}.preset"),
                overrides=_as_overrides(raw.get("set"), f"{where}.set"),
                where=where,
                mode=mode,
            )
        )
    outputs = [item.output.resolve() for item in items]
    duplicates = sorted({str(o) for o in outputs if outputs.count(o) > 1})
    if duplicates:
        raise ConfigError(f"{path}: several items write the same output: {', '.join(duplicates)}")
    return (
        items,
        _as_list(data.get("preset"), f"{path}: preset"),
        _as_overrides(data.get("set"), f"{path}: set"),
    )


def item_config(
    item: BatchItem,
    mode: Mode[RunReport],
    *,
    presets: Sequence[str],
    sets: Sequence[str],
    manifest_presets: Sequence[str],
    manifest_overrides: Sequence[dict[str, object]],
) -> Config:
    first = [mode.preset] if mode.preset else []  # as `reel anonymize` applies its preset
    config = load_config([*first, *presets, *manifest_presets, *item.presets], list(sets))
    for overrides in (*manifest_overrides, *item.overrides):
        config = apply_overrides(config, overrides, item.where)
    return config


RestoreFn = Callable[[Path, Path, Config], RunReport]


def run_batch(
    manifest: str | Path,
    *,
    presets: Sequence[str] = (),
    sets: Sequence[str] = (),
    overwrite: bool = False,
    restore: RestoreFn | None = None,
    modes: Mapping[str, Mode[RunReport]] = RESTORE_ONLY,
) -> BatchReport:
    """Restore every item of `manifest`; a failed item is logged and reported, the others go on.
    `modes`: the modes items may name (`mode: anonymize`), by name (default: restore only).

    `restore(input, output, config)` defaults to the executor each item's config names (Ray by
    default, sharing one Ray instance for the whole batch).
    """
    items, manifest_presets, manifest_overrides = load_manifest(manifest, modes)
    item_modes = [modes[item.mode] for item in items]
    configs = [
        item_config(
            item,
            mode,
            presets=presets,
            sets=sets,
            manifest_presets=manifest_presets,
            manifest_overrides=manifest_overrides,
        )
        for item, mode in zip(items, item_modes, strict=True)
    ]  # every item's settings are checked before anything runs
    report = BatchReport(manifest=str(manifest))
    with contextlib.ExitStack() as stack:
        ray_started = False

        def ensure_ray() -> None:
            # One Ray instance for the whole batch, started when the first item needs it.
            nonlocal ray_started
            if not ray_started:
                stack.enter_context(ray_session(configs[0].run))
                ray_started = True

        _run_items(items, item_modes, configs, report, overwrite, restore, ensure_ray)
    return report


def _run_items(
    items: Sequence[BatchItem],
    modes: Sequence[Mode[RunReport]],
    configs: Sequence[Config],
    report: BatchReport,
    overwrite: bool,
    restore: RestoreFn | None,
    ensure_ray: Callable[[], None],
) -> None:
    for n, (item, mode, config) in enumerate(zip(items, modes, configs, strict=True), 1):
        started = time.perf_counter()
        log.info("batch item %d/%d: %s -> %s", n, len(items), item.input, item.output)
        if item.output.exists() and not overwrite:
            log.info(
                "batch item %d/%d: %s exists; skipped (use --overwrite to redo it)",
                n,
                len(items),
                item.output,
            )
            report.items.append(ItemResult(str(item.input), str(item.output), "skipped", 0.0))
            continue
        try:
            _make_output_dir(item.output)
            if restore is not None:
                restore(item.input, item.output, config)
            else:
                if config.run.executor != "local":
                    job = make_job(
                        item.input, item.output, config, overwrite=overwrite, mode=mode
                    )  # fails early
                    if executor_of(job, say=False) == "ray":  # a small item runs in-process until Ray is up
                        ensure_ray()
                restore_item(item.input, item.output, config, overwrite=overwrite, mode=mode)
        except PipelineError as exc:
            log.error("batch item %d/%d failed: %s", n, len(items), exc)
            report.items.append(
                ItemResult(
                    str(item.input), str(item.output), "failed", time.perf_counter() - started, str(exc)
                )
            )
            continue
        except Exception as exc:  # a bug on one item must not lose the rest of a long batch
            log.exception("batch item %d/%d failed unexpectedly", n, len(items))
            detail = f"{type(exc).__name__}: {exc}"
            report.items.append(
                ItemResult(str(item.input), str(item.output), "failed", time.perf_counter() - started, detail)
            )
            continue
        report.items.append(
            ItemResult(str(item.input), str(item.output), "done", time.perf_counter() - started)
        )


def _make_output_dir(output: Path) -> None:
    """The manifest's `output_dir` (or an item's own directory) is created, not required (#15)."""

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(output, f"cannot create the directory {output.parent} ({exc.strerror})") from exc
