"""Anonymise's audit and rules: the report it returns, the audit sidecar, its settings' checks and
what it forgets. The mode itself, as the plan runs it, is `pipeline.anon.mode.ANONYMIZE`:

    scan (recall first) -> stitch (tracks completed) -> crops (servable faces) -> synthetic faces
    -> compose (every face masked, synthetic faces on top) -> join (mux, audit, crops deleted)

The same preflight, executors (Ray by default, or in-process), resume and one-line errors as
`restore`: an existing output is never replaced without --overwrite, and a failed run leaves it
intact. The original face crops and the scan's SFace embeddings are deleted when the job ends,
whether it succeeded or not (`anon.keep_crops` keeps them for review). Nothing stored, reported
or logged carries a search's random start (pipeline.anon.search).
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.anon.scan import KINDS, AnonScan
from pipeline.config import Config, to_dict
from pipeline.errors import ConfigError
from pipeline.faces.people import Person
from pipeline.files import save_json
from pipeline.metrics.identity import SAME_PERSON_COSINE

if TYPE_CHECKING:
    from pipeline.run.mode import DecodeSection

log = logging.getLogger(__name__)

AUDIT_VERSION = 1
ANON_NOTICE = (
    "Every detected face was replaced by a synthetic face that matches the footage only at a few "
    "pixels across, or masked where no synthetic face could be made; the synthetic faces are "
    "inventions and carry no information about the people filmed beyond that."
)


@dataclass
class AnonReport:
    """What an anonymisation did (the audit sidecar has the details)."""

    output: Path
    frames: int
    tracks: int
    face_frames: int
    synthetic: int  # face-frames replaced by a synthetic face
    masked: int  # face-frames masked only (the search could not serve them)
    max_identity_cosine: float | None  # SFace cosine, original vs output, worst face-frame
    leaked: int  # face-frames whose output still passes SFace's same-person threshold (to review)
    model: str | None
    random_generator: bool
    audit_path: Path | None = None
    html_path: Path | None = None  # OUTPUT.report.html (pipeline.report.anon), when report.html is on
    seconds: dict[str, float] = field(default_factory=dict)
    decode: DecodeSection | None = None  # frames decoded and film-cleaned (Schedule.decode_section)

    attack: dict[str, Any] | None = None  # the attack check's section of the audit (pipeline.anon.attack)

    @property
    def attack_max_cosine(self) -> float | None:
        """SFace cosine to the original after restore's own search on the output, worst face-frame."""
        return None if self.attack is None else self.attack.get("max_cosine")

    def summary(self) -> str:
        ident = "not measured" if self.max_identity_cosine is None else f"{self.max_identity_cosine:.3f}"
        text = (
            f"{self.output}: {self.frames} frames, {self.tracks} face tracks, "
            f"{self.face_frames} face-frames: {self.synthetic} replaced by synthetic faces, "
            f"{self.masked} masked; max identity cosine "
            f"{ident} (same person >= {SAME_PERSON_COSINE}), {self.leaked} above it (review those)"
        )
        if self.attack_max_cosine is not None and self.attack is not None:
            verdict = "still hidden" if self.attack.get("passed") else "RECOGNISED: do not release"
            text += (
                f"; after restoring {self.attack.get('face_frames')} output faces: max cosine "
                f"{self.attack_max_cosine:.3f} ({verdict}, bound < {self.attack.get('threshold')})"
            )
        return text


def check_anon_config(config: Config) -> None:
    """Settings of the anon section that the dataclass types alone cannot check."""
    a = config.anon
    if config.film.matte:
        raise ConfigError(
            "film.matte: the provenance matte is made by restore; anonymize replaces every face it finds "
            "(its audit lists each face-frame)"
        )
    if a.fallback not in ("blur", "fill"):
        raise ConfigError(f"anon.fallback={a.fallback!r}: must be blur or fill")
    if a.bottleneck < 2:
        raise ConfigError(f"anon.bottleneck={a.bottleneck}: must be 2 px or more")
    if a.mask_grow < 1.0:
        raise ConfigError(f"anon.mask_grow={a.mask_grow}: must be 1 or more (masks cover the face)")
    for name in ("extend", "bridge", "fallback_cells", "min_face", "attack_faces"):
        if getattr(a, name) < 0:
            raise ConfigError(f"anon.{name}={getattr(a, name)}: must not be negative")


def forget_faces(workdir: Path) -> None:
    """What a job kept of the people filmed leaves the work directory with it: the original face
    crops, and the scan's segments, which hold the SFace embeddings that join one person's tracks.
    A rerun reuses the stitched tracks; one that must stitch again (another choice of people)
    scans again, so it never decides people without their embeddings."""
    import numpy as np

    shutil.rmtree(workdir / "crops", ignore_errors=True)
    for path in sorted((workdir / "scan").glob("*/segment-*.npz")):
        with np.load(path, allow_pickle=False) as a:
            embedded = any(k.startswith("emb_") for k in a.files)
        if embedded:
            path.unlink()


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return {"max": round(max(finite), 4), "mean": round(sum(finite) / len(finite), 4)}


def above_threshold(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Face-frames whose output still passes SFace's same-person threshold, highest cosine first."""
    rows = [
        {"track_id": int(r["track_id"]), "frame": int(r["frame"]), "cosine": float(r["identity_cosine"])}
        for r in records
        if r.get("identity_cosine") is not None and float(r["identity_cosine"]) >= SAME_PERSON_COSINE
    ]
    return sorted(rows, key=lambda r: (-r["cosine"], r["frame"], r["track_id"]))


def people_choice(people: Sequence[Person] | None, config: Config) -> dict[str, Any] | None:
    """Whom reference photos chose (None: everyone was hidden); the undecided are hidden whatever
    the photos say, and listed."""
    rule, folder = ("only", config.people.only) if config.people.only else ("except", config.people.exclude)
    if not folder or people is None:
        return None
    return {
        "rule": rule,
        "folder": folder,
        "hidden": [p.person_id for p in people if p.chosen],
        "left_untouched": [p.person_id for p in people if p.chosen is False],
        "undecided_hidden": [p.person_id for p in people if not p.decided],
        "recognised": {str(p.person_id): p.match for p in people if p.match},
    }


def write_audit(
    report: AnonReport,
    scanned: AnonScan,
    records: Sequence[Mapping[str, Any]],
    config: Config,
    people: Sequence[Person] | None = None,
) -> Path:
    """`OUTPUT.anon.json`: every track, how each of its frames was found and hidden, identity figures.

    `records`: one per face-frame (`pipeline.anon.steps.compose_frame`); `people` the tracks of one
    person across cuts (pipeline.faces.people). A reviewer can check a file before release from this
    alone, without the original.
    """

    by_track: dict[int, list[Mapping[str, Any]]] = {}
    for r in records:
        by_track.setdefault(int(r["track_id"]), []).append(r)
    tracks = []
    for tr in scanned.result.tracks:
        mine = by_track.get(tr.track_id, [])
        kinds = [str(r.get("kind", "detected")) for r in mine]
        fell = [str(r["fallback"]) for r in mine if not r["synthetic"]]
        ids = [float(r["identity_cosine"]) for r in mine if r.get("identity_cosine") is not None]
        psnr = [float(r["bottleneck_psnr_db"]) for r in mine if r.get("bottleneck_psnr_db") is not None]
        tracks.append(
            {
                "track_id": tr.track_id,
                "shot": tr.shot,
                "frames": [tr.start, tr.end],
                **{k: sum(x == k for x in kinds) for k in KINDS},
                "synthetic": sum(bool(r["synthetic"]) for r in mine),
                "masked": len(fell),
                "masked_because": {r: fell.count(r) for r in sorted(set(fell))},
                "identity_cosine": _stats(ids),
                "leaked_frames": sum(v >= SAME_PERSON_COSINE for v in ids),
                "bottleneck_psnr_db": round(sum(psnr) / len(psnr), 2) if psnr else None,
            }
        )
    path = report.output.with_name(report.output.name + ".anon.json")
    save_json(
        path,
        {
            "version": AUDIT_VERSION,
            "notice": ANON_NOTICE,
            "summary": report.summary(),
            "output": str(report.output),
            "model": report.model,
            "random_test_generator": report.random_generator,
            "frames": report.frames,
            "shots": [[s.start, s.end] for s in scanned.result.shots],
            "raw_detections": scanned.raw_detections,
            "face_frames": report.face_frames,
            "synthetic": report.synthetic,
            "masked": report.masked,
            "identity": {
                "measure": "SFace cosine between the original face and the output at the same place",
                "same_person_threshold": SAME_PERSON_COSINE,
                "measured_face_frames": sum(r.get("identity_cosine") is not None for r in records),
                "max": report.max_identity_cosine,
                "leaked_face_frames": report.leaked,
                "above_threshold": above_threshold(records),  # the face-frames to review, worst first
            },
            # restore's own search on the output's faces: is the person recognised again?
            "attack": report.attack,
            "tracks": tracks,
            # one person across cuts; the undecided are hidden whatever any choice of people says
            "people": [p.as_json() for p in people] if people is not None else None,
            "undecided_people": [p.person_id for p in people or () if not p.decided],
            "people_choice": people_choice(people, config),
            "scale": config.upscale.scale,  # output px per source px (where the people's boxes land)
            "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
            "decode": report.decode,
            "config": to_dict(config),
        },
    )
    return path
