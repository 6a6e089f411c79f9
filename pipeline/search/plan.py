"""The plan of a chunked track (`pipeline.search.chunks`): which frames each chunk covers.

Torch-free, so a driver that only divides work (`pipeline.run.plan`) can plan chunks
without loading the search's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import SearchError


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # first frame (track position, inclusive); also the chunk's anchor frame
    end: int  # last frame + 1 (the next chunk's anchor)

    @property
    def anchor(self) -> int:
        return self.start


def plan_chunks(track_length: int, chunk_len: int, landing: int = 0) -> list[Chunk]:
    """Consecutive chunks covering [0, track_length).

    chunk_len <= 0 or >= track_length gives one chunk. A tail shorter than `landing + 2` frames is merged
    into the chunk before it (a chunk needs its anchor, room to land, and at least one free frame).
    """
    if track_length < 1:
        raise SearchError(f"plan_chunks: track length must be positive, got {track_length}")
    if chunk_len <= 0 or chunk_len >= track_length:
        return [Chunk(0, 0, track_length)]
    if not 0 <= landing <= chunk_len - 2:
        raise SearchError(
            f"plan_chunks: landing {landing} must be in [0, chunk_len - 2] = [0, {chunk_len - 2}]"
        )
    starts = list(range(0, track_length, chunk_len))
    if len(starts) > 1 and track_length - starts[-1] < landing + 2:
        starts.pop()
    ends = [*starts[1:], track_length]
    return [Chunk(i, a, b) for i, (a, b) in enumerate(zip(starts, ends, strict=True))]
