"""The report's data model: what a run stores for its report, what the page is drawn from, and the
rules both the JSON and the page follow (which face-frames are flagged, how they are counted).

Below `build` (which reads the work directory) and `html`/`anon` (which draw pages); imports no
other report module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.report.measure import TrackMotion

if TYPE_CHECKING:
    from pipeline.report.spread import Spread


@dataclass(frozen=True)
class ReportArtifacts:
    """Work-directory files the report reads (paths; the JSON stores them relative to `workdir`)."""

    workdir: Path
    crops: Sequence[Path] = ()  # npz in faces.store.crops_to_arrays format
    restorations: Sequence[Path] = ()  # npz in faces.store.restorations_to_arrays format
    compose_records: Sequence[Path] = ()  # JSON files, each a list of compose records (frame.compose)
    spread: Path | None = None  # npz in report.spread.spread_to_arrays format
    # npz of output pictures the compose steps kept (frame_index [N], image [N, H, W, 3] uint8): the
    # page's thumbnails of a run without a scan, not decoded again. Removed with the parts (not in the
    # JSON): a redraw decodes them from the output
    pictures: Sequence[Path] = ()

    def to_json(self) -> dict[str, Any]:
        def rel(p: Path) -> str:
            p = Path(p)
            try:
                return str(p.resolve().relative_to(self.workdir.resolve()))
            except ValueError:
                return str(p)

        return {
            "workdir": str(self.workdir),
            "crops": [rel(p) for p in self.crops],
            "restorations": [rel(p) for p in self.restorations],
            "compose_records": [rel(p) for p in self.compose_records],
            "spread": rel(self.spread) if self.spread is not None else None,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any], workdir: Path | None = None) -> ReportArtifacts:
        root = Path(workdir or data["workdir"])

        def path(p: str) -> Path:
            return root / p

        return ReportArtifacts(
            root,
            [path(p) for p in data.get("crops", ())],
            [path(p) for p in data.get("restorations", ())],
            [path(p) for p in data.get("compose_records", ())],
            path(data["spread"]) if data.get("spread") else None,
        )


@dataclass(frozen=True, eq=False)
class SheetFace:
    """One face-frame pictured in the report (images from the work directory)."""

    track_id: int
    frame: int
    crop: np.ndarray  # [S, S, 3] float32: the aligned footage crop (the search's target)
    restoration: np.ndarray  # [D, D, 3] float32: the restored face (reduced to at most 256 px)
    crop_to_frame: np.ndarray  # [2, 3] crop px -> source px


@dataclass
class Collected:
    """What the page needs from the work directory."""

    motion: dict[int, TrackMotion] = field(default_factory=dict)
    sheet: dict[int, list[SheetFace]] = field(default_factory=dict)  # per track, worst first
    records: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)  # compose records
    spread: list[Spread] = field(default_factory=list)  # where invented (report.spread)
    pictures: dict[int, np.ndarray] = field(default_factory=dict)  # output frame -> RGB uint8 (kept)


def flagged(row: Mapping[str, Any]) -> bool:
    """A face-frame the report lists: it fell back to the plain upscale, or the output frame misses
    the bound (what the output promises). A search that missed the bound in its crop while the
    frame meets it (the projection's work) is a detail of the row, not a flag; without a compose
    record, the search's figure is all there is."""
    if row.get("fallback"):
        return True
    in_frame = row.get("met_bound_in_frame")
    return in_frame is False or (in_frame is None and not row.get("met_bound", True))


@dataclass(frozen=True)
class FaceCounts:
    """What happened to the face-frames found, counted apart (a fallback is not a restoration)."""

    searched: int  # face-frames the search ran on
    restored: int  # ... whose restored face was pasted into the output
    fell_back: int  # ... left as the plain upscale (the prior could not serve them)
    met_bound: int  # searched face-frames whose search met the bound in its crop
    met_bound_in_frame: int  # restored face-frames whose output frame meets the bound (the promise)

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]]) -> FaceCounts:
        fell = sum(bool(r.get("fallback")) for r in rows)
        return cls(
            searched=len(rows),
            restored=len(rows) - fell,
            fell_back=fell,
            met_bound=sum(bool(r.get("met_bound")) for r in rows),
            met_bound_in_frame=sum(
                r.get("met_bound_in_frame") is True and not r.get("fallback") for r in rows
            ),
        )


def badness(row: Mapping[str, Any]) -> tuple[int, float, int]:
    """Sort key, worst first: fallbacks, then the other flagged face-frames (the output misses the
    bound), then the rest; within each, the lowest consistency (in the output frame where measured)."""
    v = row.get("psnr_in_frame_db", row.get("psnr_db"))
    rank = 0 if row.get("fallback") else 1 if flagged(row) else 2
    return rank, float(v) if v is not None else float("inf"), int(row["frame"])


def crop_box(crop_to_frame: np.ndarray, size: int) -> tuple[float, float, float, float]:
    """The source-pixel bounding box of an S×S aligned crop (the region its face is pasted into)."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    pts = corners @ np.asarray(crop_to_frame, np.float64).T  # [4, 2]
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


MAX_THUMBS = 180  # shot thumbnails per page at most (a long film shows fewer per shot)
UNSCANNED_THUMBS = 8  # thumbnails of an output that was not scanned (one "shot": the whole output)


def thumb_frames(shots: Sequence[Sequence[int]], per_shot: int) -> dict[int, list[int]]:
    """Per shot (by position), the output frames shown as thumbnails, evenly spread over the shot."""
    per_shot = max(1, per_shot)
    if len(shots) * per_shot > MAX_THUMBS:
        per_shot = max(1, MAX_THUMBS // max(len(shots), 1))
    out: dict[int, list[int]] = {}
    for i, (start, end) in enumerate(shots[:MAX_THUMBS]):
        n = min(per_shot, end - start)
        if n <= 0:
            continue
        out[i] = sorted({start + (end - 1 - start) * j // max(n - 1, 1) for j in range(n)})
    return out


def html_path(output: Path) -> Path:
    return output.with_name(output.name + ".report.html")


def json_path(output: Path) -> Path:
    return output.with_name(output.name + ".report.json")
