"""The restore report both executors write beside the output (`OUTPUT.report.json`).

One writer, so the in-process and the Ray executor give the same fields (the Ray one adds
"executor": "ray"): every face-frame with its consistency (PSNR of the downscaled restoration against
the footage), whether it met the search's bound and how many steps it took; every track with its
SFace identity figures (does the restored face keep the person's identity along the track); and a
plain notice that the facial detail is invented.

Identity is measured where the crops and restorations are, right after a search unit (in the Ray
search worker, or in process), and stored with the unit's per-track results (`identity_to_arrays`),
so a resumed run that skips the unit still reports it; only the small per-track figures travel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import INVENTED_DETAIL_NOTICE
from pipeline.config import Config, to_dict
from pipeline.faces.scan import ScanResult
from pipeline.types import FaceCrop, FaceRestoration, Track

log = logging.getLogger(__name__)

IDENTITY_FIELDS = ("to_source", "stability", "kept")  # per track, see metrics.identity.track_identity
IDENTITY_NOTE = (
    "SFace cosine: to_source = restored vs footage crop, stability = vs the track's first restored "
    "face, kept = share of frames above the same-person threshold 0.363"
)


@dataclass
class RestoreReport:
    output: Path
    frames: int
    tracks: int
    face_frames: int
    restored: int  # face-frames with a restored face pasted in
    met_bound: int  # ... of which reached the search's consistency bound
    random_generator: bool  # the prior was a seeded random test generator (its faces are not faces)
    model: str | None
    seconds: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None


def face_record(face: FaceRestoration) -> dict[str, Any]:
    """One face-frame's row of the report (small: this is what a Ray search unit returns per face)."""
    return {
        "track_id": int(face.track_id),
        "frame": int(face.frame_index),
        "psnr_db": round(float(face.psnr), 3),
        "met_bound": bool(face.met_bound),
        "steps": int(face.steps),
    }


def measure_identity(
    tracks: Sequence[Track], crops: Sequence[FaceCrop], restorations: Sequence[FaceRestoration]
) -> dict[int, dict[str, float]]:
    """Per-track SFace identity figures of `restorations` (see metrics.identity.track_identity), from
    their crops and the tracks' landmarks; empty, with a warning, when SFace is unavailable."""
    if not restorations:
        return {}
    from pipeline.errors import ModelNotAvailableError
    from pipeline.metrics.identity import track_identity

    marks = {(tf.track_id, tf.frame_index): tf.landmarks for t in tracks for tf in t.frames}
    try:
        figures = track_identity(crops, restorations, marks)
    except ModelNotAvailableError as exc:
        log.warning("identity not measured: %s", exc)
        return {}
    return {int(tid): {k: float(v[k]) for k in IDENTITY_FIELDS} for tid, v in figures.items()}


def identity_to_arrays(figures: Mapping[str, float] | None) -> dict[str, np.ndarray]:
    """One track's identity figures as arrays stored beside its restorations (none when unmeasured)."""
    if figures is None:
        return {}
    return {f"identity_{k}": np.array(float(figures[k]), np.float64) for k in IDENTITY_FIELDS}


def identity_from_arrays(a: Mapping[str, np.ndarray]) -> dict[str, float] | None:
    """A track's stored identity figures, or None when none were stored (SFace was unavailable)."""
    if not all(f"identity_{k}" in a for k in IDENTITY_FIELDS):
        return None
    return {k: float(a[f"identity_{k}"]) for k in IDENTITY_FIELDS}


def write_report(
    report: RestoreReport,
    scanned: ScanResult,
    faces: Sequence[Mapping[str, Any]],
    identity: Mapping[int, Mapping[str, float]],
    config: Config,
    *,
    executor: str | None = None,
) -> Path:
    """Write `OUTPUT.report.json`; `faces` are `face_record` rows, `identity` per-track figures.

    `executor` ("ray") is recorded when given; the in-process executor leaves it out.
    """
    from pipeline.faces.store import track_summary
    from pipeline.run.workdir import save_json

    path = report.output.with_name(report.output.name + ".report.json")
    body: dict[str, Any] = {
        "notice": INVENTED_DETAIL_NOTICE,
        "random_test_generator": report.random_generator,
        "model": report.model,
        "output": str(report.output),
        "frames": report.frames,
        "black_and_white": bool(scanned.gray),
        "shots": [[s.start, s.end] for s in scanned.shots],
        "tracks": [{**row, "identity": identity.get(row["track_id"])} for row in track_summary(scanned)],
        "identity_note": IDENTITY_NOTE,
        "face_frames": report.face_frames,
        "restored": report.restored,
        "met_bound": report.met_bound,
        "faces": sorted((dict(f) for f in faces), key=lambda f: (f["track_id"], f["frame"])),
        "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
        "config": to_dict(config),
    }
    if executor is not None:
        body["executor"] = executor
    save_json(path, body)
    return path
