"""Test media: small clips generated with ffmpeg's lavfi sources, and readers for what tests assert.

Every round-trip test in the project asks the same questions of a file: how many frames, at which
exact timestamps, which audio packets (byte for byte), which colour tags and aspect. The readers here
answer them with PyAV, independently of the pipeline's own probe/decode code.

Clips are cached per test session: `MediaCache.for_session(tmp_path_factory).clip(**spec)` makes a clip
once per distinct spec. Example (in a conftest or test module):

    @pytest.fixture(scope="session")
    def media(tmp_path_factory):
        return MediaCache.for_session(tmp_path_factory)

    def test_x(media):
        path = media.clip(size=(64, 48), rate="30000/1001", frames=30, audio=2)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"

# Audio codec that each container takes without complaint (used when a spec does not name one).
_DEFAULT_AUDIO = {".mp4": "aac", ".mov": "pcm_s16le", ".mkv": "flac", ".nut": "pcm_s16le", ".ts": "mp2"}
_SUBTITLE_CODEC = {".mp4": "mov_text", ".mov": "mov_text", ".mkv": "srt"}


@dataclass(frozen=True)
class ClipSpec:
    """What to generate. Every field has a small default so a test names only what it cares about."""

    size: tuple[int, int] = (64, 48)  # width, height
    rate: str = "25"  # frame rate as ffmpeg parses it, e.g. "30000/1001"
    frames: int = 25  # number of video frames
    pix_fmt: str = "yuv420p"
    codec: str = "libx264"  # video encoder
    container: str = ".mkv"  # output suffix: ".mkv", ".mp4", ".mov", ".nut"
    source: str = "testsrc2"  # lavfi video source: "testsrc2", "mandelbrot", "smptebars", ...
    audio: int = 0  # number of audio streams (sine tones of different pitch)
    audio_codec: str | None = None  # None = the container's usual codec
    audio_rate: int = 48000
    vfr: bool = False  # irregular frame durations (alternating 1.5 and 0.5 frame periods)
    interlaced: str | None = None  # "tff" or "bff": fields woven from a source at twice the rate
    interlace_flags: bool = True  # False: woven fields coded as progressive frames (a careless transfer)
    telecine: bool = False  # 3:2 pulldown of a `rate`*4/5 source (a telecined 24 -> 30 film)
    subtitles: bool = False  # one text subtitle stream
    rotation: int = 0  # display rotation in degrees (clockwise, as players show it)
    color: tuple[str, str, str, str] | None = None  # primaries, transfer, matrix, range tags
    sar: str | None = None  # sample aspect ratio, e.g. "16/15"
    gop: int | None = None  # keyframe interval (frames); None = the encoder's default
    bframes: int | None = None  # x264 B-frames; None = the encoder's default
    title: str | None = None  # container title tag
    chapters: int = 0  # number of chapters, evenly spaced over the clip
    timecode: str | None = None  # start timecode, e.g. "10:00:00:00" (a tmcd track in MOV/MP4)
    start: float = 0.0  # timestamp of the first frame in seconds (broadcast captures rarely start at 0)

    def key(self) -> str:
        return hashlib.sha1(json.dumps(self.__dict__, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")


def make_clip(path: Path, spec: ClipSpec | None = None, **kwargs: Any) -> Path:
    """Generate a clip at `path` (its suffix is replaced by the spec's container)."""
    spec = spec or ClipSpec(**kwargs)
    path = path.with_suffix(spec.container)
    width, height = spec.size
    rate = Fraction(spec.rate)
    src_rate = rate * 2 if spec.interlaced else rate * Fraction(4, 5) if spec.telecine else rate
    duration = float(Fraction(spec.frames) / rate) + 0.5  # generous; -frames:v trims exactly
    # Some sources only make even sizes: generate one size up and crop (in 4:4:4, which allows odd sizes).
    gen_w, gen_h = width + width % 2, height + height % 2
    cmd = [FFMPEG, "-v", "error", "-y", "-f", "lavfi"]
    if spec.source == "mandelbrot":
        # A fast zoom: natural-looking motion everywhere (idet reads it correctly, unlike testsrc2).
        cmd += ["-i", f"mandelbrot=s={gen_w}x{gen_h}:rate={src_rate}:end_scale=0.01"]
    else:
        cmd += ["-i", f"{spec.source}=s={gen_w}x{gen_h}:r={src_rate}:d={duration * 2 + 1}"]
    for i in range(spec.audio):
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={330 + 110 * i}:sample_rate={spec.audio_rate}"]
    if spec.subtitles:
        srt = path.with_suffix(".srt")
        srt.write_text(
            "1\n00:00:00,000 --> 00:00:00,400\nfirst line\n\n2\n00:00:00,500 --> 00:00:00,900\nsecond line\n"
        )
        cmd += ["-i", str(srt)]
    meta_input = 1 + spec.audio + int(spec.subtitles)
    if spec.chapters:
        # Chapters come from an FFMETADATA file (lavfi sources cannot carry them).
        span_ms = int(1000 * spec.frames / rate)
        step = span_ms // spec.chapters
        meta = [";FFMETADATA1"]
        for c in range(spec.chapters):
            meta += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={c * step}", f"END={(c + 1) * step}"]
            meta += [f"title=Part {c + 1}"]
        ffmeta = path.with_suffix(".ffmeta")
        ffmeta.write_text("\n".join(meta) + "\n")
        cmd += ["-f", "ffmetadata", "-i", str(ffmeta)]

    filters: list[str] = []
    if (gen_w, gen_h) != (width, height):
        filters += ["format=yuv444p", f"crop={width}:{height}:0:0"]
    if spec.interlaced:
        mode = "interleave_top" if spec.interlaced == "tff" else "interleave_bottom"
        filters += [
            f"tinterlace=mode={mode}",
            f"setfield={spec.interlaced if spec.interlace_flags else 'prog'}",
        ]
    if spec.telecine:
        filters += ["telecine=first_field=top:pattern=23"]
    if spec.vfr:
        # Frame n lasts 1.5 periods when n is even and 0.5 when odd: timestamps n, n+1.5, n+2, n+3.5, ...
        filters += ["settb=1/1000", f"setpts='trunc((N + 0.5*mod(N,2)) * 1000 / {float(rate)})'"]
    if spec.sar:
        filters += [f"setsar={spec.sar}"]
    if filters:
        cmd += ["-vf", ",".join(filters)]

    cmd += ["-map", "0:v"]
    for i in range(spec.audio):
        cmd += ["-map", f"{i + 1}:a"]
    if spec.subtitles:
        cmd += ["-map", f"{spec.audio + 1}:s", "-c:s", _SUBTITLE_CODEC.get(spec.container, "srt")]
    cmd += ["-frames:v", str(spec.frames), "-c:v", spec.codec, "-pix_fmt", spec.pix_fmt]
    if spec.codec == "libx264":
        cmd += ["-preset", "ultrafast"]
        if spec.interlaced and spec.interlace_flags:
            cmd += ["-flags", "+ildct+ilme", "-x264opts", "tff=1" if spec.interlaced == "tff" else "bff=1"]
        if spec.bframes is not None:
            cmd += ["-bf", str(spec.bframes)]
    if spec.codec == "mpeg2video" and spec.bframes is not None:
        cmd += ["-bf", str(spec.bframes), "-flags", "-cgop"]  # open GOPs, as broadcast MPEG-2 has
    if spec.codec == "libx265":
        cmd += ["-x265-params", "log-level=error"]
    if spec.gop is not None:
        cmd += ["-g", str(spec.gop)]
    if spec.vfr:
        cmd += ["-fps_mode:v", "passthrough", "-enc_time_base:v", "1/1000"]
    else:
        cmd += ["-r", spec.rate]
    if spec.audio:
        codec = spec.audio_codec or _DEFAULT_AUDIO.get(spec.container, "pcm_s16le")
        cmd += ["-c:a", codec, "-t", f"{float(Fraction(spec.frames) / rate):.6f}"]
        for i in range(spec.audio):
            cmd += [f"-metadata:s:a:{i}", f"language={['eng', 'fra', 'deu', 'ita'][i % 4]}"]
    if spec.color:
        primaries, transfer, matrix, crange = spec.color
        cmd += ["-color_primaries", primaries, "-color_trc", transfer, "-colorspace", matrix]
        cmd += ["-color_range", crange]
    if spec.chapters:
        cmd += ["-map_chapters", str(meta_input)]
    if spec.timecode:
        cmd += ["-timecode", spec.timecode]
    if spec.title:
        cmd += ["-metadata", f"title={spec.title}"]
    if spec.start:
        cmd += ["-output_ts_offset", f"{spec.start:.6f}"]
    # ffmpeg 5.1's CLI cannot set a display matrix; PyAV adds it afterwards by remuxing.
    raw = path.with_name(path.stem + ".raw" + spec.container) if spec.rotation else path
    _run([*cmd, str(raw)])
    if spec.rotation:
        _remux_with_rotation(raw, path, spec.rotation)
        raw.unlink()
    return path


def _remux_with_rotation(src: Path, dst: Path, degrees_clockwise: int) -> None:
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        mapping = {}
        for stream in inp.streams:
            o = out.add_stream_from_template(stream)
            if stream.type == "video":
                o.set_display_rotation(-degrees_clockwise)  # PyAV takes counter-clockwise degrees
            mapping[stream.index] = o
        for packet in inp.demux():
            if packet.dts is None and packet.size == 0:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- readers


@dataclass
class StreamTimes:
    """Presentation timestamps of every decoded video frame, in order."""

    pts: list[int]
    time_base: Fraction

    @property
    def times(self) -> list[Fraction]:
        return [p * self.time_base for p in self.pts]


def read_video_times(path: Path) -> StreamTimes:
    """Decode the first video stream and return every frame's pts (presentation order)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [frame.pts for frame in container.decode(stream)]
        return StreamTimes(pts=pts, time_base=Fraction(stream.time_base))


def read_audio_packets(path: Path) -> list[list[tuple[int | None, bytes]]]:
    """Per audio stream: every packet's (pts in seconds * 1e6 rounded, payload bytes)."""
    import av

    with av.open(str(path)) as container:
        streams = list(container.streams.audio)
        out: list[list[tuple[int | None, bytes]]] = [[] for _ in streams]
        where = {s.index: i for i, s in enumerate(streams)}
        for packet in container.demux(*streams):
            if packet.size == 0 or packet.stream.index not in where:
                continue
            us = None if packet.pts is None else round(packet.pts * packet.time_base * 1_000_000)
            out[where[packet.stream.index]].append((us, bytes(packet)))
        return out


def read_chapters(path: Path) -> list[tuple[float, str]]:
    """(start in seconds, title) of every chapter."""
    import av

    with av.open(str(path)) as container:
        return [
            (float(c["start"] * c["time_base"]), c["metadata"].get("title", "")) for c in container.chapters()
        ]


def read_subtitle_texts(path: Path) -> list[str]:
    """The text of every non-empty cue of the first subtitle stream, whatever its format.

    mov_text (MP4/MOV) prefixes each cue with its length and has empty cues for the gaps; SubRip
    is bare text: comparing the text lets a test follow subtitles converted between the two.
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.subtitles:
            return []
        stream = container.streams.subtitles[0]
        texts = []
        for packet in container.demux(stream):
            data = bytes(packet)
            if stream.codec_context.name == "mov_text" and len(data) >= 2:
                data = data[2 : 2 + int.from_bytes(data[:2], "big")]
            text = data.decode("utf-8", "replace").strip()
            if text:
                texts.append(text)
        return texts


@dataclass
class VideoTags:
    width: int
    height: int
    pix_fmt: str
    codec: str
    sar: Fraction
    color: tuple[int, int, int, int]  # primaries, transfer, matrix, range as FFmpeg enum values
    rotation: int  # clockwise degrees from the first frame's display matrix
    frame_rate: Fraction | None
    metadata: dict[str, str] = field(default_factory=dict)
    timecode: str | None = None  # start timecode from any stream's or the container's tags


def read_video_tags(path: Path) -> VideoTags:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        cc = stream.codec_context
        frame = next(container.decode(stream))
        sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
        return VideoTags(
            width=cc.width,
            height=cc.height,
            pix_fmt=cc.pix_fmt,
            codec=cc.name,
            sar=Fraction(sar) if sar else Fraction(1),
            color=(
                int(frame.color_primaries),
                int(frame.color_trc),
                int(frame.colorspace),
                int(frame.color_range),
            ),
            rotation=int(-round(frame.rotation)) % 360,
            frame_rate=Fraction(stream.average_rate) if stream.average_rate else None,
            metadata=dict(container.metadata),
            timecode=next(
                (
                    str(value)
                    for holder in (container, *container.streams)
                    for key, value in holder.metadata.items()
                    if key.lower() == "timecode"  # Matroska tags come back upper-case
                ),
                None,
            ),
        )


def assert_same_times(out: StreamTimes, ref: StreamTimes, *, slack: Fraction | None = None) -> None:
    """Every output frame time equals the reference's within half the coarser time base."""
    assert len(out.pts) == len(ref.pts), f"frame count {len(out.pts)} != {len(ref.pts)}"
    tol = slack if slack is not None else max(out.time_base, ref.time_base) / 2
    for i, (a, b) in enumerate(zip(out.times, ref.times, strict=True)):
        assert abs(a - b) <= tol, f"frame {i}: output time {float(a):.6f}s != input {float(b):.6f}s"


# ----------------------------------------------------------------------------- session cache


class MediaCache:
    """Generates each distinct clip once per test session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_session(cls, tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
        return cls(tmp_path_factory.getbasetemp() / "media-cache")

    def clip(self, name: str = "clip", **kwargs: Any) -> Path:
        spec = ClipSpec(**kwargs)
        path = (self.root / f"{name}-{spec.key()}").with_suffix(spec.container)
        if not path.exists():
            tmp_dir = self.root / f".tmp-{spec.key()}"
            tmp_dir.mkdir(exist_ok=True)
            made = make_clip(tmp_dir / path.name, spec)
            made.replace(path)
            shutil.rmtree(tmp_dir, ignore_errors=True)
        return path
