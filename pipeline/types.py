"""The data that crosses stage boundaries: one obvious type per boundary.

    probe ──► scan ──► crops ──► search ──► compose ──► mux
     VideoInfo  Track    FaceCrop   FaceRestoration  frames   output file

Conventions used in every field comment:
- Images are numpy arrays [H, W, C] (C = 3, RGB), float32 in [0, 1] unless stated otherwise.
- Pixel coordinates are in the *source* frame (after rotation is NOT applied: stored orientation),
  x to the right, y down, pixel centres at integer + 0.5.
- Times are exact: `pts` is an integer in the stream's `time_base` (a Fraction of seconds).
- Frame indices count decoded frames from 0 in presentation order.
These types are plain frozen dataclasses: cheap to pickle for Ray, no torch inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class ColorTags:
    """Colour description as FFmpeg names it (None = unspecified in the source)."""

    primaries: str | None = None  # e.g. "bt709", "bt470bg", "smpte170m"
    transfer: str | None = None  # e.g. "bt709", "smpte170m", "arib-std-b67"
    matrix: str | None = None  # e.g. "bt709", "bt470bg", "smpte170m"
    range: str | None = None  # "tv" (limited) or "pc" (full)


@dataclass(frozen=True)
class VideoStreamInfo:
    index: int  # stream index in the container
    codec: str  # FFmpeg codec name, e.g. "h264", "ffv1"
    width: int  # coded picture width in pixels (stored orientation)
    height: int  # coded picture height in pixels
    pix_fmt: str  # FFmpeg pixel format, e.g. "yuv420p", "yuv422p10le"
    bit_depth: int  # bits per component (8, 10, 12, 16)
    time_base: Fraction  # seconds per pts tick
    frame_rate: Fraction | None  # nominal rate (avg or r_frame_rate); None if unknown
    variable_frame_rate: bool  # True when frame durations differ
    frame_count: int | None  # exact when probed with exact=True, else the container's claim or estimate
    duration: Fraction | None  # seconds
    start_pts: int | None  # pts of the first frame, in time_base
    sample_aspect_ratio: Fraction  # pixel aspect; 1 for square pixels
    rotation: int  # display rotation in degrees clockwise (0, 90, 180, 270)
    field_order: str  # "progressive", "tt", "bb", "tb", "bt" or "unknown"
    interlaced: bool  # True when frames are coded as fields (or the idet filter says so)
    color: ColorTags = ColorTags()
    # True when frame_count was counted or stated by the container; False when it is duration x rate
    # (Matroska states no count), which a variable-rate file makes meaningless.
    frame_count_stated: bool = True

    @property
    def display_aspect_ratio(self) -> Fraction:
        return Fraction(self.width, self.height) * self.sample_aspect_ratio


@dataclass(frozen=True)
class AudioStreamInfo:
    index: int
    codec: str  # e.g. "aac", "pcm_s16le", "flac"
    sample_rate: int
    channels: int
    channel_layout: str | None
    time_base: Fraction
    language: str | None = None


@dataclass(frozen=True)
class SubtitleStreamInfo:
    index: int
    codec: str  # e.g. "subrip", "ass", "mov_text", "dvd_subtitle"
    language: str | None = None


@dataclass(frozen=True)
class VideoInfo:
    """Everything `probe` learns about a file; the contract for every later stage."""

    path: Path
    container: str  # FFmpeg demuxer name, e.g. "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2"
    duration: Fraction | None  # container duration in seconds
    video: VideoStreamInfo  # the main video stream
    audio: tuple[AudioStreamInfo, ...] = ()
    subtitles: tuple[SubtitleStreamInfo, ...] = ()
    frame_pts: tuple[int, ...] | None = None  # every frame's pts (exact probe only)
    metadata: dict[str, str] = field(default_factory=dict)  # container tags (title, ...)


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One decoded frame, as the decoder hands it on."""

    index: int  # presentation-order index from the start of the stream
    pts: int  # presentation timestamp in the stream's time_base
    time: Fraction  # pts * time_base, seconds
    image: np.ndarray  # [H, W, 3] RGB; uint8 for 8-bit sources, uint16 for deeper ones
    # film regrain: the grain measured in the source, put back at output resolution by compose
    # ([bands + 1] float32: std 0..1 per brightness band, then size in source px); None: not measured
    grain: np.ndarray | None = None
    # film: [H, W] bool, the pixels a dust or scratch fill synthesised (the provenance matte); None: none
    filled: np.ndarray | None = None


# ----------------------------------------------------------------------------- scan


@dataclass(frozen=True, eq=False)
class Detection:
    """One face found by a detector in one frame (source pixel coordinates)."""

    frame_index: int
    box: np.ndarray  # [4] float32: x0, y0, x1, y1
    landmarks: np.ndarray  # [5, 2] float32: left eye, right eye, nose, mouth left, mouth right
    score: float  # detector confidence in [0, 1]


@dataclass(frozen=True)
class Shot:
    """A run of frames between scene cuts: [start, end) in frame indices."""

    index: int
    start: int
    end: int


@dataclass(frozen=True, eq=False)
class TrackFrame:
    """One row of a track: where a face is in one frame, after linking, gap filling and smoothing."""

    track_id: int
    frame_index: int
    box: np.ndarray  # [4] float32 x0, y0, x1, y1
    landmarks: np.ndarray  # [5, 2] float32, temporally smoothed
    score: float  # detector score; 0 for interpolated rows
    interpolated: bool  # True when the row fills a gap (no detection in this frame)


@dataclass(frozen=True)
class Track:
    """One person's face through one shot; never crosses a scene cut."""

    track_id: int
    shot: int  # Shot.index
    frames: tuple[TrackFrame, ...]  # consecutive frame indices, no gaps

    @property
    def start(self) -> int:
        return self.frames[0].frame_index

    @property
    def end(self) -> int:  # exclusive
        return self.frames[-1].frame_index + 1


# ----------------------------------------------------------------------------- crops


@dataclass(frozen=True, eq=False)
class FaceCrop:
    """An FFHQ-aligned crop at the face's native resolution: the low-resolution search target."""

    track_id: int
    frame_index: int
    image: np.ndarray  # [S, S, 3] float32 in [0, 1]; S = native size of the aligned face in source px
    crop_to_frame: np.ndarray  # [2, 3] float64 affine: crop pixel (x, y, 1) -> source frame pixel
    gray: bool  # True when the footage is black and white (decided once per video)


# ----------------------------------------------------------------------------- search


@dataclass(frozen=True, eq=False)
class FaceRestoration:
    """The search's answer for one face-frame."""

    track_id: int
    frame_index: int
    latents: np.ndarray  # [num_ws, w_dim] float32, in W+ (not the Gaussianised space)
    image: np.ndarray  # [R, R, 3] float32 in [0, 1]; R = generator resolution
    psnr: float  # dB, downscaled restoration vs the low-resolution target
    met_bound: bool  # True when the loss reached the configured eps
    steps: int  # optimiser steps spent on this frame
    invented: bool = True  # always True: the detail comes from the prior (see INVENTED_DETAIL_NOTICE)
