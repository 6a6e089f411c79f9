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
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, ReportConfig, apply_overrides
from pipeline.errors import InputError, PipelineError
from pipeline.files import atomic_path, load_json
from pipeline.io.decode import open_video
from pipeline.report.assets import load_crops
from pipeline.report.html import index_page, page
from pipeline.report.measure import track_motion
from pipeline.report.model import (
    UNSCANNED_THUMBS,
    Collected,
    ReportArtifacts,
    SheetFace,
    badness,
    flagged,
    html_path,
    json_path,
    thumb_frames,
)
from pipeline.report.people import people_frames
from pipeline.report.spread import DISPLAY, reduce_image, spread_from_arrays

log = logging.getLogger(__name__)

MAX_PICTURED = 160  # face-frames pictured per page at most (a film with many tracks shows fewer each)
MOTION_READ_SIDE = 128  # px: stored faces larger than this are read with a stride for motion curves
MAX_PICTURED_MISSES = (
    8  # per track: face-frames that missed the bound or fell back, pictured beyond the sheet
)


def load_records(paths: Sequence[str | Path]) -> dict[tuple[int, int], dict[str, Any]]:
    """Compose records (frame.compose) by (track, frame), from the compose steps' JSON files."""

    out: dict[tuple[int, int], dict[str, Any]] = {}
    for path in paths:
        if Path(path).is_file():
            for rec in load_json(path):
                out[(int(rec["track_id"]), int(rec["frame"]))] = dict(rec)
    return out


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
    out.pictures = load_pictures(artifacts.pictures)
    return out


def load_pictures(paths: Sequence[Path]) -> dict[int, np.ndarray]:
    """Output frame -> RGB uint8 picture, from the npz files compose kept them in (missing: none)."""
    out: dict[int, np.ndarray] = {}
    for path in paths:
        if Path(path).is_file():
            with np.load(path, allow_pickle=False) as npz:
                out.update(zip(npz["frame_index"].tolist(), npz["image"], strict=True))
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


def render_report(
    body: Mapping[str, Any], collected: Collected, path: Path, cfg: ReportConfig | None = None
) -> Path:
    """Decode the frames the page shows, render it and write it atomically to `path`."""

    cfg = cfg or ReportConfig()
    t = time.perf_counter()
    output = Path(body["output"])
    scale = float(body.get("scale") or 1.0)
    shots = body.get("shots") or [[0, int(body.get("frames") or 0)]]  # not scanned: the whole output
    thumbs = thumb_frames(shots, cfg.thumbs_per_shot if body.get("shots") else UNSCANNED_THUMBS)
    sheet_idx = {f.frame for faces in collected.sheet.values() for f in faces}
    wanted = sheet_idx | {f for frames in thumbs.values() for f in frames} | people_frames(body.get("people"))
    # pictures compose kept (a pass-through run without a scan: its thumbnails) are not decoded again
    out_frames = {f: collected.pictures[f] for f in wanted if f in collected.pictures}
    missing = wanted - set(out_frames)
    if not output.is_file():
        log.warning("report: output %s is missing: no output pictures", output)
    elif missing:
        try:  # the output's pictures as decoded: a file that cannot be opened is not pictured
            out_frames.update(open_video(output, deinterlace="off").pictures(missing))
        except PipelineError as exc:
            log.warning("report: %s not decoded (%s)", output, exc)
    src_frames: dict[int, np.ndarray] = {}
    source = Path(body.get("input") or "")
    decode_cfg = body.get("config", {}).get("io", {})
    if sheet_idx and source.is_file():
        deinterlace = str(decode_cfg.get("deinterlace", "auto"))
        ivtc = bool(decode_cfg.get("inverse_telecine", False))
        try:  # the source as the job decoded it
            opened = open_video(source, deinterlace=deinterlace, inverse_telecine=ivtc)
            src_frames = opened.pictures(sheet_idx)
        except PipelineError as exc:
            log.warning("report: %s not decoded (%s)", source, exc)
    if out_frames and src_frames:
        first = next(iter(out_frames.values()))
        scale = first.shape[1] / next(iter(src_frames.values())).shape[1]
    html = page(body, collected, out_frames, src_frames, thumbs, scale, cfg)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    log.info("report: wrote %s (%.0f kB) in %.2fs", path, path.stat().st_size / 1024, time.perf_counter() - t)
    return path


def rerender(output: Path, workdir: Path | None = None) -> Path:
    """`reel report OUTPUT`: the HTML again from `OUTPUT.report.json` and the work directory."""

    jpath = json_path(output)
    if not jpath.is_file():
        raise InputError(jpath, "no report JSON beside the output (was it restored by reel?)")
    body = load_json(jpath)
    cfg = ReportConfig()
    section = body.get("config", {}).get("report")
    if isinstance(section, dict):
        cfg = apply_overrides(Config(), {"report": section}, str(jpath)).report
    artifacts = ReportArtifacts.from_json(body.get("artifacts") or {"workdir": str(workdir or "")}, workdir)
    return render_report(body, collect(artifacts, body.get("faces", []), cfg), html_path(output), cfg)


def batch_index(summary: Mapping[str, Any], path: Path) -> Path:
    """An index page for a batch: one row per item, linking to each item's report."""

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
