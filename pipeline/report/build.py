"""From the JSON report and the work directory to the HTML page; the batch index page.

`collect` reads the stored artifacts once, track by track (a track's restorations are the largest
thing read; only its few contact-sheet faces are kept), and measures steadiness on the way.
`render_report` decodes the handful of output (and source) frames the page shows and writes it.
`reel report OUTPUT` runs both from `OUTPUT.report.json`: nothing is searched or composed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import ReportConfig
from pipeline.files import atomic_path, load_json
from pipeline.report.measure import TrackMotion

log = logging.getLogger(__name__)

MAX_THUMBS = 180  # shot thumbnails per page at most (a long film shows fewer per shot)
MAX_PICTURED = 160  # face-frames pictured per page at most (a film with many tracks shows fewer each)
MOTION_READ_SIDE = 128  # px: stored faces larger than this are read with a stride for motion curves
MAX_PICTURED_MISSES = (
    8  # per track: face-frames that missed the bound or fell back, pictured beyond the sheet
)


@dataclass(frozen=True)
class ReportArtifacts:
    """Work-directory files the report reads (paths; the JSON stores them relative to `workdir`)."""

    workdir: Path
    crops: Sequence[Path] = ()  # npz in faces.store.crops_to_arrays format
    restorations: Sequence[Path] = ()  # npz in faces.store.restorations_to_arrays format
    compose_records: Sequence[Path] = ()  # JSON files, each a list of compose records (frame.compose)
    spread: Path | None = None  # npz in report.spread.spread_to_arrays format

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
    spread: list[Any] = field(default_factory=list)  # report.spread.Spread


def flagged(row: Mapping[str, Any]) -> bool:
    """A face-frame the report lists: it fell back to the plain upscale, or the output frame misses
    the bound (what the output promises). A search that missed the bound in its crop while the
    frame meets it (the projection's work) is a detail of the row, not a flag; without a compose
    record, the search's figure is all there is."""
    if row.get("fallback"):
        return True
    in_frame = row.get("met_bound_in_frame")
    return in_frame is False or (in_frame is None and not row.get("met_bound", True))


def load_records(paths: Sequence[str | Path]) -> dict[tuple[int, int], dict[str, Any]]:
    """Compose records (frame.compose) by (track, frame), from the compose steps' JSON files."""

    out: dict[tuple[int, int], dict[str, Any]] = {}
    for path in paths:
        if Path(path).is_file():
            for rec in load_json(path):
                out[(int(rec["track_id"]), int(rec["frame"]))] = dict(rec)
    return out


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


def sheet_frames(
    faces: Sequence[Mapping[str, Any]], n: int, max_total: int = MAX_PICTURED
) -> dict[int, list[int]]:
    """Per track, the frames pictured, worst first (`badness`): the `n` worst, then up to
    MAX_PICTURED_MISSES more flagged ones (so a flagged frame listed can link to its picture).

    At most `max_total` on the page: with many tracks each gets fewer (at least its worst frame, the
    worst tracks first), and flagged frames beyond the sheet are pictured only when all fit.
    """
    by_track: dict[int, list[Mapping[str, Any]]] = {}
    for row in faces:
        by_track.setdefault(int(row["track_id"]), []).append(row)
    worst = {tid: sorted(rows, key=badness) for tid, rows in by_track.items()}
    per = max(1, min(n, max_total // max(len(worst), 1)))
    extras = MAX_PICTURED_MISSES if len(worst) * (n + MAX_PICTURED_MISSES) <= max_total else 0
    out: dict[int, list[int]] = {}
    budget = max_total
    for tid in sorted(worst, key=lambda t: (badness(worst[t][0]), t)):
        rows = worst[tid]
        chosen = [int(r["frame"]) for r in rows[: min(per, budget)]]
        chosen += [int(r["frame"]) for r in rows[per:] if flagged(r)][:extras]
        budget -= len(chosen)
        out[tid] = chosen
    return out


# Compose-record fields (frame.compose) copied into a face-frame's report row when present.
RECORD_FIELDS = ("psnr_in_frame_db", "met_bound_in_frame", "missed_by_db", "projected", "fallback")


def merge_records(
    faces: Sequence[Mapping[str, Any]], records: Mapping[tuple[int, int], Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Face-frame rows with their compose record's frame-coordinate figures added (when recorded)."""
    out = []
    for row in faces:
        rec = records.get((int(row["track_id"]), int(row["frame"])), {})
        out.append({**row, **{k: rec[k] for k in RECORD_FIELDS if k in rec}})
    return out


def collect(artifacts: ReportArtifacts, faces: Sequence[Mapping[str, Any]], cfg: ReportConfig) -> Collected:
    """Read the artifacts: per-track motion, the pictured faces' crops and restorations, compose
    records and the stored spread. Restoration files are read one at a time."""
    from pipeline.report.assets import load_crops
    from pipeline.report.measure import track_motion
    from pipeline.report.spread import DISPLAY, reduce_image, spread_from_arrays

    out = Collected(records=load_records(artifacts.compose_records))
    wanted = sheet_frames(merge_records(faces, out.records), cfg.sheet_frames)
    crops = load_crops(artifacts.crops)
    pictured: dict[tuple[int, int], SheetFace] = {}
    for path in artifacts.restorations:
        stored = _open_restorations(Path(path))
        if stored is None:
            continue
        track_ids, frames, images = stored
        for tid in sorted(set(track_ids.tolist())):
            rows = np.nonzero(track_ids == tid)[0]
            # Motion is measured at 32 px: a strided read of a memory-mapped store touches only
            # every few rows of a large generator's faces (reading is the report's main cost).
            step = max(1, images.shape[1] // MOTION_READ_SIDE)
            small = [(int(frames[i]), np.asarray(images[i, ::step, ::step], np.float32)) for i in rows]
            mine = {f: c.image for (t, f), c in crops.items() if t == tid}
            out.motion[int(tid)] = track_motion(mine, small)
            for i in rows:
                crop = crops.get((int(tid), int(frames[i])))
                if crop is not None and int(frames[i]) in wanted.get(int(tid), ()):
                    image = np.asarray(images[i], np.float32)
                    pictured[(int(tid), int(frames[i]))] = SheetFace(
                        int(tid),
                        int(frames[i]),
                        crop.image,
                        reduce_image(image, min(image.shape[0], DISPLAY)),
                        crop.crop_to_frame,
                    )
        del images
    for tid, chosen in wanted.items():
        out.sheet[tid] = [pictured[(tid, f)] for f in chosen if (tid, f) in pictured]
    if artifacts.spread is not None and Path(artifacts.spread).is_file():
        with np.load(artifacts.spread, allow_pickle=False) as npz:
            out.spread = spread_from_arrays({k: npz[k] for k in npz.files})
    return out


def _open_restorations(path: Path) -> tuple[np.ndarray, np.ndarray, Any] | None:
    """(track ids [T], frame indices [T], images [T, R, R, 3]) of a stored search result: the faces
    inside the npz (faces.store format), or memory-mapped from the `.npy` beside it (the plan's)."""
    if not path.is_file():
        log.warning("report: %s is missing: its tracks are not pictured", path)
        return None
    with np.load(path, allow_pickle=False) as npz:
        track_ids = npz["track_id"]
        if len(track_ids) == 0:
            return None
        frames = npz["frame_index"]
        if "image" in npz.files:
            return track_ids, frames, npz["image"]
    npy = next((q for q in (path.with_suffix(".faces.npy"), path.with_suffix(".npy")) if q.is_file()), None)
    if npy is None:
        log.warning("report: %s has no face images beside it: its tracks are not pictured", path)
        return None
    return track_ids, frames, np.load(npy, mmap_mode="r")


def crop_box(crop_to_frame: np.ndarray, size: int) -> tuple[float, float, float, float]:
    """The source-pixel bounding box of an S×S aligned crop (the region its face is pasted into)."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    pts = corners @ np.asarray(crop_to_frame, np.float64).T  # [4, 2]
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


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


def render_report(
    body: Mapping[str, Any], collected: Collected, path: Path, cfg: ReportConfig | None = None
) -> Path:
    """Decode the frames the page shows, render it and write it atomically to `path`."""
    from pipeline.report.assets import decode_frames
    from pipeline.report.html import page
    from pipeline.report.people import people_frames

    cfg = cfg or ReportConfig()
    t = time.perf_counter()
    output = Path(body["output"])
    scale = float(body.get("scale") or 1.0)
    shots = body.get("shots") or [[0, int(body.get("frames") or 0)]]  # not scanned: the whole output
    thumbs = thumb_frames(shots, cfg.thumbs_per_shot if body.get("shots") else 8)
    sheet_idx = {f.frame for faces in collected.sheet.values() for f in faces}
    wanted = sheet_idx | {f for frames in thumbs.values() for f in frames} | people_frames(body.get("people"))
    out_frames = decode_frames(output, wanted) if output.is_file() else {}
    if not output.is_file():
        log.warning("report: output %s is missing: no output pictures", output)
    src_frames: dict[int, np.ndarray] = {}
    source = Path(body.get("input") or "")
    decode_cfg = body.get("config", {}).get("io", {})
    if sheet_idx and source.is_file():
        src_frames = decode_frames(
            source,
            sheet_idx,
            deinterlace=str(decode_cfg.get("deinterlace", "auto")),
            inverse_telecine=bool(decode_cfg.get("inverse_telecine", False)),
        )
    if out_frames and src_frames:
        first = next(iter(out_frames.values()))
        scale = first.shape[1] / next(iter(src_frames.values())).shape[1]
    html = page(body, collected, out_frames, src_frames, thumbs, scale, cfg)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    log.info("report: wrote %s (%.0f kB) in %.2fs", path, path.stat().st_size / 1024, time.perf_counter() - t)
    return path


def html_path(output: Path) -> Path:
    return output.with_name(output.name + ".report.html")


def json_path(output: Path) -> Path:
    return output.with_name(output.name + ".report.json")


def rerender(output: Path, workdir: Path | None = None) -> Path:
    """`reel report OUTPUT`: the HTML again from `OUTPUT.report.json` and the work directory."""
    from pipeline.config import apply_overrides
    from pipeline.errors import InputError

    jpath = json_path(output)
    if not jpath.is_file():
        raise InputError(jpath, "no report JSON beside the output (was it restored by reel?)")
    body = load_json(jpath)
    cfg = ReportConfig()
    section = body.get("config", {}).get("report")
    if isinstance(section, dict):
        from pipeline.config import Config

        cfg = apply_overrides(Config(), {"report": section}, str(jpath)).report
    artifacts = ReportArtifacts.from_json(body.get("artifacts") or {"workdir": str(workdir or "")}, workdir)
    return render_report(body, collect(artifacts, body.get("faces", []), cfg), html_path(output), cfg)


def batch_index(summary: Mapping[str, Any], path: Path) -> Path:
    """An index page for a batch: one row per item, linking to each item's report."""
    from pipeline.report.html import index_page

    rows = []
    for item in summary.get("items", []):
        out = Path(str(item.get("output", "")))
        report = html_path(out)
        body = None
        jpath = json_path(out)
        if jpath.is_file():
            body = load_json(jpath)
        rows.append((dict(item), report if report.is_file() else None, body))
    with atomic_path(path) as tmp:
        tmp.write_text(index_page(summary, rows, path.parent), encoding="utf-8")
    return path
