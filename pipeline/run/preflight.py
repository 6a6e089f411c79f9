"""The checks every restore path makes before any work starts (in-process, Ray, frame-only, batch).

A bad setting, an unwritable or clashing output, an unreadable input or streams the output container
cannot hold fail here, in seconds, with the PipelineError a user should see, never after an hour of
search and encoding.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import ConfigError, OutputError
from pipeline.io.presets import EncoderPreset
from pipeline.types import VideoInfo

log = logging.getLogger(__name__)


def check_io_config(config: Config) -> None:
    """Settings of the io and upscale sections that the dataclass types alone cannot check."""
    from pipeline.frame.upscale import METHODS

    if config.io.deinterlace not in ("auto", "on", "off"):
        raise ConfigError(f"io.deinterlace={config.io.deinterlace!r}: must be auto, on or off")
    if not 0.0 <= config.io.max_damaged_fraction <= 1.0:
        raise ConfigError(f"io.max_damaged_fraction={config.io.max_damaged_fraction}: must be in [0, 1]")
    if config.upscale.scale < 1:
        raise ConfigError(f"upscale.scale={config.upscale.scale}: must be 1 or more")
    if config.upscale.method not in METHODS:
        raise ConfigError(f"upscale.method={config.upscale.method!r}: must be one of {', '.join(METHODS)}")


def preflight(
    input: str | Path, output: str | Path, config: Config, *, overwrite: bool = False
) -> tuple[VideoInfo, EncoderPreset]:
    """Everything that can be checked before work starts; returns the probed input and the encoder preset.

    Raises ConfigError (a bad setting, or a preset the output's container cannot hold), OutputError
    (the output exists without `overwrite`, its directory is missing, or it is the input),
    VideoOpenError for an unusable input, and the mux's error for streams the container cannot hold.
    Warns about interlaced pictures that will not be deinterlaced.
    """
    from pipeline.io.mux import check_output, plan_streams
    from pipeline.io.presets import CONTAINER_FORMATS, encoder_options, get_preset
    from pipeline.io.probe import detect_interlacing, probe

    input, output = Path(input), Path(output)
    check_io_config(config)
    preset = get_preset(config.io.preset)
    encoder_options(preset, preset.pix_fmt_8, config.io.crf)  # a bad setting fails now, not mid-run
    check_output(output, overwrite=overwrite)
    if output.suffix.lower() not in preset.suffixes:
        raise ConfigError(
            f"io.preset {preset.name!r} ({preset.codec}) cannot be written to {output.suffix}; "
            f"use {' or '.join(preset.suffixes)}"
        )
    if input.resolve() == output.resolve():
        raise OutputError(output, "is the input file; choose another output name")
    info = probe(input)
    plan_streams(input, output, CONTAINER_FORMATS[output.suffix.lower()])  # fail now, not after encoding
    video, io = info.video, config.io
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
    return info, preset
