"""Encoder presets: archival master, mezzanine and delivery, as ffmpeg output options.

A preset decides the codec, its options, the pixel format it stores and the container an output
gets when its name has no usable suffix. Pixel formats follow the source where the codec allows
(an FFV1 master keeps 10-bit 4:2:2 as 10-bit 4:2:2); sizes that chroma subsampling cannot
represent exactly (odd widths or heights) are stored as 4:4:4 instead of losing a row or column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from pipeline.errors import ConfigError

# Containers the final mux writes, by output suffix (PyAV / libavformat names).
CONTAINER_FORMATS = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".m4v": "mp4"}


@dataclass(frozen=True)
class EncoderPreset:
    name: str
    codec: str  # ffmpeg encoder
    suffixes: tuple[str, ...]  # containers that take this codec; the first is the default
    options: dict[str, str] = field(default_factory=dict)  # ffmpeg output options for the encoder
    crf: int | None = None  # default quality for CRF codecs
    pix_fmt_8: str = "yuv420p"  # stored format for 8-bit sources (unless the source's is kept)
    pix_fmt_deep: str = "yuv420p10le"  # stored format for deeper sources
    keeps_source_format: bool = False  # store the source's own pixel format when the codec takes it
    codec_tag: str | None = None  # fourcc in MP4/MOV (e.g. hvc1, which Apple players require)
    quiet: tuple[str, ...] = ()  # options that silence the encoder's own banner on stderr
    rgb: bool = False  # stores RGB (gbrp...), never converted to YUV


# Pixel formats FFV1 stores losslessly (a subset: the planar YUV/gray ones archives use).
_FFV1_FORMATS = {
    f"{base}{depth}"
    for base in ("yuv420p", "yuv422p", "yuv444p")
    for depth in ("", "9le", "10le", "12le", "14le", "16le")
} | {"gray", "gray10le", "gray12le", "gray16le", "yuv411p", "yuv410p"}
# RGB formats FFV1 stores losslessly (planar GBR, 8 to 16 bits).
_FFV1_RGB = {"gbrp", "gbrp9le", "gbrp10le", "gbrp12le", "gbrp14le", "gbrp16le"}
_FFV1_FORMATS |= _FFV1_RGB
# Packed or planar RGB formats decoders give: a source in one of these is an RGB source.
_RGB_PREFIXES = ("gbr", "rgb", "bgr", "argb", "abgr", "0rgb", "0bgr", "x2rgb", "x2bgr")
# Image-sequence outputs (pipeline.io.sequence.OUTPUT_CODECS): parts are written in this codec.
SEQUENCE_PRESETS = {
    ".dpx": "sequence-dpx",
    ".tif": "sequence-tiff",
    ".tiff": "sequence-tiff",
    ".png": "sequence-png",
}

# FFV1 version 3, intra-only, per-slice CRCs: every frame independently decodable and checkable.
_FFV1_OPTIONS = {"level": "3", "g": "1", "slices": "4", "slicecrc": "1", "context": "1"}


def _master(name: str, pix_fmt_8: str, pix_fmt_deep: str, rgb: bool) -> EncoderPreset:
    """A lossless FFV1 master that keeps the source's own pixel format where FFV1 stores it."""
    return EncoderPreset(
        name=name,
        codec="ffv1",
        suffixes=(".mkv", ".mov"),
        options=_FFV1_OPTIONS,
        pix_fmt_8=pix_fmt_8,
        pix_fmt_deep=pix_fmt_deep,
        keeps_source_format=True,
        rgb=rgb,
    )


def _sequence(name: str, codec: str, suffixes: tuple[str, ...], pix_fmt_deep: str) -> EncoderPreset:
    """An image-sequence preset: RGB frames, 8-bit or `pix_fmt_deep`."""
    return EncoderPreset(name, codec, suffixes, pix_fmt_8="rgb24", pix_fmt_deep=pix_fmt_deep, rgb=True)


_ALL = (
    _master("master-ffv1", "yuv444p", "yuv444p16le", rgb=False),
    # FFV1 RGB (planar GBR): film scans stay RGB at their own depth, losslessly.
    _master("master-rgb", "gbrp", "gbrp16le", rgb=True),
    _sequence("sequence-dpx", "dpx", (".dpx",), "rgb48le"),
    _sequence("sequence-tiff", "tiff", (".tiff", ".tif"), "rgb48le"),
    _sequence("sequence-png", "png", (".png",), "rgb48be"),
    EncoderPreset(
        name="mezzanine-prores",
        codec="prores_ks",
        suffixes=(".mov", ".mkv"),
        options={"profile:v": "3", "vendor": "apl0"},  # profile 3 = ProRes 422 HQ
        pix_fmt_8="yuv422p10le",
        pix_fmt_deep="yuv422p10le",
    ),
    EncoderPreset(
        name="delivery-x264",
        codec="libx264",
        suffixes=(".mp4", ".mkv", ".mov"),
        options={"preset": "medium"},
        crf=18,
        pix_fmt_8="yuv420p",
        pix_fmt_deep="yuv420p",  # 8-bit: what every player decodes
    ),
    EncoderPreset(
        name="delivery-x265",
        codec="libx265",
        suffixes=(".mp4", ".mkv", ".mov"),
        options={"preset": "medium"},
        crf=20,
        pix_fmt_8="yuv420p10le",
        pix_fmt_deep="yuv420p10le",  # 10-bit even from 8-bit sources: smoother gradients, no banding
        codec_tag="hvc1",
        quiet=("x265-params", "log-level=error"),
    ),
)
PRESETS: dict[str, EncoderPreset] = {p.name: p for p in _ALL}


def mov_timescale(time_base: Fraction) -> int:
    """A MOV/MP4 timescale that represents every tick of `time_base` exactly.

    Used for the movie header too: MOV edit lists (which place a stream that does not start at 0)
    count in the movie timescale, 1/1000 s by default, which would round a start of 7 NTSC frames.
    """
    scale = time_base.denominator
    while scale < 10000:  # the same rule libavformat uses for video tracks
        scale *= 2
    return scale


def get_preset(name: str) -> EncoderPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"io.preset {name!r}: not one of {', '.join(PRESETS)}") from None


def _subsampling(pix_fmt: str) -> tuple[int, int]:
    """(horizontal, vertical) chroma subsampling factors of a planar YUV format."""
    if pix_fmt.startswith(("yuv420", "yuvj420")):
        return 2, 2
    if pix_fmt.startswith(("yuv422", "yuvj422")):
        return 2, 1
    if pix_fmt.startswith("yuv411"):
        return 4, 1
    if pix_fmt.startswith("yuv410"):
        return 4, 4
    return 1, 1


def _as_444(pix_fmt: str) -> str:
    for prefix in ("yuv420p", "yuv422p", "yuv411p", "yuv410p"):
        if pix_fmt.startswith(prefix):
            return "yuv444p" + pix_fmt[len(prefix) :]
    return pix_fmt


def is_rgb_format(pix_fmt: str | None) -> bool:
    """True for RGB pixel formats (gbrp10le, rgb48le, bgr0, ...), False for YUV and gray."""
    return bool(pix_fmt) and str(pix_fmt).startswith(_RGB_PREFIXES)


def chroma_label(pix_fmt: str | None) -> str:
    """ "4:2:0", "4:2:2", "4:4:4", "RGB" or "gray", for messages."""
    if not pix_fmt:
        return "unknown"
    if is_rgb_format(pix_fmt):
        return "RGB"
    if pix_fmt.startswith("gray"):
        return "gray"
    sx, sy = _subsampling(pix_fmt)
    return {(2, 2): "4:2:0", (2, 1): "4:2:2", (4, 1): "4:1:1", (4, 4): "4:1:0"}.get((sx, sy), "4:4:4")


def format_depth(pix_fmt: str | None) -> int:
    """Bits per component of a pixel format (8 when unknown)."""
    import re

    if not pix_fmt:
        return 8
    if pix_fmt.startswith(("rgb48", "bgr48", "rgba64", "bgra64")):
        return 16
    m = re.search(r"p(\d+)(le|be)$", pix_fmt) or re.search(r"gray(\d+)", pix_fmt)
    return int(m.group(1)) if m else 8


def output_pix_fmt(
    preset: EncoderPreset, source_pix_fmt: str | None, deep: bool, width: int, height: int
) -> str:
    """The pixel format stored: the source's where the preset keeps it, else the preset's own.

    An RGB preset keeps an RGB source's planar form and depth (bgr0 becomes gbrp); a YUV master
    keeps a YUV source's. A YUV-keeping master given an RGB source stores it as RGB too, since a
    matrix conversion is not lossless.
    """
    source = source_pix_fmt or ""
    keeps = preset.keeps_source_format and source in _FFV1_FORMATS
    pix_fmt: str
    if keeps and (preset.rgb == (source in _FFV1_RGB)):
        pix_fmt = source
    elif preset.keeps_source_format and is_rgb_format(source):
        pix_fmt = source if source in _FFV1_RGB else ("gbrp16le" if deep else "gbrp")
    else:
        pix_fmt = preset.pix_fmt_deep if deep else preset.pix_fmt_8
    if is_rgb_format(pix_fmt):
        return pix_fmt
    sx, sy = _subsampling(pix_fmt)
    if width % sx or height % sy:
        pix_fmt = _as_444(pix_fmt)
    if preset.codec == "prores_ks" and pix_fmt.startswith("yuv444"):
        pix_fmt = "yuv444p10le"
    return pix_fmt


def encoder_options(preset: EncoderPreset, pix_fmt: str, crf: int | None) -> dict[str, str]:
    """ffmpeg output options for the video encoder (without colour tags or filters)."""
    opts = {"c:v": preset.codec, "pix_fmt": pix_fmt, **preset.options}
    if preset.codec == "prores_ks" and pix_fmt.startswith("yuv444"):
        opts["profile:v"] = "4"  # ProRes 4444: the only ProRes that stores full-resolution chroma
    quality = crf if crf is not None else preset.crf
    if crf is not None and (preset.crf is None or not 0 <= crf <= 51):
        what = "between 0 and 51" if preset.crf is not None else f"unused by {preset.name} (lossless/intra)"
        raise ConfigError(f"io.crf={crf}: must be {what}")
    if quality is not None:
        opts["crf"] = str(quality)
    if preset.quiet:
        opts[preset.quiet[0]] = preset.quiet[1]
    return opts
