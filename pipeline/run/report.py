"""The restore report both executors write beside the output: `OUTPUT.report.json` and `.html`.

One writer, so the in-process and the Ray executor give the same fields (the Ray one adds
"executor": "ray"): every face-frame with its consistency (PSNR of the downscaled restoration against
the footage), whether it met the search's bound and how many steps it took; every track with its
SFace identity figures (does the restored face keep the person's identity along the track); and a
plain notice that the facial detail is invented.

Identity is measured where the crops and restorations are, right after a search unit (in the Ray
search worker, or in process), and stored with the unit's per-track results (`identity_to_arrays`),
so a resumed run that skips the unit still reports it; only the small per-track figures travel.

The JSON is the machine-readable form (`version` says which layout); the HTML page
(`pipeline.report`) is built from it and from the work directory's artifacts, and `reel report
OUTPUT` rebuilds it the same way. Provenance: the settings that decide the output hash to
`settings_key`, the weights to a model key; both, with reel's version, are written into the output
container's tags (`provenance_tags`) and into the JSON, with the seeds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import INVENTED_DETAIL_NOTICE, __version__
from pipeline.config import Config, to_dict
from pipeline.faces.people import Person
from pipeline.faces.scan import ScanResult
from pipeline.report.build import ReportArtifacts
from pipeline.types import FaceCrop, FaceRestoration, Track

log = logging.getLogger(__name__)

# Layout of OUTPUT.report.json. 1: the first (no version field). 2: version, input, provenance,
# totals, per-track steadiness and change curves, compose-record fields per face-frame, artifacts.
REPORT_VERSION = 2
# Config sections that do not change the output's pixels or streams (left out of settings_key).
_NOT_OUTPUT = ("run", "report")

IDENTITY_FIELDS = ("to_source", "stability", "kept")  # per track, see metrics.identity.track_identity
STEADINESS_NOTE = (
    "steadiness = mean frame-to-frame RMS change of the restored face / that of the footage crop, both at "
    "32x32 px (1 = changes as much as the footage; above 1 = flicker the footage does not have)"
)
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
    input: Path | None = None  # the source video (the report decodes a few of its frames)
    html_path: Path | None = None  # OUTPUT.report.html, when written


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


def settings_key(config: Config) -> str:
    """Hash of every setting that decides the output (not where or how fast it runs, nor the
    model's file name: the weights are identified by their own key)."""
    from pipeline.run.workdir import WorkDir

    d = to_dict(config)
    for name in _NOT_OUTPUT:
        d.pop(name, None)
    d.get("prior", {}).pop("model", None)
    return WorkDir.settings_key("reel-output", d)


def model_key_of(model: str | None) -> str | None:
    """Content key of the generator's weights file (a path or a cached zoo name); None without one."""
    if model is None:
        return None
    from pipeline.errors import PipelineError
    from pipeline.prior.load import model_key

    try:
        return model_key(model)
    except PipelineError:
        return None


def provenance_tags(config: Config, model_key: str | None) -> dict[str, str]:
    """Container tags of a restored output: restored by which reel, model and settings."""
    tags = {
        "comment": f"restored by reel {__version__}"
        + ("; faces invented by a generative prior" if config.prior.model else ""),
        "reel_version": __version__,
        "reel_settings": settings_key(config),
    }
    if model_key:
        tags["reel_model"] = model_key
    return tags


def write_report(
    report: RestoreReport,
    scanned: ScanResult | None,
    faces: Sequence[Mapping[str, Any]],
    identity: Mapping[int, Mapping[str, float]],
    config: Config,
    *,
    executor: str | None = None,
    artifacts: ReportArtifacts | None = None,
    prior: Any = None,
    mode: str = "restore",
    film: Mapping[str, Any] | None = None,
    people: Sequence[Person] | None = None,
) -> Path:
    """Write `OUTPUT.report.json` and (config.report.html) `OUTPUT.report.html`; returns the JSON path.

    `faces` are `face_record` rows, `identity` per-track figures; `scanned` is None when no faces
    were looked for (no model): the page then shows the output and the run, without tracks.
    `artifacts` name the work-directory files the page is drawn from (crops, restorations, compose
    records, the "where is this invented?" spread the plan's spread step stored); without them the
    page has figures and plots but no pictures. `prior` (a loaded `Prior`) gives the model's key
    without hashing the weights again. `executor` is recorded when given.
    """
    from pipeline.faces.store import track_summary
    from pipeline.report.build import Collected, collect, html_path, json_path, merge_records, render_report
    from pipeline.run.workdir import save_json

    t0 = time.perf_counter()
    path = json_path(report.output)
    model_key = getattr(prior, "key", None) or model_key_of(config.prior.model)
    collected = Collected()
    if artifacts is not None:
        collected = collect(artifacts, faces, config.report)
    rows = sorted(merge_records(faces, collected.records), key=lambda f: (f["track_id"], f["frame"]))
    tracks = []
    for row in track_summary(scanned) if scanned is not None else []:
        tid = row["track_id"]
        mine = [f for f in rows if f["track_id"] == tid]
        motion = collected.motion.get(tid)
        tracks.append(
            {
                **row,
                "identity": identity.get(tid),
                "restored": len(mine),
                "met_bound": sum(bool(f["met_bound"]) for f in mine),
                "mean_psnr_db": round(sum(f["psnr_db"] for f in mine) / len(mine), 3) if mine else None,
                "steadiness": motion.steadiness if motion else None,
                "motion": asdict(motion) if motion else None,
            }
        )
    psnrs = [f["psnr_db"] for f in rows]
    steady = [t["steadiness"] for t in tracks if t["steadiness"] is not None]
    body: dict[str, Any] = {
        "version": REPORT_VERSION,
        "mode": mode,
        "notice": INVENTED_DETAIL_NOTICE,
        "random_test_generator": report.random_generator,
        "model": report.model,
        "input": str(report.input) if report.input is not None else None,
        "output": str(report.output),
        "frames": report.frames,
        "scale": config.upscale.scale,
        "black_and_white": bool(scanned.gray) if scanned is not None else None,
        "shots": [[s.start, s.end] for s in scanned.shots] if scanned is not None else [],
        "tracks": tracks,
        # one person across cuts (pipeline.faces.people); None when no faces were looked for
        "people": [p.as_json() for p in people] if people is not None else None,
        "identity_note": IDENTITY_NOTE,
        "steadiness_note": STEADINESS_NOTE,
        "face_frames": report.face_frames,
        "restored": report.restored,
        "met_bound": report.met_bound,
        "totals": {
            "frames": report.frames,
            "shots": len(scanned.shots) if scanned is not None else 0,
            "tracks": len(tracks),
            "face_frames": report.face_frames,
            "restored": report.restored,
            "met_bound": report.met_bound,
            "missed_bound": sum(not f["met_bound"] for f in rows),
            "met_bound_in_frame": sum(f.get("met_bound_in_frame") is True for f in rows),
            "fell_back": sum(bool(f.get("fallback")) for f in rows),
            "mean_psnr_db": round(sum(psnrs) / len(psnrs), 3) if psnrs else None,
            "mean_steadiness": round(sum(steady) / len(steady), 4) if steady else None,
        },
        "faces": rows,
        "spread": [
            {
                "track_id": s.track_id,
                "frame": s.frame_index,
                "k": len(s.psnr),
                "psnr_db": list(s.psnr),
                "met_bound": list(s.met_bound),
                "mean_spread": round(float(s.spread.mean()), 5),
            }
            for s in collected.spread
        ],
        "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
        "film": dict(film) if film is not None else None,  # film: what cleaning changed (CleanStats.as_dict)
        "provenance": {
            "reel_version": __version__,
            "model_key": model_key,
            "settings_key": settings_key(config),
            "seed": config.search.seed,
            "tags": provenance_tags(config, model_key),
        },
        "config": to_dict(config),
        "artifacts": artifacts.to_json() if artifacts is not None else None,
    }
    if executor is not None:
        body["executor"] = executor
    if config.report.html:
        from pipeline.errors import PipelineError

        try:
            report.html_path = render_report(body, collected, html_path(report.output), config.report)
        except (PipelineError, OSError, ValueError) as exc:
            log.warning("report: HTML not written (%s); the JSON report is complete", exc)
    body["seconds"]["report"] = round(time.perf_counter() - t0, 3)
    save_json(path, body)
    return path
