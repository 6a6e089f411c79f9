"""Whole-frame film cleaning: the entry point the frame reader calls before anything sees pixels.

    frames ─► deflicker ─► weave ─► scratches ─► dust, grain reduce ─► grain measured, line denoise ─► round

With `grain: regrain` the grain is not put back here but after the upscale, at output resolution
(`pipeline.frame.grain`): each handed-out frame carries its measurement (`VideoFrame.grain`).
Each frame also carries the pixels dust and scratch fills synthesised (`VideoFrame.filled`), which
the provenance matte marks (`film.matte`).

Every stage is a pure function of a fixed window of its input (see pipeline.film.window), so a
frame's result depends only on the `context(cfg)` frames either side: segments cleaned separately
with that overlap equal the whole clip cleaned at once. Memory holds a few frames per stage.

    stats = CleanStats()
    for frame in clean_frames(reader, cfg, start=s, end=e, stats=stats): ...
    stats.as_dict()   # frames deflickered, specks filled, scratches found, weave px, grain ...

`clean_frames(...)` also returns an iterator with a `.stats` attribute (the same object).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, FilmConfig
from pipeline.errors import ConfigError
from pipeline.film.window import Work
from pipeline.types import VideoFrame

GRAIN_MODES = ("keep", "reduce", "regrain")
# What each handed-out frame's row in `CleanStats.by_frame` holds after its index.
FRAME_FIELDS = (
    "flicker_found",
    "gain_change",
    "local_flicker_found",
    "local_gain",
    "jitter_found",
    "weave_px",
    "specks",
    "speck_px",
    "objects_kept",
    "scratches",
)
CONTENT = ("photo", "drawn")


@dataclass
class CleanStats:
    """What cleaning changed in the frames it handed out ([start, end) only; context frames excluded).

    Sums, so the stats of segments add up to those of the whole run (`merge`)."""

    frames: int = 0  # frames handed out
    flicker_found: int = 0  # frames whose window's brightness wobbles from frame to frame (else left alone)
    deflickered: int = 0  # frames whose gain moved by more than 0.5 %
    gain_change_sum: float = 0.0  # sum over frames of the largest |gain - 1| of the three channels
    specks_filled: int = 0  # dust/dirt blobs filled
    speck_pixels: int = 0  # pixels filled (blobs with their rim)
    objects_kept: int = 0  # speck candidates found in both neighbours nearby: moving objects, left alone
    scratch_frames: int = 0  # frames with at least one line scratch
    scratches_found: int = 0  # scratches summed over frames
    local_flicker_found: int = 0  # frames whose window's cells wobble apart (local flicker; else left alone)
    local_deflickered: int = 0  # frames given a field of gains moving some part by more than 0.5 %
    jitter_found: int = 0  # frames whose window's positions jitter from frame to frame (else left alone)
    weave_frames: int = 0  # frames moved by 0.02 px or more
    weave_px_sum: float = 0.0  # sum over frames of the shift applied (px)
    weave_px_max: float = 0.0  # largest shift applied (px)
    grain_frames: int = 0  # frames whose grain was reduced
    grain_sigma_sum: float = 0.0  # sum over those of the measured grain std (8-bit levels)
    regrained: int = 0  # frames whose grain was measured to be put back at output resolution (regrain)
    # per frame: [index, *FRAME_FIELDS] (the report's per-shot figures; not in `as_dict`)
    by_frame: list[list[float]] = field(default_factory=list)

    def add(self, info: dict[str, Any], index: int | None = None) -> None:
        """Count one handed-out frame's figures (and keep its row when its `index` is given)."""
        self.frames += 1
        change = px = 0.0
        if "gain" in info:
            change = float(np.max(np.abs(info["gain"] - 1.0)))
            self.gain_change_sum += change
            self.deflickered += change > 0.005
        self.flicker_found += bool(info.get("flicker_found", False))
        self.jitter_found += bool(info.get("jitter_found", False))
        self.local_flicker_found += bool(info.get("local_flicker_found", False))
        self.local_deflickered += float(info.get("local_gain", 0.0)) > 0.005
        self.specks_filled += int(info.get("specks", 0))
        self.speck_pixels += int(info.get("speck_px", 0))
        self.objects_kept += int(info.get("objects_kept", 0))
        n = int(info.get("scratches", 0))
        self.scratches_found += n
        self.scratch_frames += n > 0
        if "weave" in info:
            px = float(np.hypot(*info["weave"]))
            self.weave_px_sum += px
            self.weave_px_max = max(self.weave_px_max, px)
            self.weave_frames += px >= 0.02
        if "grain_sigma" in info:
            self.grain_frames += 1
            self.grain_sigma_sum += 255.0 * float(info["grain_sigma"])
        self.regrained += bool(info.get("regrained", False))
        if index is not None:
            local = (bool(info.get("local_flicker_found")), float(info.get("local_gain", 0.0)))
            found = (bool(info.get("flicker_found")), change, *local, bool(info.get("jitter_found")), px)
            counts = (info.get(k, 0) for k in ("specks", "speck_px", "objects_kept", "scratches"))
            self.by_frame.append([int(index), *map(float, found), *map(float, counts)])

    def merge(self, other: CleanStats) -> CleanStats:
        """The stats of two disjoint frame ranges together."""
        skip = ("weave_px_max", "by_frame")
        out = CleanStats(**{k: v + getattr(other, k) for k, v in asdict(self).items() if k not in skip})
        out.weave_px_max = max(self.weave_px_max, other.weave_px_max)
        out.by_frame = sorted([*self.by_frame, *other.by_frame])
        return out

    def by_shot(self, shots: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        """Per shot ([start, end) frame ranges): what each stage found there and what it did."""
        rows = np.asarray(self.by_frame, np.float64).reshape(-1, 1 + len(FRAME_FIELDS))
        out = []
        for start, end in shots:
            r = rows[(rows[:, 0] >= start) & (rows[:, 0] < end)]
            col = {name: r[:, 1 + i] for i, name in enumerate(FRAME_FIELDS)}
            found = {
                "flicker": int(col["flicker_found"].sum()),
                "local flicker": int(col["local_flicker_found"].sum()),
                "jitter": int(col["jitter_found"].sum()),
                "dust": int((col["specks"] > 0).sum()),
                "scratches": int((col["scratches"] > 0).sum()),
            }
            out.append(
                {
                    "start": int(start),
                    "end": int(end),
                    "frames": len(r),
                    "found": [k for k, v in found.items() if v],  # defects found in any frame
                    "frames_found": found,  # ... in how many of the shot's frames
                    "deflickered": int((col["gain_change"] > 0.005).sum()),
                    "max_gain_change": round(float(col["gain_change"].max(initial=0.0)), 4),
                    "local_deflickered": int((col["local_gain"] > 0.005).sum()),
                    "max_local_gain_change": round(float(col["local_gain"].max(initial=0.0)), 4),
                    "weave_px_max": round(float(col["weave_px"].max(initial=0.0)), 3),
                    "specks_filled": int(col["specks"].sum()),
                    "speck_pixels": int(col["speck_px"].sum()),
                    "objects_kept": int(col["objects_kept"].sum()),
                    "scratches_found": int(col["scratches"].sum()),
                }
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures for the report: the sums and the per-frame means (no per-frame rows)."""
        d: dict[str, Any] = asdict(self)
        del d["by_frame"]
        d["mean_gain_change"] = self.gain_change_sum / max(1, self.frames)
        d["weave_px_mean"] = self.weave_px_sum / max(1, self.frames)
        d["grain_sigma_mean"] = self.grain_sigma_sum / max(1, self.grain_frames)
        return d


def enabled(cfg: Config | FilmConfig) -> bool:
    """Whether any cleaning stage is on (off: frames pass through untouched). `dither` alone is not a
    stage: it only shapes how the other stages' results are quantised."""
    f = cfg.film if isinstance(cfg, Config) else cfg
    stages = (
        f.deflicker,
        f.local_flicker,
        f.weave,
        f.dust,
        f.scratches,
        f.grain != "keep",
        f.line_denoise > 0,
    )
    return any(stages)


def _temporal_radius(f: FilmConfig) -> int:
    return max(1 if f.dust else 0, f.grain_radius if f.grain != "keep" else 0)


def context(cfg: Config | FilmConfig) -> tuple[int, int]:
    """(before, after): frames of overlap the cleaner needs either side of a range to clean it exactly."""
    f = cfg.film if isinstance(cfg, Config) else cfg
    r = (f.deflicker_radius if f.deflicker else 0) + (f.deflicker_radius if f.local_flicker else 0)
    r += (f.weave_radius if f.weave else 0) + _temporal_radius(f)
    r += 1 if f.scratches else 0  # a scratch must persist into the neighbouring frames
    return r, r


def check_config(cfg: Config | FilmConfig) -> None:
    """Settings of the film section the dataclass types alone cannot check (ConfigError)."""
    f = cfg.film if isinstance(cfg, Config) else cfg
    if f.grain not in GRAIN_MODES:
        raise ConfigError(f"film.grain={f.grain!r}: must be one of {', '.join(GRAIN_MODES)}")
    if f.device != "numpy" and not re.fullmatch(r"cpu|cuda(:\d+)?", f.device):
        raise ConfigError(f"film.device={f.device!r}: must be numpy, cpu, cuda or cuda:N")
    if f.content not in CONTENT:
        raise ConfigError(f"film.content={f.content!r}: must be one of {', '.join(CONTENT)}")
    for name in ("deflicker_radius", "weave_radius", "scratch_max_width", "dust_max_area"):
        if getattr(f, name) < 1:
            raise ConfigError(f"film.{name}={getattr(f, name)}: must be 1 or more")
    if not 1 <= f.grain_radius <= 4:
        raise ConfigError(f"film.grain_radius={f.grain_radius}: must be 1 to 4")
    if f.deflicker_max_gain < 1.0:
        raise ConfigError(f"film.deflicker_max_gain={f.deflicker_max_gain}: must be 1 or more")
    for name in ("dust_threshold", "scratch_threshold", "grain_strength", "weave_max_px", "line_denoise"):
        if getattr(f, name) < 0:
            raise ConfigError(f"film.{name}={getattr(f, name)}: must not be negative")


class CleanedFrames(Iterator[VideoFrame]):
    """The cleaned frames of [start, end), in order; `stats` fills in as they are handed out."""

    def __init__(self, gen: Iterator[VideoFrame], stats: CleanStats) -> None:
        self._gen = gen
        self.stats = stats

    def __iter__(self) -> CleanedFrames:
        return self

    def __next__(self) -> VideoFrame:
        return next(self._gen)


def _top(image: np.ndarray) -> float:
    return 255.0 if image.dtype == np.uint8 else 65535.0


def _works(frames: Iterable[VideoFrame], device: str) -> Iterator[Work]:
    """The working pictures: float32 in [0, 1], numpy or (a torch `device`) a tensor there (frames
    already on a device, as tensors, are converted there: `scripts/device_bench.py`)."""
    from pipeline.film.torch_ops import working

    for fr in frames:
        if device == "numpy":
            yield Work(fr, fr.image.astype(np.float32) / np.float32(_top(fr.image)))
        else:
            yield Work(fr, working(fr.image, device))


def _chain(frames: Iterable[VideoFrame], f: FilmConfig) -> Iterator[Work]:
    """The stages, as generators over the working pictures."""
    from pipeline.film.deflicker import deflicker
    from pipeline.film.local_flicker import local_deflicker
    from pipeline.film.scratch import scratch_stage
    from pipeline.film.temporal import temporal_clean
    from pipeline.film.weave import stabilise

    works = _works(frames, f.device)
    if f.deflicker:
        works = deflicker(works, f.deflicker_radius, f.deflicker_max_gain)
    if f.local_flicker:  # what is left: gains that vary across the frame
        works = local_deflicker(works, f.deflicker_radius, f.deflicker_max_gain)
    if f.weave:
        works = stabilise(works, f.weave_radius, f.weave_max_px)
    if f.scratches:  # before the temporal stage: its average would smear a line that stays put
        works = scratch_stage(works, f.scratch_threshold, f.scratch_max_width)
    radius = _temporal_radius(f)
    if radius:
        works = temporal_clean(
            works,
            radius=radius,
            dust=f.dust,
            dust_threshold=f.dust_threshold,
            dust_max_area=f.dust_max_area,
            reduce=f.grain != "keep",
            strength=f.grain_strength,
            measure=f.grain == "regrain",
        )
    return _finish(works, f)


def _finish(works: Iterator[Work], f: FilmConfig) -> Iterator[Work]:
    """The grain measured (regrain) and the line denoise, after the other stages."""
    from pipeline.film.grain import line_denoise, measure_grain
    from pipeline.film.window import luma

    for work in works:
        residual = work.info.pop("grain_residual", None)
        difference = work.info.pop("grain_difference", None)
        colour, motions = work.info.pop("grain_colour", None), work.info.pop("grain_motion", ())
        if f.grain == "regrain" and residual is not None:  # put back at output resolution by compose
            # tensors are measured on their device (pipeline.film.grain.measure_grain)
            work.info["grain_measure"] = measure_grain(
                luma(work.image), residual, difference, colour, motions
            )
            work.info["regrained"] = True
        if f.line_denoise > 0:
            work.image = line_denoise(work.image, f.line_denoise)
        yield work


def _handed_out(work: Work, f: FilmConfig) -> np.ndarray:
    """The cleaned picture quantised to the frame's dtype (a tensor on its device unless dithered)."""
    from pipeline.film.grain import quantise
    from pipeline.film.torch_ops import frame_dtype, is_tensor, quantised, to_numpy

    fr = work.frame
    dtype = frame_dtype(fr.image)
    if is_tensor(work.image) and not f.dither:
        return quantised(work.image, dtype)
    return quantise(to_numpy(work.image), dtype, f.dither, f.grain_seed, fr.index)


def clean_frames(
    frames: Iterable[VideoFrame],
    cfg: Config | FilmConfig,
    *,
    start: int,
    end: int,
    stats: CleanStats | None = None,
) -> CleanedFrames:
    """The frames of [start, end) cleaned, from `frames` covering [start - before, end + after).

    `frames` may hold fewer context frames where the video begins or ends (the result is then what a
    whole-clip run gives there too). The iterator's `.stats` (or `stats`, when given) counts what was
    changed in the frames handed out. Frames keep their index, pts, time and dtype.
    """
    f = cfg.film if isinstance(cfg, Config) else cfg
    check_config(f)
    stats = stats if stats is not None else CleanStats()

    def gen() -> Iterator[VideoFrame]:
        if not enabled(f):
            for fr in frames:
                if start <= fr.index < end:
                    stats.add({})
                    yield fr
            return
        for work in _chain(frames, f):
            fr = work.frame
            if fr.index < start:
                continue
            if fr.index >= end:
                break
            image = _handed_out(work, f)
            stats.add(work.info, fr.index)
            grain, filled = work.info.get("grain_measure"), work.info.get("filled")
            yield VideoFrame(
                index=fr.index, pts=fr.pts, time=fr.time, image=image, grain=grain, filled=filled
            )

    return CleanedFrames(gen(), stats)


def collect_stats(paths: Iterable[str | Path], *, remove: bool = False) -> CleanStats | None:
    """The merged `CleanStats` of the segment files at `paths` that exist (None: no file, cleaning
    was off); `remove` deletes them once read (they live as long as the compose parts)."""
    import json

    total: CleanStats | None = None
    for path in map(Path, paths):
        if not path.exists():
            continue
        d = json.loads(path.read_text())
        part = CleanStats(**{k: d[k] for k in CleanStats.__dataclass_fields__ if k in d})
        total = part if total is None else total.merge(part)
        if remove:
            path.unlink()
    return total
