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
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import Config, dump_config
from pipeline.errors import OutputError
from pipeline.run.preflight import preflight
from pipeline.types import VideoFrame, VideoStreamInfo

if TYPE_CHECKING:
    from pipeline.io.decode import FrameReader
    from pipeline.io.writer import VideoWriter

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
    from pipeline.io.mux import mux
    from pipeline.io.presets import output_pix_fmt

    started = time.perf_counter()
    source, output = Path(input), Path(output)
    info, preset = preflight(source, output, config, overwrite=overwrite)
    video = info.video

    scale, method = config.upscale.scale, config.upscale.method
    reader = iter_frames(
        source,
        deinterlace=config.io.deinterlace,
        inverse_telecine=config.io.inverse_telecine,
        max_damaged_fraction=config.io.max_damaged_fraction,
    )
    # Nothing changes the pictures (scale 1, no hook) and the stored format is the source's: hand the
    # decoded frames to the encoder as they are, skipping a lossy and costly RGB round trip.
    out_pix_fmt = output_pix_fmt(preset, video.pix_fmt, video.bit_depth > 8, video.width, video.height)
    native = (
        scale == 1 and frame_hook is None and out_pix_fmt == video.pix_fmt and not config.io.inverse_telecine
    )
    part = output.with_name(f".{output.stem}.part0000.mov")
    writer: VideoWriter | None = None
    frames = 0
    bar = tqdm(total=video.frame_count, unit="frame", desc=source.name, disable=not progress, smoothing=0.1)
    try:
        with reader:
            if native:
                writer = _writer(
                    part, (video.width, video.height), video.bit_depth > 8, reader, config, video
                )
                writer.open()
                for _, pts, av_frame in reader.native_frames():
                    writer.write_frame(av_frame, pts)
                    frames += 1
                    bar.update()
            for frame in () if native else reader:
                image = upscale(frame.image, scale, method)  # [H*s, W*s, 3], source dtype
                if frame_hook is not None:
                    image = frame_hook(frame, image)
                if writer is None:
                    # Opened at the first frame: inverse telecine sets the time base as it decodes.
                    size = (image.shape[1], image.shape[0])
                    writer = _writer(part, size, image.dtype == np.uint16, reader, config, video, rgb=True)
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


def _writer(
    part: Path,
    size: tuple[int, int],
    deep: bool,
    reader: FrameReader,
    config: Config,
    video: VideoStreamInfo,
    *,
    rgb: bool = False,
) -> VideoWriter:
    """The encoder for this run: RGB images (`rgb`) or decoded frames in the source's own format."""
    from pipeline.io.writer import VideoWriter

    return VideoWriter(
        part,
        width=size[0],
        height=size[1],
        time_base=reader.time_base,
        frame_rate=reader.frame_rate,
        preset=config.io.preset,
        crf=config.io.crf,
        deep=deep,
        native_format=None if rgb else video.pix_fmt,
        source_pix_fmt=video.pix_fmt,
        color=video.color,
        sample_aspect_ratio=video.sample_aspect_ratio,
    )
