"""Anonymise's step functions, as its mode (`pipeline.anon.mode.ANONYMIZE`) gives them to the plan.

stitch  -> `stitch_arrays`: tracks completed for recall (pipeline.anon.scan) and the kind of
           every face-frame, stored in the scan's npz beside the usual arrays
crops   -> `servable`: only face-frames the search can serve get a crop (the rest are masked)
search  -> `pipeline.anon.search.anonymize_unit`
compose -> `segment_faces` + `compose_frame`: every face-frame masked, synthetic faces on top,
           one record per face-frame (how it was hidden, SFace cosine to the original)
join    -> `finish`: the audit sidecar and report page; the original crops deleted
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.anon.audit import AnonReport, write_audit
from pipeline.anon.compose import AnonFace, anonymize_frame, measure_frame
from pipeline.anon.scan import KINDS, AnonScan, complete_tracks
from pipeline.anon.search import unservable

if TYPE_CHECKING:
    from pipeline.frame.compose import FacePlacement
    from pipeline.run.mode import DecodeSection
from pipeline.config import Config
from pipeline.faces import store
from pipeline.faces.people import people_from_arrays
from pipeline.faces.scan import ScanResult
from pipeline.files import load_arrays
from pipeline.metrics.identity import SAME_PERSON_COSINE
from pipeline.report.anon import write_anon_report
from pipeline.types import Detection, TrackFrame

log = logging.getLogger(__name__)


def scan_to_arrays(scanned: AnonScan) -> dict[str, np.ndarray]:
    """The scan's npz (`pipeline.faces.store` arrays) plus each face-frame's kind."""

    keys = sorted(scanned.kinds)
    return {
        **store.scan_to_arrays(scanned.result),
        "kind_key": np.array(keys, np.int64).reshape(-1, 2),
        "kind": np.array([KINDS.index(scanned.kinds[k]) for k in keys], np.int64),
        "raw_detections": np.array([scanned.raw_detections], np.int64),
    }


def scan_from_arrays(a: Mapping[str, np.ndarray]) -> AnonScan:

    result = store.scan_from_arrays(a)
    if "kind" not in a:  # a restore's scan: every row as the tracker made it
        kinds = {
            (t.track_id, r.frame_index): "interpolated" if r.interpolated else "detected"
            for t in result.tracks
            for r in t.frames
        }
        return AnonScan(result, kinds, int(result.detections))
    kinds = {(int(t), int(f)): KINDS[int(k)] for (t, f), k in zip(a["kind_key"], a["kind"], strict=True)}
    return AnonScan(result, kinds, int(a["raw_detections"][0]))


def stitch_arrays(
    result: ScanResult, detections: Mapping[int, Sequence[Detection]], cfg: Config
) -> dict[str, np.ndarray]:
    """What the stitch step stores in anonymize mode: `result` with its tracks completed (lone
    detections kept, gaps bridged, ends extended) and the kind of every face-frame."""
    tracks, kinds = complete_tracks(
        result.shots,
        result.tracks,
        {k: list(v) for k, v in detections.items()},
        cfg.anon,
        (result.start, result.end),
    )
    done = replace(result, tracks=tuple(tracks))
    count = sum(len(v) for v in detections.values())
    log.info(
        "anonymise: %d tracks, %d face-frames (%s)",
        len(tracks),
        len(kinds),
        ", ".join(f"{sum(v == k for v in kinds.values())} {k}" for k in KINDS),
    )
    return scan_to_arrays(AnonScan(done, kinds, count))


def servable(row: TrackFrame, frame_size: tuple[int, int], cfg: Config) -> bool:
    """Whether a face-frame gets a crop (and a search): large enough, frontal, inside the frame."""
    return unservable(row, frame_size, cfg.anon, None) is None


def segment_faces(
    scan_path: str | Path,
    synthetic: Mapping[int, Sequence[FacePlacement]],  # frame -> the synthetic faces, placed
    start: int,
    end: int,
    frame_size: tuple[int, int],
    cfg: Config,
) -> dict[int, list[AnonFace]]:
    """frame -> every face-frame to hide in [start, end): all track rows, each with its synthetic
    face when the search made one, else the reason it is masked."""

    scanned = scan_from_arrays(load_arrays(scan_path))
    served: dict[tuple[int, int], FacePlacement] = {}
    resolution = None
    for frame, placements in synthetic.items():
        for placed in placements:
            served[(int(placed.restoration.track_id), int(frame))] = placed
            resolution = int(placed.restoration.image.shape[0])
    out: dict[int, list[AnonFace]] = {}
    for track in scanned.result.tracks:
        if track.end <= start or track.start >= end:
            continue
        for row in track.frames:
            if not start <= row.frame_index < end:
                continue
            p = served.get((track.track_id, row.frame_index))
            why = None
            if p is None:
                why = (
                    "no model"
                    if cfg.prior.model is None
                    else unservable(row, frame_size, cfg.anon, resolution)
                )
                why = why or "too large"  # the only check that needs the generator's resolution
            out.setdefault(row.frame_index, []).append(
                AnonFace(
                    track.track_id,
                    row.frame_index,
                    row.box,
                    row.landmarks,
                    p.restoration if p is not None else None,
                    p.crop_to_frame if p is not None else None,
                    p.crop_size if p is not None else 0,
                    kind=scanned.kinds.get((track.track_id, row.frame_index), "detected"),
                    fallback=why,
                )
            )
    return out


def compose_frame(
    image: np.ndarray, faces: Sequence[AnonFace], gray: bool, cfg: Config
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One anonymised output frame and a record per face-frame (for the audit)."""
    out = anonymize_frame(image, faces, gray, cfg)
    identity = measure_frame(image, out, faces) if cfg.anon.measure_identity and faces else {}
    records = []
    for f in faces:
        cos = identity.get((f.track_id, f.frame_index))
        records.append(
            {
                "track_id": int(f.track_id),
                "frame": int(f.frame_index),
                "kind": f.kind,
                "synthetic": f.synthetic is not None,
                "fallback": f.fallback,
                "identity_cosine": None if cos is None else round(float(cos), 4),
                "bottleneck_psnr_db": None if f.synthetic is None else round(float(f.synthetic.psnr), 2),
            }
        )
    return out, records


def attack_section(
    source: Path | None,
    output: Path,
    scanned: AnonScan,
    records: Sequence[Mapping[str, Any]],
    cfg: Config,
    model: str | None,
) -> dict[str, Any]:
    """The audit's attack check (pipeline.anon.attack) on the output just written, or why not."""
    from pipeline.anon.attack import ATTACK_COSINE, attack_check, pick_targets

    why = None
    if cfg.anon.attack_faces <= 0:
        why = "off (anon.attack_faces=0)"
    elif model is None or cfg.prior.model is None:
        why = "no face model: the run only masked (scripts/evaluate_anonymize.py attacks masks with a prior)"
    elif source is None:
        why = "the source is not known"
    if why is not None or source is None:
        return {
            "threshold": ATTACK_COSINE,
            "face_frames": 0,
            "max_cosine": None,
            "passed": None,
            "not_run": why or "the source is not known",
        }
    rows = {(t.track_id, r.frame_index): r for t in scanned.result.tracks for r in t.frames}
    return attack_check(source, output, pick_targets(records, rows, cfg.anon.attack_faces), cfg)


def finish(
    output: Path,
    source: Path | None,
    scan_path: str | Path | None,
    records: Sequence[Mapping[str, Any]],
    cfg: Config,
    *,
    frames: int,
    model: str | None,
    random_generator: bool,
    seconds: Mapping[str, float],
    decode: DecodeSection | None = None,
) -> AnonReport:
    """The audit sidecar (and the report page); returns the AnonReport."""

    people = None
    if scan_path is not None:
        arrays = load_arrays(scan_path)
        scanned = scan_from_arrays(arrays)
        people = people_from_arrays(arrays, scanned.result.tracks)
    else:
        scanned = AnonScan(ScanResult(0, frames, (), (), 0, False), {}, 0)
    cosines = [float(r["identity_cosine"]) for r in records if r.get("identity_cosine") is not None]
    report = AnonReport(
        output=output,
        frames=frames,
        tracks=len(scanned.result.tracks),
        face_frames=len(records),
        synthetic=sum(bool(r["synthetic"]) for r in records),
        masked=sum(not r["synthetic"] for r in records),
        max_identity_cosine=max(cosines) if cosines else None,
        leaked=sum(c >= SAME_PERSON_COSINE for c in cosines),
        model=model,
        random_generator=random_generator,
        seconds=dict(seconds),
        decode=decode.copy() if decode is not None else None,
    )
    report.attack = attack_section(source, output, scanned, records, cfg, model)
    report.audit_path = write_audit(report, scanned, records, cfg, people)
    if cfg.report.html:
        report.html_path = write_anon_report(report.audit_path, cfg.report)
    log.info("%s", report.summary())
    return report
