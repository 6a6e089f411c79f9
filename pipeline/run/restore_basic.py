"""The frame-only restore path: decode → upscale → (per-frame hook) → encode → mux, in one process.

This is the single-part case of the segment design: one VideoWriter part, joined with the source's
audio and subtitles by `mux`. Later stages plug in through `frame_hook` (the faces stage pastes
restored faces into the upscaled frame) and by running the same steps per frame range elsewhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import Config, dump_config
from pipeline.errors import ConfigError, OutputError
from pipeline.types import VideoFrame

log = logging.getLogger(__name__)

# hook(frame, upscaled) -> the image to encode (same shape and dtype as `upscaled`)
FrameHook = Callable[[VideoFrame, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RestoreResult:
    output: Path
    frames: int  # frames encoded
    damaged: int  # frames the decoder flagged or could not decode
    seconds: float  # wall time of the whole run
    size: tuple[int, int]  # output width, height

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def config_path_for(output: Path) -> Path:
    """The resolved config is written next to the output as `<output>.config.yaml`."""
    return output.with_name(output.name + ".config.yaml")


def restore_frames(
    input: str | Path,
    output: str | Path,
    config: Config,
    *,
    overwrite: bool = False,
    frame_hook: FrameHook | None = None,
    progress: bool = True,
) -> RestoreResult:
    """Restore `input` into `output` (whole-frame upscale by config.upscale.scale).

    Raises VideoOpenError/DecodeError for unusable input and OutputError/EncodeError when the output
    cannot be written; on any failure an existing `output` is left untouched and no partial file
    remains.
    """
    from tqdm import tqdm

    from pipeline.frame.upscale import upscale
    from pipeline.io.decode import iter_frames
    from pipeline.io.mux import check_output, mux, plan_streams
    from pipeline.io.presets import CONTAINER_FORMATS, encoder_options, get_preset
    from pipeline.io.probe import probe
    from pipeline.io.writer import VideoWriter

    started = time.perf_counter()
    source, output = Path(input), Path(output)
    preset = get_preset(config.io.preset)
    encoder_options(preset, preset.pix_fmt_8, config.io.crf)  # a bad setting fails now, not mid-run
    check_output(output, overwrite=overwrite)
    if output.suffix.lower() not in preset.suffixes:
        raise ConfigError(
            f"io.preset {preset.name!r} ({preset.codec}) cannot be written to {output.suffix}; "
            f"use {' or '.join(preset.suffixes)}"
        )
    if source.resolve() == output.resolve():
        raise OutputError(output, "is the input file; choose another output name")
    info = probe(source)
    plan_streams(source, output, CONTAINER_FORMATS[output.suffix.lower()])  # fail now, not after encoding
    video = info.video
    if video.interlaced and config.io.deinterlace == "off" and not config.io.inverse_telecine:
        log.warning("%s: interlaced source upscaled without deinterlacing: expect combing", source)

    scale, method = config.upscale.scale, config.upscale.method
    reader = iter_frames(
        source,
        deinterlace=config.io.deinterlace,
        inverse_telecine=config.io.inverse_telecine,
        max_damaged_fraction=config.io.max_damaged_fraction,
    )
    part = output.with_name(f".{output.stem}.part0000.mov")
    writer: VideoWriter | None = None
    frames = 0
    bar = tqdm(total=video.frame_count, unit="frame", desc=source.name, disable=not progress, smoothing=0.1)
    try:
        with reader:
            for frame in reader:
                image = upscale(frame.image, scale, method)  # [H*s, W*s, 3], source dtype
                if frame_hook is not None:
                    image = frame_hook(frame, image)
                if writer is None:
                    # Opened at the first frame: inverse telecine sets the time base as it decodes.
                    writer = VideoWriter(
                        part,
                        width=image.shape[1],
                        height=image.shape[0],
                        time_base=reader.time_base,
                        frame_rate=reader.frame_rate,
                        preset=preset,
                        crf=config.io.crf,
                        deep=image.dtype == np.uint16,
                        source_pix_fmt=video.pix_fmt,
                        color=video.color,
                        sample_aspect_ratio=video.sample_aspect_ratio,
                    )
                    writer.open()
                writer.write(image, frame.pts)
                frames += 1
                bar.update()
        if writer is None:
            raise OutputError(output, "no frame was decoded, nothing to write")
        writer.close()
        size = (writer.width, writer.height)
        mux(
            [part],
            source,
            output,
            overwrite=overwrite,
            color=video.color,
            rotation=video.rotation,
            frame_rate=reader.frame_rate,
            variable_frame_rate=video.variable_frame_rate and not config.io.inverse_telecine,
            sample_aspect_ratio=video.sample_aspect_ratio,
            codec_tag=preset.codec_tag,
        )
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
        part.unlink(missing_ok=True)
    dump_config(config, config_path_for(output))
    seconds = time.perf_counter() - started
    result = RestoreResult(
        output=output, frames=frames, damaged=reader.stats.damaged, seconds=seconds, size=size
    )
    log.info(
        "%s: %d frames (%d damaged) at %dx%d in %.1fs (%.1f frames/s)",
        output,
        frames,
        result.damaged,
        size[0],
        size[1],
        seconds,
        result.fps,
    )
    return result
