"""Typed, frozen configuration.

`Config` is a tree of frozen dataclasses; every field has a default and a comment. YAML presets in
`configs/` and `--set section.key=value` options only *override* fields: an unknown key, a wrong
type or a bad value is a ConfigError naming the file and the key. The resolved config is written
next to every output (`<output>.config.yaml`) so a result can always be traced to its settings.

Each stage owns its section. Keep sections light: no heavy imports here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, get_args, get_origin, get_type_hints

import yaml

from pipeline.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class IOConfig:
    deinterlace: str = "auto"  # "auto" (when the stream is interlaced), "on" (force bwdif) or "off"
    # film: field matching + decimation for telecined film/cartoons: true, false, or "auto" (only where
    # pipeline.io.cadence measures a telecine cadence; resolved to true/false before any decoding)
    inverse_telecine: bool | str = False
    preset: str = "delivery-x264"  # encoder preset: master-ffv1, mezzanine-prores, delivery-x264/-x265
    crf: int | None = None  # quality override for x264/x265 presets (None = the preset's own)
    max_damaged_fraction: float = 0.5  # above this fraction of undecodable frames the input is unusable
    # robust: frame rate of image-sequence inputs (scan_%06d.dpx or a directory; scans carry no rate)
    sequence_rate: Fraction = Fraction(24)
    # robust: matrix an RGB source is converted to YUV with for a YUV preset (bt709, bt601, bt2020)
    rgb_matrix: str = "bt709"


@dataclass(frozen=True)
class UpscaleConfig:
    scale: int = 2  # output size = input size * scale
    method: str = "lanczos"  # classical resampler: "lanczos", "bicubic", "area" or "nearest"
    # film: a single-image super-resolution checkpoint (Real-ESRGAN, SwinIR, HAT, ... loaded with spandrel)
    # for the whole frame; None = the classical `method`
    model: str | None = None
    tile: int = 256  # film: the learned model runs on tiles this many source px wide (0 = whole frame)
    tile_overlap: int = 16  # film: source px two tiles share, blended linearly (no seams)
    batch: int = 4  # film, CUDA: frames a learned model upscales together (one pass per tile position)
    # film: on CUDA the tiles are sized to use this fraction of the free device memory
    # (pipeline.frame.sr.tile_from_memory; `tile` is then ignored unless 0); 0 = `tile` on every device
    tile_memory: float = 0.5


@dataclass(frozen=True)
class ScanConfig:
    detector: str = "yunet"  # face detector: "yunet" (best recall on degraded B&W here) or "centerface"
    detect_size: int = 640  # longer side of the copy the detector sees (px; small sources are enlarged)
    denoise: float = 0.8  # Gaussian sigma (source px) softening grain before enlarging; 0 = off
    score_threshold: float = 0.35  # minimum detector confidence
    min_face: int = 12  # minimum face height in source pixels
    batch_size: int = 8  # frames per detector forward pass
    cut_threshold: float = 3.0  # a cut's frame change must be this many times its neighbours' average
    cut_min_change: float = 12.0  # ... and at least this (mean HSV change, 0..255; brightness for B&W)
    min_shot: int = 4  # shortest shot in frames (cuts closer together are merged)
    max_gap: int = 5  # frames a track may miss and still continue (gaps are interpolated)
    min_hits: int = 3  # tracks with fewer real detections are dropped as false positives
    smooth_window: int = 7  # landmark smoothing window in frames (odd)
    max_face_fraction: float = 0.8  # a box taller or wider than this fraction of the frame is not a face
    confirm_below: float = 0.5  # detections scoring under this need the other detector to agree (0 = off)
    confirm_threshold: float = 0.2  # the other detector's score threshold when it is asked to confirm
    merge_overlap: float = 0.5  # tracks sharing a region (overlap of the smaller box) are one track
    merge_gap: int = 50  # frames between a track's end and another's start that SFace may bridge (0 = off)
    max_enlarge: float = 4.0  # tiny sources are enlarged for the detector by this much at most


@dataclass(frozen=True)
class PriorConfig:
    model: str | None = None  # checkpoint path or model-zoo name; None = no face restoration
    dtype: str = "float32"  # "float32" or "bfloat16"


@dataclass(frozen=True)
class SearchConfig:
    """Latent search (PULSE) with temporal warm starts, read by pipeline.search."""

    steps: int = 100  # cold-start optimiser step budget (PULSE's default)
    warm_steps: int = 25  # step budget for a warm-started frame (starts from frame t-1)
    lr: float = 0.4  # cold Adam learning rate (PULSE's default, 1-cycle schedule over `steps`)
    warm_lr: float = 0.02  # warm-start learning rate (cosine decay; it starts near the answer)
    eps: float = 2e-3  # the bound: a frame meets it when its downscaled MSE <= eps (PULSE's eps, ~27 dB)
    stop_eps: float = 5e-4  # a face stops once its MSE <= this (tighter than eps: a loose stop flickers)
    patience: int = 8  # ... or once its MSE improved by < `converge_tol` (relative) over this many steps
    converge_tol: float = 0.01  # relative MSE improvement that counts as progress (see patience)
    l2_weight: float = 100.0  # weight of the downscaled MSE (PULSE's "100*L2")
    l1_weight: float = 0.0  # weight of the downscaled mean absolute error (PULSE's "L1" term is 10 x it)
    geocross_weight: float = 0.05  # weight of GEOCROSS between a face's layer latents (PULSE's 0.05)
    pull_weight: float = 0.5  # warm start: weight of the squared distance to frame t-1's latents/noise
    noise_layers: int = 5  # the first noise maps are optimised, the rest stay fixed (PULSE: 5)
    seed: int = 0  # seeds every random start (per track): results are deterministic
    batch_size: int = 16  # faces searched at once
    gaussian_samples: int = 100_000  # mapping outputs used to fit the Gaussianised W space (PULSE: 1e6)
    truncate_factor: float = 4.0  # loss on a truncated synthesis at >= this x the target size (0 = off)
    truncate_refresh: int = 10  # steps between full renders that correct the truncated image's residual
    autocast: str = "none"  # "none" or "bfloat16": mixed-precision synthesis (the loss stays float32)
    # search: iterations between the host's "has every face stopped?" checks (the only sync in the loop;
    # stopped faces are masked meanwhile); 0 = every iteration on a CPU, every 4 on a GPU
    stop_check_every: int = 0
    # search: at a check where at most half the batch still searches, go on with the next power-of-two
    # batch that holds those faces (stopped faces otherwise keep costing synthesis; few shapes to compile)
    compact: bool = True
    # search: torch.compile the loop's step: "off", "default", "reduce-overhead" (CUDA graphs),
    # "max-autotune", "max-autotune-no-cudagraphs"; a GPU option (compiling costs minutes on a CPU), best
    # with compact off (each batch size compiles its own graphs)
    compile: str = "off"
    share_coarse_layers: int = 0  # W+ layers fixed to the track's first frame (stable identity; 0 = off)
    smooth_sigma: float = 0.0  # Gaussian smoothing of latents over time after the search, frames (0 = off)
    # split tracks longer than this into chunks (separate work units: anchors first, then chunks on any
    # search worker); 0 = off. Smoothing (smooth_sigma > 0) needs whole tracks and keeps them whole.
    chunk_len: int = 0
    chunk_landing: int = 4  # a chunk's last frames are steered onto the next chunk's anchor (no jump)
    # reference photos (--reference-photos, pipeline.search.guide): weight of the pull of a guided face's
    # latents towards its reference person's (inverted from the photos); the bound still holds: a guided
    # face that misses it is refined without the pull
    guide_weight: float = 0.2
    guide_start: bool = True  # a guided track's cold first frame starts from the reference latents
    guide_steps: int = 200  # optimiser steps inverting each reference photo (a cold search on the photo)
    guide_restarts: int = 2  # cold starts per reference photo (their latents are averaged)
    # weight of the SFace identity term (pipeline.search.identity): 1 - cosine of a guided face's SFace
    # embedding (SFace in torch) to its reference person's; the fit runs on the full synthesis with it on.
    # 0 = off: its gain is unmeasured offline (no face generator here), so it stays opt-in
    identity_weight: float = 0.0


@dataclass(frozen=True)
class RunConfig:
    address: str | None = None  # Ray cluster address; None = embedded local Ray
    # "auto": Ray, except a small job (at most `in_process_megapixels` of source pixels, no cluster
    # address, no Ray running yet) runs in-process, without Ray's start-up; "ray"; "local" (in-process)
    executor: str = "auto"
    in_process_megapixels: float = 100.0  # frames x width x height / 1e6; ~5 s of SD, ~2 s of 1080p
    workdir: str | None = None  # work directory; None = "<output>.work" beside the output
    num_gpus_per_search: float = 1.0  # GPUs per search actor (fractions share a GPU)
    # GPUs a task asks for where the cluster has GPUs and its kind runs GPU work (pipeline.run.work.KINDS:
    # compose with a learned upscaler or a CUDA film.device/run.device, clean with film cleaning on a
    # CUDA film.device; fractions share one); every other task takes a CPU
    num_gpus_per_upscale: float = 0.5
    search_resource: str | None = None  # custom Ray resource a search actor also asks one of (node pinning)
    device: str = "auto"  # "auto" (cuda when present), "cpu", "cuda", "cuda:1", ...
    num_cpus: int | None = None  # CPUs of the embedded Ray instance; None = all of this machine's
    temp_dir: str | None = None  # embedded Ray's session/log directory; None = Ray's default (/tmp/ray)
    search_actors: int | None = None  # None = one per GPU share (GPUs / num_gpus_per_search), 1 without GPUs
    segment_frames: int = 240  # frames per compose+encode part (parts encode in parallel; each part
    # decodes from the keyframe before it, so parts much longer than a GOP waste little)
    max_in_flight: int | None = None  # tasks in flight at once (backpressure); None = 2 per CPU
    # with faces and film cleaning (or inverse telecine): each segment is decoded and cleaned once and
    # its frames stored in the work directory for scan, crops and compose (when its disk has room)
    store_frames: bool = True
    # ffmpeg threads of each part's encoder (0 = ffmpeg's choice): one per task, as the worker count
    # sets the parallelism; a simple job run in-process as one part (`executor_of`) uses 0
    encoder_threads: int = 1
    # frames a compose step decodes (and cleans) ahead of its upscale and paste, and frames it queues
    # for its encoder, each on its own thread (the device is kept fed: pipeline.run.feed); 0 = no threads
    prefetch_frames: int = 4
    max_retries: int = 3  # retries of a failed task, or of a call on a restarted actor, before the job fails
    progress: bool = True  # one live progress line on stderr (frames scanned / restored / encoded)
    timeline: str | None = None  # plan: write every step's start and end (JSON) here (scripts/bench_ray.py)


@dataclass(frozen=True)
class ReportConfig:
    """What `OUTPUT.report.html` shows (pipeline.report); the JSON report is always written."""

    html: bool = True  # write OUTPUT.report.html beside the JSON report
    sheet_frames: int = 4  # face-frames per track on its contact sheet (worst consistency first)
    thumbs_per_shot: int = 3  # output thumbnails per shot (first, middle, last ...)
    thumb_width: int = 160  # px width of a shot thumbnail
    # "where is this invented?": cold searches from this many different starts per sampled face;
    # the per-pixel spread of the results is drawn as a heat map (0 = off; costs K searches per face)
    spread_k: int = 4
    spread_faces: int = 3  # face-frames sampled for the spread (one per track, longest tracks first)


@dataclass(frozen=True)
class AnonConfig:
    """Anonymise (`reel anonymize`), read by pipeline.anon: every face of every frame replaced.

    The scan itself is set for recall by the `anonymize` preset (both detectors, lower threshold).
    """

    # px across the aligned face that the synthetic face must match: what is left of the person
    # (measured: SFace cosine to the original stays below the same-person threshold at <= 12 px)
    bottleneck: int = 8
    extend: int = 4  # frames a track is extended before its first and after its last detection
    bridge: int = 12  # frames a track may vanish (same shot, nearby box) and still be joined across the gap
    mask_grow: float = 1.5  # masks cover the face box scaled by this (under every synthetic face too)
    fallback: str = "blur"  # face-frames the search cannot serve: "blur" (kept at `fallback_cells`) or "fill"
    fallback_cells: int = 4  # "blur": px across the mask the region is reduced to before it is smoothed
    min_face: int = 16  # an aligned face smaller than this (source px) is masked, not searched
    max_face_ratio: float = 4.0  # ... and one larger than this x the generator's resolution
    max_yaw: float = 0.45  # ... and a profile: nose off the eye midline by more than this x the eye distance
    max_outside: float = 0.2  # ... and one whose aligned square lies more this fraction outside the frame
    keep_crops: bool = False  # keep the original face crops in the work directory (review); default: deleted
    measure_identity: bool = True  # audit: SFace cosine between each original and anonymised face-frame
    # audit: restore's own search (the run's prior) on this many output face-frames, closest to the
    # person first; the person must stay unrecognised (SFace cosine to the original < 0.3). 0: off
    attack_faces: int = 8


@dataclass(frozen=True)
class PeopleConfig:
    """Choosing the people by reference photos (pipeline.faces.choose): a folder of photos, one
    photo or one subfolder per person. Faces not chosen are left as a run without a face model
    leaves them; anonymise hides a face it cannot decide whatever the photos say."""

    only: str | None = None  # --only-people: only these people are restored (or hidden)
    exclude: str | None = None  # --except-people: everyone but these people
    # --reference-photos (restore): photos of people (as above) that guide the restoration of the people
    # recognised in them (pipeline.search.guide; the bound still holds)
    reference: str | None = None


@dataclass(frozen=True)
class ComposeConfig:
    """Paste-back and the consistency guarantee in frame coordinates (pipeline.frame.compose)."""

    project: bool = True  # project each face region onto the images whose downscale is the footage
    project_steps: int = 12  # back-projection steps per face at most (each: residual, pseudo-inverse)
    project_target_db: float = 40.0  # ... stopping once the face region agrees with the footage this well
    # Tikhonov damping of the back-projector: the finest frequencies (mostly grain) are corrected
    # gently instead of amplified (0 = exact pseudo-inverse: consistent, but grain flickers ~1.17x)
    project_damping: float = 0.3
    project_margin_db: float = 3.0  # damped steps that leave a face under bound + this go on undamped
    max_face_stretch: float = 1.25  # a face drawn larger than this x the generator's resolution falls back
    min_inside: float = 0.5  # ... and one whose aligned square is less than this fraction inside the frame
    tone_match: bool = True  # match the pasted face's low-pass tone to the frame
    grain_match: bool = True  # add grain to faces smoother than the footage (seeded per track: steady)
    grain_seed: int = 0  # seeds each track's grain pattern (with the track id)


@dataclass(frozen=True)
class FilmConfig:
    """Whole-frame film cleaning before face scanning (pipeline.film). Every stage is off by default."""

    deflicker: bool = False  # match each frame's mean brightness (per channel) to its temporal window
    deflicker_radius: int = 5  # ... the window: this many frames either side
    deflicker_max_gain: float = 1.6  # gains are limited to [1/x, x] (a cut or a fade is not flicker)
    # local flicker: after the global gain, gains that vary smoothly across the frame (a 3 x 3 grid,
    # interpolated) over the same window; fades, flashes and a lamp switched on in part of the picture kept
    local_flicker: bool = False
    weave: bool = False  # gate weave / jitter: each frame shifted onto its window's mean path (no crop)
    weave_radius: int = 6  # ... the window: this many frames either side
    weave_max_px: float = 8.0  # a correction larger than this (source px) is not weave and is left alone
    dust: bool = False  # single-frame specks found against motion-compensated neighbours, filled from them
    dust_threshold: float = 0.1  # a speck differs from both compensated neighbours by this much (0..1)
    dust_max_area: int = 600  # blobs larger than this (px at 576 lines; scaled with height) are not dust
    scratches: bool = False  # vertical line scratches detected (line strength per column) and inpainted
    scratch_threshold: float = 6.0  # a scratch column's line strength, in robust std devs of all columns
    scratch_max_width: int = 4  # widest scratch (px); wider lines are picture, not scratches
    grain: str = "keep"  # "keep", "reduce" (motion-compensated temporal denoise) or "regrain" (reduce,
    # measure the grain; compose adds it back after the upscale, at output resolution: pipeline.frame.grain)
    grain_radius: int = 2  # reduce: neighbours either side averaged after motion compensation
    grain_strength: float = 1.5  # reduce: neighbours count where their mismatch beyond grain < this x grain
    grain_seed: int = 0  # regrain: seeds the grain added at output resolution (with the frame index)
    line_denoise: float = 0.0  # cartoons: edge-preserving (bilateral) denoise, sigma in 8-bit levels; 0 = off
    dither: bool = False  # cleaned frames are quantised with dither, not rounded (no banding in flat colour)
    # "numpy" (OpenCV, the default) or a torch device ("cpu", "cuda", "cuda:1"): with a torch device the
    # picture stays a tensor there through every stage (pipeline.film.torch_ops: gains, fields, filters,
    # warps, fills, the temporal average, the bilateral filter); decisions from small copies and the
    # optical flow stay numpy/OpenCV on the CPU. On a CPU torch is slower than OpenCV: keep "numpy" there
    device: str = "numpy"
    # provenance matte (restore): OUTPUT.matte.mkv beside the output, a lossless gray mask of every
    # synthesised pixel (pasted faces by their blend mask, dust and scratch fills), frame for frame with
    # the output's timestamps; the report gives the share of altered pixels per shot
    matte: bool = False
    content: str = "photo"  # "photo" or "drawn": a photographic face prior never runs on drawn faces
    drawn_face_prior: str | None = None  # with content="drawn", faces are restored only with this prior


@dataclass(frozen=True)
class Config:
    io: IOConfig = field(default_factory=IOConfig)
    upscale: UpscaleConfig = field(default_factory=UpscaleConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    run: RunConfig = field(default_factory=RunConfig)
    anon: AnonConfig = field(default_factory=AnonConfig)  # `reel anonymize` (pipeline.anon)
    report: ReportConfig = field(default_factory=ReportConfig)  # the HTML report (pipeline.report)
    compose: ComposeConfig = field(default_factory=ComposeConfig)  # paste-back + projection (frame.compose)
    film: FilmConfig = field(default_factory=FilmConfig)  # film cleaning, cartoons (pipeline.film)
    people: PeopleConfig = field(default_factory=PeopleConfig)  # reference photos (pipeline.faces.choose)


T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")


def _coerce(value: object, tp: object, where: str) -> object:
    """Check (and gently convert) one YAML value against a dataclass field type (`tp`: a type, or a
    union or tuple of them, as the field's annotation names it)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, where)  # type: ignore[arg-type]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Fraction:
        try:
            return Fraction(str(value))
        except (ValueError, ZeroDivisionError) as exc:
            raise ConfigError(f"{where}: expected a fraction such as 30000/1001, got {value!r}") from exc
    raise ConfigError(f"{where}: unsupported field type {tp!r}")


def _refuse_unknown(given: set[str], names: set[str], where: str) -> None:
    """A ConfigError naming the unknown keys, the closest known one, and all the known ones."""
    unknown = sorted(given - names)
    if unknown:
        hint = did_you_mean(unknown[0], names)
        known = ", ".join(sorted(names))
        raise ConfigError(f"{where or 'config'}: unknown key(s) {', '.join(unknown)}{hint}; known: {known}")


def _from_dict(cls: type[T], data: dict[str, object], where: str) -> T:
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    _refuse_unknown(set(data), names, where)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _merge(base: D, overrides: Mapping[str, object], where: str) -> D:
    """Apply a nested override mapping to a frozen dataclass instance."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {overrides!r}")
    hints = get_type_hints(type(base))
    names = {f.name for f in fields(base)}
    _refuse_unknown(set(overrides), names, where)
    changes: dict[str, object] = {}
    for key, value in overrides.items():
        sub = f"{where}.{key}" if where else key
        current = getattr(base, key)
        if is_dataclass(current) and not isinstance(current, type) and isinstance(value, dict):
            changes[key] = _merge(current, value, sub)
        else:
            changes[key] = _coerce(value, hints[key], sub)
    return replace(base, **changes)


def apply_overrides(config: Config, overrides: Mapping[str, object], source: str = "") -> Config:
    """Return `config` with the nested mapping `overrides` applied; errors name `source`."""
    try:
        return _merge(config, overrides, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None


def parse_set_option(item: str) -> dict[str, object]:
    """Turn `--set search.steps=50` into {"search": {"steps": 50}} (the value is parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    dotted, raw = item.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    try:
        value: object = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or "not a valid value")
        raise ConfigError(f"--set {item!r}: cannot read the value ({problem})") from None
    nested: dict[str, object] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def resolve_preset(name_or_path: str) -> Path:
    """A preset is a YAML file: a path, or a name in configs/ (e.g. "newsreel")."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "models")
    hint = did_you_mean(name_or_path, known)
    raise ConfigError(f"preset {name_or_path!r}: no such file{hint}, and not one of: {', '.join(known)}")


def load_config(presets: list[str] | tuple[str, ...] = (), sets: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then each preset file in order, then each --set option."""
    config = Config()
    for preset in presets:
        path = resolve_preset(preset)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        config = apply_overrides(config, data, str(path))
    for item in sets:
        config = apply_overrides(config, parse_set_option(item), f"--set {item}")
    return config


def to_dict(config: Config) -> dict[str, dict[str, object]]:
    """Plain, YAML-safe nested dict, section -> key -> value (Fractions as strings)."""

    def plain(v: object) -> object:
        if isinstance(v, Fraction):
            return str(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {
        section: typing.cast(dict[str, object], plain(body))
        for section, body in dataclasses.asdict(config).items()
    }


def dump_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (atomically: temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    tmp.replace(path)
