"""The checks every restore path makes before any work starts (in-process, Ray, frame-only, batch).

A bad setting, an unwritable or clashing output, an unreadable input, streams the output container
cannot hold, an output too large to make or to fit on the disk, a checkpoint that cannot load, or
another run writing the same output fail here, in seconds, with the PipelineError a user should see
(naming the fix), never after an hour of search and encoding. A source whose depth or chroma the
chosen preset drops is a warning naming the preset that keeps it. Passing preflight locks the output
and its work directory for this process (`pipeline.run.lock`) and removes temporary files a killed
run left beside the output.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from pipeline.config import Config
from pipeline.errors import (
    CheckpointError,
    ConfigError,
    DecodeError,
    DiskFullError,
    OutputError,
    ResourceError,
    disk_full_message,
)
from pipeline.frame.upscale import METHODS
from pipeline.io.presets import (
    CONTAINER_FORMATS,
    SEQUENCE_PRESETS,
    EncoderPreset,
    chroma_label,
    encoder_options,
    format_depth,
    get_preset,
    is_rgb_format,
    output_pix_fmt,
)
from pipeline.io.probe import detect_interlacing, probe, variable_rate
from pipeline.io.sequence import is_sequence, is_sequence_output, set_sequence_rate
from pipeline.io.writer import RGB_MATRICES
from pipeline.prior.safe_pickle import scan_pickle
from pipeline.run import lock
from pipeline.run.frames import open_source
from pipeline.run.workdir import default_workdir
from pipeline.types import VideoInfo

if TYPE_CHECKING:
    from pipeline.io.decode import Video

log = logging.getLogger(__name__)


# Largest output side any of our encoders takes (x264/x265/ProRes stop at 16384 or below).
MAX_OUTPUT_SIDE = {"libx264": 16384, "libx265": 16384, "prores_ks": 16384}
MAX_OUTPUT_SIDE_DEFAULT = 32768
# Bytes of working memory per output pixel, doubled for deep sources: Lanczos x4 of a 720p frame peaked
# at 6.6 bytes/px (8-bit) and 25 more (16-bit); compose adds float32 copies of face regions.
_BYTES_PER_OUTPUT_PIXEL = 40
# Compressed bytes per output pixel per frame, for the free-space estimate (the work directory holds
# the encoded parts and the final file for a while: both are counted).
_STORED_BYTES_PER_PIXEL = {"ffv1": 1.5, "prores_ks": 1.0, "dpx": 6.0, "tiff": 6.0, "png": 4.0}
_STORED_BYTES_DEFAULT = 0.15
# Output -> estimated bytes the run writes, for the disk-full message.
_estimates: dict[str, int] = {}


def check_io_config(config: Config) -> None:
    """Settings of the io and upscale sections that the dataclass types alone cannot check."""

    if config.io.deinterlace not in ("auto", "on", "off"):
        raise ConfigError(f"io.deinterlace={config.io.deinterlace!r}: must be auto, on or off")
    if not 0.0 <= config.io.max_damaged_fraction <= 1.0:
        raise ConfigError(f"io.max_damaged_fraction={config.io.max_damaged_fraction}: must be in [0, 1]")
    if config.io.sequence_rate <= 0:
        raise ConfigError(f"io.sequence_rate={config.io.sequence_rate}: must be a positive frame rate")
    if config.io.rgb_matrix not in RGB_MATRICES:
        raise ConfigError(f"io.rgb_matrix={config.io.rgb_matrix!r}: must be one of {', '.join(RGB_MATRICES)}")
    if config.upscale.scale < 1:
        raise ConfigError(f"upscale.scale={config.upscale.scale}: must be 1 or more")
    if config.upscale.method not in METHODS:
        raise ConfigError(f"upscale.method={config.upscale.method!r}: must be one of {', '.join(METHODS)}")


def estimated_bytes(output: str | Path) -> int | None:
    """What preflight estimated the run writes for `output` (None when it did not run)."""
    return _estimates.get(str(Path(output)))


def output_preset(config: Config, output: Path) -> EncoderPreset:
    """The preset an output gets: io.preset, or for an image-sequence output the one of its suffix."""

    preset = get_preset(config.io.preset)
    if is_sequence_output(output):
        wanted = SEQUENCE_PRESETS[output.suffix.lower()]
        if preset.name != wanted:
            raise ConfigError(
                f"{output}: an image-sequence output is written with --set io.preset={wanted}, "
                f"not {preset.name}"
            )
    return preset


class Checked(NamedTuple):
    """What preflight found: the input as probed and counted, the encoder preset, and the input
    opened for decoding (its one frame index, which the job's frame count and steps share)."""

    info: VideoInfo
    preset: EncoderPreset
    source: Video


def preflight(input: str | Path, output: str | Path, config: Config, *, overwrite: bool = False) -> Checked:
    """Everything that can be checked before work starts (`Checked`: the probed input, the encoder
    preset and the opened input).

    Raises ConfigError (a bad setting, or a preset the output's container cannot hold), OutputError
    (the output exists without `overwrite`, its directory is missing or read-only, it is the input,
    or another run holds it: LockedError), VideoOpenError for an unusable input, EncodeError for
    streams the container cannot hold, ResourceError for an output too large to make, DiskFullError
    when the disk cannot hold it, and CheckpointError for a model that cannot load.
    Warns about interlaced pictures that will not be deinterlaced and about depth or chroma the
    preset drops.
    """
    from pipeline.io.mux import check_output, plan_streams

    input, output = Path(input), Path(output)
    check_io_config(config)
    set_sequence_rate(config.io.sequence_rate)
    preset = output_preset(config, output)
    encoder_options(preset, preset.pix_fmt_8, config.io.crf)  # a bad setting fails now, not mid-run
    if input.resolve() == output.resolve():  # before "exists": --overwrite is no advice here
        raise OutputError(output, "is the input file; choose another output name")
    check_output(output, overwrite=overwrite)
    if output.suffix.lower() not in preset.suffixes:
        raise ConfigError(
            f"io.preset {preset.name!r} ({preset.codec}) cannot be written to {output.suffix}; "
            f"use {' or '.join(preset.suffixes)}"
        )
    info = probe(input)
    if not is_sequence_output(output) and not is_sequence(input):
        plan_streams(input, output, CONTAINER_FORMATS[output.suffix.lower()])  # fail now, not after encoding
    io = config.io
    source = open_source(input, config)
    info = check_frames(source, info, config)
    video = info.video
    check_size(output, info, preset, config)
    if config.prior.model is not None:
        check_checkpoint(config.prior.model)
    lock.acquire(output, default_workdir(output, config.run.workdir))
    clean_leftovers(output)
    check_space(output, info, preset, config)
    warn_downgrade(input, info, preset, config)
    if video.interlaced and io.deinterlace == "off" and not io.inverse_telecine:
        log.warning("%s: interlaced source upscaled without deinterlacing: expect combing", input)
    if not video.interlaced and io.deinterlace == "auto" and not io.inverse_telecine:
        seen = detect_interlacing(input)
        if seen is not None:
            log.warning(
                "%s: flagged progressive, but the pictures look interlaced (%s field first); if so, "
                "deinterlace with --set io.deinterlace=on",
                input,
                "top" if seen == "tt" else "bottom",
            )
    return Checked(info, preset, source)


def check_frames(source: Video, info: VideoInfo, config: Config) -> VideoInfo:
    """Frames present (the demuxed index) against what the container declares: a count it states,
    or else its duration, which the frames' timestamps must cover (a variable-rate Matroska file
    states no count, and its duration x nominal rate means nothing). Missing more than
    io.max_damaged_fraction fails now; fewer are said. Returns `info` with what the index showed:
    the frame count and whether the rate varies (the probe looked at a few frames only). The index
    is `source`'s (opened, so it has frames)."""
    input, video = source.path, info.video
    time_base, pts = source.time_base, source.pts
    present = len(pts)
    if config.io.inverse_telecine:
        return info
    declared: float | None
    missing: float
    if video.frame_count_stated:
        declared, unit = video.frame_count, "frames"
        missing = 0 if not declared else max(0, declared - present)
        slack: float = max(2, (declared or 0) // 100)  # rate x duration estimates are off by a frame or two
    else:
        declared_s = video.duration or info.duration
        steps = sorted(b - a for a, b in itertools.pairwise(pts))
        last = steps[len(steps) // 2] if steps else 0  # the last frame lasts a typical frame
        covered = (pts[-1] - pts[0] + last) * time_base
        declared = round(float(declared_s), 2) if declared_s else None
        missing = 0 if not declared_s else max(0.0, round(float(declared_s - covered), 2))
        unit, slack = "seconds", max(0.1, (declared or 0) / 100)
    if declared and missing / declared > config.io.max_damaged_fraction:
        raise DecodeError(
            input,
            f"{missing:g} of the {declared:g} {unit} the container declares are missing (truncated or "
            f"damaged), more than io.max_damaged_fraction={config.io.max_damaged_fraction:g}: "
            "the file is unusable",
        )
    if declared and missing > slack:
        log.warning(
            "%s: %g of the %g %s the container declares are missing (truncated or damaged); "
            "the output has the %d frames present",
            input,
            missing,
            declared,
            unit,
            present,
        )
    variable = video.variable_frame_rate or variable_rate(pts)
    return replace(info, video=replace(video, frame_count=present, variable_frame_rate=variable))


def output_size(info: VideoInfo, config: Config) -> tuple[int, int]:
    return info.video.width * config.upscale.scale, info.video.height * config.upscale.scale


def check_size(output: Path, info: VideoInfo, preset: EncoderPreset, config: Config) -> None:
    """An output the encoder cannot take, or frames that cannot fit in memory, fail now."""
    width, height = output_size(info, config)
    limit = MAX_OUTPUT_SIDE.get(preset.codec, MAX_OUTPUT_SIDE_DEFAULT)
    scale = config.upscale.scale
    if max(width, height) > limit:
        fits = max(1, limit // max(info.video.width, info.video.height))
        raise ResourceError(
            f"{output}: upscale.scale={scale} makes {width}x{height} frames; {preset.codec} takes at most "
            f"{limit} pixels a side (scale {fits} fits)"
        )
    available = _available_memory()
    need = width * height * _BYTES_PER_OUTPUT_PIXEL * (2 if info.video.bit_depth > 8 else 1)
    if available is not None and need > available:
        raise ResourceError(
            f"{output}: upscale.scale={scale} makes {width}x{height} frames, which need about "
            f"{need / 1024**3:.1f} GB of memory each; {available / 1024**3:.1f} GB are available"
        )


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_space(output: Path, info: VideoInfo, preset: EncoderPreset, config: Config) -> None:
    """Estimate what the run writes; fail now when the output's filesystem clearly cannot hold it."""
    import shutil

    width, height = output_size(info, config)
    frames = info.video.frame_count or 0
    per_pixel = _STORED_BYTES_PER_PIXEL.get(preset.codec, _STORED_BYTES_DEFAULT)
    depth = 2 if info.video.bit_depth > 8 else 1
    need = int(width * height * frames * per_pixel * depth * 2)  # the parts and the final file
    _estimates[str(output)] = need
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and need // 2 > limit:
        raise DiskFullError(
            output,
            f"the file size limit (ulimit -f) is {limit // 1024} KB; "
            f"this output needs about {need // 2048} KB",
        )
    try:
        free = shutil.disk_usage(output.parent).free
    except OSError:
        return
    if need > free:
        raise DiskFullError(output, disk_full_message(output.parent, need).replace("is full", "is too full"))


def check_checkpoint(model: str) -> None:
    """A light check of the face model before any work: it exists, its format is known and it is
    complete (safetensors header and size, zip directory, pickle opcodes and globals)."""
    import json
    import zipfile

    from pipeline.prior.zoo import resolve_model

    # The format is told by the first bytes, as pipeline.prior.checkpoint.detect_format tells it
    # (without importing torch: this check runs before every job with a model).
    path = Path(resolve_model(model))
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror}") from exc
    if size == 0:
        raise CheckpointError(path, "the file is empty")
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000:
        kind = "reel"
    elif head[:4] == b"PK\x03\x04":
        kind = "rosinality"
    elif head[:1] == b"\x80":
        kind = "pickle"
    else:
        raise CheckpointError(
            path, "not a known checkpoint format (safetensors, PyTorch .pt or network .pkl)"
        )
    if kind == "reel":
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            try:
                header = json.loads(f.read(n))
            except (ValueError, UnicodeDecodeError) as exc:
                raise CheckpointError(path, "the safetensors header is damaged") from exc
        try:
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(path, "the safetensors header is damaged") from exc
        if not ends or size < 8 + n + max(ends):
            raise CheckpointError(path, "the file ends early (truncated or partial download)")
        meta = header.get("__metadata__")
        if not isinstance(meta, dict) or meta.get("format") != "reel-stylegan2":  # cache_format.FORMAT_NAME
            raise CheckpointError(
                path, "a safetensors file, but not a reel generator (convert it with `reel models convert`)"
            )
    elif kind == "rosinality":
        try:
            with zipfile.ZipFile(path) as z:
                if not any(name.endswith("data.pkl") for name in z.namelist()):
                    raise CheckpointError(path, "a zip file, but not a PyTorch checkpoint (no data.pkl)")
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(path, "the file ends early or is damaged (not a complete zip)") from exc
    else:
        scan_pickle(path)


def clean_leftovers(output: Path) -> int:
    """Remove temporary files a killed run left beside `output` (its hidden parts); returns how many.
    Called with the output locked, so they cannot belong to a running job."""
    import contextlib
    import shutil
    from glob import escape

    base, stem = escape(output.name.replace("%", "")), escape(output.stem)
    removed = 0
    for pattern in (
        f".{base}.video.mov",  # io.mux: the joined video
        f".{base}.tmp-*",  # io.mux: image-sequence staging; the writability check
        f".{stem}.partial{escape(output.suffix)}",  # io.mux: the output before its rename
        f".{stem}.part[0-9][0-9][0-9][0-9]*.mov",  # parts beside the output (older versions)
    ):
        for leftover in output.parent.glob(pattern):
            with contextlib.suppress(OSError):
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
                removed += 1
    if removed:
        log.info("%s: removed %d temporary file(s) an interrupted run left", output, removed)
    return removed


def warn_downgrade(input: Path, info: VideoInfo, preset: EncoderPreset, config: Config) -> None:
    """Say when the preset drops depth or chroma the source has, naming the preset that keeps it;
    say which matrix an RGB source is converted with."""

    v = info.video
    width, height = output_size(info, config)
    stored = output_pix_fmt(preset, v.pix_fmt, v.bit_depth > 8, width, height)
    src_chroma, out_chroma = chroma_label(v.pix_fmt), chroma_label(stored)
    src_depth, out_depth = v.bit_depth, format_depth(stored)
    order = {"4:2:0": 0, "4:1:1": 0, "4:1:0": 0, "4:2:2": 1, "4:4:4": 2, "RGB": 2, "gray": 0, "unknown": 0}
    lost = []
    if src_depth > out_depth:
        lost.append(f"{src_depth}-bit depth")
    if order.get(src_chroma, 0) > order.get(out_chroma, 0):
        lost.append(f"{src_chroma} chroma")
    if lost:
        keep = "--preset master (FFV1, lossless)"
        if is_rgb_format(v.pix_fmt):
            keep = "--preset master-rgb (FFV1 RGB) or an image-sequence output (-o out_%06d.dpx)"
        elif src_depth <= 10 and src_chroma == "4:2:2":
            keep += " or --preset mezzanine (ProRes 422 HQ)"
        log.warning(
            "%s: io.preset %s stores %d-bit %s; this source's %s will be lost (%s keeps it)",
            input,
            preset.name,
            out_depth,
            out_chroma,
            " and ".join(lost),
            keep,
        )
    if is_rgb_format(v.pix_fmt) and not is_rgb_format(stored):
        log.info(
            "%s: RGB source converted to YUV (%s) with the %s matrix (io.rgb_matrix), tagged so",
            input,
            stored,
            config.io.rgb_matrix,
        )
