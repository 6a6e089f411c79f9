"""FFmpeg filters applied to decoded frames: deinterlacing (bwdif) and inverse telecine."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import av
    import av.filter


def filter_chain(
    deinterlace: str | bool, inverse_telecine: bool, interlaced: bool, detected: str | None = None
) -> list[tuple[str, str]]:
    """(filter, arguments) pairs for a stream; empty when frames pass untouched.

    `interlaced` is what the stream says of itself. "auto" deinterlaces only then: idet also flags
    sharp synthetic progressive pictures, so pictures alone never switch a deinterlacer on.
    `detected` is the field order idet found in frames flagged progressive; with "on" it tells
    bwdif which field comes first. bwdif runs in send_frame mode: one frame out per frame in, at
    the same timestamp, so frame indices and timing are unchanged.
    """
    if inverse_telecine:
        # Match fields back into whole film frames, then drop the duplicate one in five.
        # (A deinterlacer between the two would double the rate decimate derives its timestamps from.)
        return [("fieldmatch", "order=auto:combmatch=full"), ("decimate", "")]
    mode = ("on" if deinterlace else "off") if isinstance(deinterlace, bool) else deinterlace
    if mode == "off":
        return []
    if mode == "on":
        parity = "bff" if detected == "bb" else "tff" if detected == "tt" else "auto"
        return [("bwdif", f"mode=send_frame:parity={parity}:deint=all")]
    if mode == "auto":
        # Only frames flagged interlaced are touched, so mixed material keeps its progressive frames.
        return [("bwdif", "mode=send_frame:parity=auto:deint=interlaced")] if interlaced else []
    raise ValueError(f"deinterlace must be 'auto', 'on' or 'off', not {deinterlace!r}")


def build_graph(
    frame: av.VideoFrame,
    time_base: Fraction,
    sar: Fraction,
    frame_rate: Fraction,
    filters: list[tuple[str, str]],
) -> av.filter.Graph:
    """A configured PyAV filter graph: buffer → filters → buffersink, for frames like `frame`."""
    import av

    graph = av.filter.Graph()
    # A plain `buffer` source: decimate needs the input frame rate, which add_buffer cannot set.
    node = graph.add(
        "buffer",
        video_size=f"{frame.width}x{frame.height}",
        pix_fmt=frame.format.name,
        time_base=str(time_base),
        pixel_aspect=str(sar),
        frame_rate=str(frame_rate),
    )
    for name, args in filters:
        nxt = graph.add(name, args)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()
    return graph
