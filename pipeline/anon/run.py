"""`reel anonymize`, in process: every face of every frame replaced, and an audit of it.

    preflight -> recall-first scan -> crops -> synthetic faces (or masks) -> compose -> mux -> audit

The same preflight as `restore` (same one-line errors; an existing output is never replaced without
--overwrite, and a failed run leaves it intact). Results are kept in the work directory under keys
of their inputs and settings, as `restore` keeps them, except the original face crops: they are
deleted when the job ends, whether it succeeded or not (`anon.keep_crops` keeps them for review).
Nothing stored, reported or logged carries a search's random start (see pipeline.anon.search).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.anon.compose import AnonFace, anonymize_segment
from pipeline.anon.scan import KINDS, AnonScan, anon_scan_frames
from pipeline.anon.search import NO_LATENTS, anonymize_unit, unservable
from pipeline.config import Config, dump_config
from pipeline.errors import ConfigError
from pipeline.faces.scan import ScanResult
from pipeline.types import FaceCrop, FaceRestoration

log = logging.getLogger(__name__)

AUDIT_VERSION = 1
SAME_PERSON_COSINE = 0.363  # SFace's published same-person threshold (pipeline.metrics.identity)
ANON_NOTICE = (
    "Every detected face was replaced by a synthetic face that matches the footage only at a few "
    "pixels across, or masked where no synthetic face could be made; the synthetic faces are "
    "inventions and carry no information about the people filmed beyond that."
)


@dataclass
class AnonReport:
    """What `anonymize` did (the audit sidecar has the details)."""

    output: Path
    frames: int
    tracks: int
    face_frames: int
    synthetic: int  # face-frames replaced by a synthetic face
    masked: int  # face-frames masked only (the search could not serve them)
    max_identity_cosine: float | None  # SFace cosine, original vs output, worst face-frame
    leaked: int  # face-frames whose output still passes SFace's same-person threshold
    model: str | None
    random_generator: bool
    audit_path: Path | None = None
    html_path: Path | None = None  # OUTPUT.report.html (pipeline.report.anon), when report.html is on
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        ident = "not measured" if self.max_identity_cosine is None else f"{self.max_identity_cosine:.3f}"
        return (
            f"{self.output}: {self.frames} frames, {self.tracks} face tracks, "
            f"{self.face_frames} face-frames: {self.synthetic} replaced by synthetic faces, "
            f"{self.masked} masked; max identity cosine "
            f"{ident} (same person >= {SAME_PERSON_COSINE}), {self.leaked} above it (review those)"
        )


def check_anon_config(config: Config) -> None:
    """Settings of the anon section that the dataclass types alone cannot check."""
    a = config.anon
    if a.fallback not in ("blur", "fill"):
        raise ConfigError(f"anon.fallback={a.fallback!r}: must be blur or fill")
    if a.bottleneck < 2:
        raise ConfigError(f"anon.bottleneck={a.bottleneck}: must be 2 px or more")
    if a.mask_grow < 1.0:
        raise ConfigError(f"anon.mask_grow={a.mask_grow}: must be 1 or more (masks cover the face)")
    for name in ("extend", "bridge", "fallback_cells", "min_face"):
        if getattr(a, name) < 0:
            raise ConfigError(f"anon.{name}={getattr(a, name)}: must not be negative")


def _prior_api() -> tuple[Any, Any]:
    """(load_prior, resolve_device) wherever the tree keeps them."""
    try:
        from pipeline.prior.load import load_prior, resolve_device  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from pipeline.run.local import load_prior, resolve_device
    return load_prior, resolve_device


def _mux(
    parts: Sequence[Path], video: Path, output: Path, info: Any, preset: Any, cfg: Config, *, overwrite: bool
) -> Path:
    """The parts with the source's audio and subtitles, colour, rotation, aspect and (decoded) rate."""
    from pipeline.io.decode import IVTC_RATE
    from pipeline.io.mux import mux

    vs = info.video
    rate = (
        vs.frame_rate * IVTC_RATE if vs.frame_rate is not None and cfg.io.inverse_telecine else vs.frame_rate
    )
    return mux(
        list(parts),
        video,
        output,
        overwrite=overwrite,
        color=vs.color,
        rotation=vs.rotation,
        frame_rate=rate,
        variable_frame_rate=vs.variable_frame_rate and not cfg.io.inverse_telecine,
        sample_aspect_ratio=vs.sample_aspect_ratio,
        codec_tag=preset.codec_tag,
    )


def _frames(
    video: Path, cfg: Config, start: int = 0, end: int | None = None, max_size: int | None = None
) -> Any:
    from pipeline.io.decode import iter_frames

    return iter_frames(
        video,
        start=start,
        end=end,
        max_size=max_size,
        deinterlace=cfg.io.deinterlace,
        inverse_telecine=bool(cfg.io.inverse_telecine),
        max_damaged_fraction=cfg.io.max_damaged_fraction,
    )


def scan(video: Path, cfg: Config) -> AnonScan:
    """The recall-first scan of the whole video (see pipeline.anon.scan)."""
    from pipeline.io.probe import probe

    vs = probe(video).video
    reader = _frames(video, cfg, max_size=cfg.scan.detect_size)

    def pairs() -> Iterator[tuple[int, np.ndarray]]:
        with reader:
            for frame in reader:
                yield frame.index, frame.image

    return anon_scan_frames(pairs(), cfg.scan, cfg.anon, source_size=(vs.width, vs.height))


def scan_to_arrays(scanned: AnonScan) -> dict[str, np.ndarray]:
    from pipeline.faces import store

    keys = sorted(scanned.kinds)
    return {
        **store.scan_to_arrays(scanned.result),
        "kind_key": np.array(keys, np.int64).reshape(-1, 2),
        "kind": np.array([KINDS.index(scanned.kinds[k]) for k in keys], np.int64),
        "raw_detections": np.array([scanned.raw_detections], np.int64),
    }


def scan_from_arrays(a: dict[str, np.ndarray]) -> AnonScan:
    from pipeline.faces import store

    kinds = {(int(t), int(f)): KINDS[int(k)] for (t, f), k in zip(a["kind_key"], a["kind"], strict=True)}
    return AnonScan(store.scan_from_arrays(a), kinds, int(a["raw_detections"][0]))


def make_crops(video: Path, scanned: ScanResult, rows: set[tuple[int, int]], cfg: Config) -> list[FaceCrop]:
    """Aligned native-size crops of the face-frames in `rows` ((track, frame) pairs)."""
    from pipeline.faces.align import make_crop

    wanted: dict[int, list[Any]] = {}
    for track in scanned.tracks:
        for r in track.frames:
            if (track.track_id, r.frame_index) in rows:
                wanted.setdefault(r.frame_index, []).append(r)
    if not wanted:
        return []
    crops = []
    start = 0 if cfg.io.inverse_telecine else min(wanted)
    with _frames(video, cfg, start, max(wanted) + 1) as reader:
        for frame in reader:
            for r in wanted.get(frame.index, ()):
                crops.append(make_crop(frame.image, r, scanned.gray))
    crops.sort(key=lambda c: (c.track_id, c.frame_index))
    return crops


def faces_to_arrays(faces: Sequence[FaceRestoration]) -> dict[str, np.ndarray]:
    """Synthetic faces as stored: images (float16), ids and figures; no latents (there are none)."""
    return {
        "track_id": np.array([f.track_id for f in faces], np.int64),
        "frame_index": np.array([f.frame_index for f in faces], np.int64),
        "image": np.array([f.image for f in faces], np.float16).reshape(
            len(faces), *(faces[0].image.shape if faces else (0, 0, 3))
        ),
        "psnr": np.array([f.psnr for f in faces], np.float32),
        "met_bound": np.array([f.met_bound for f in faces], bool),
        "steps": np.array([f.steps for f in faces], np.int64),
    }


def faces_from_arrays(a: dict[str, np.ndarray]) -> list[FaceRestoration]:
    return [
        FaceRestoration(
            int(a["track_id"][i]),
            int(a["frame_index"][i]),
            NO_LATENTS,
            a["image"][i].astype(np.float32),
            float(a["psnr"][i]),
            bool(a["met_bound"][i]),
            int(a["steps"][i]),
        )
        for i in range(len(a["track_id"]))
    ]


def anonymize(
    input: str | Path,
    output: str | Path,
    config: Config,
    *,
    overwrite: bool = False,
    prior: Any = None,  # a loaded Prior (tests, batches); None: load config.prior.model if set
) -> AnonReport:
    """Anonymise `input` into `output` on this machine; see the module docstring."""
    from pipeline.io.decode import frame_index
    from pipeline.run.preflight import preflight
    from pipeline.run.workdir import WorkDir, default_workdir

    input, output = Path(input), Path(output)
    check_anon_config(config)
    info, preset = preflight(input, output, config, overwrite=overwrite)
    from pipeline.io.cadence import resolve_inverse_telecine

    config, _ = resolve_inverse_telecine(config, input)  # "auto" measured once, before any step
    wd = WorkDir(default_workdir(output, config.run.workdir))
    wd.clean_temporaries()
    vkey = WorkDir.video_key(input)
    decode = (config.io.deinterlace, config.io.inverse_telecine)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    a = config.anon
    scan_key = WorkDir.settings_key("anon-scan-v1", vkey, config.scan, a.extend, a.bridge, decode)
    scan_path = wd.artifact("anon-scan", scan_key, "scan.npz")
    if wd.has("anon-scan", scan_key, "scan.npz"):
        scanned = scan_from_arrays(wd.load_arrays(scan_path))
    else:
        scanned = scan(input, config)
        wd.save_arrays(scan_path, **scan_to_arrays(scanned))
    result = scanned.result
    seconds["scan"] = time.perf_counter() - t0

    model = config.prior.model
    if model is not None and prior is None and result.tracks:
        load_prior, resolve_device = _prior_api()
        prior = load_prior(model, resolve_device(config.run.device), config.prior.dtype)
    if prior is None:
        log.warning(
            "no face model given (--model): every face is masked (anon.fallback=%s), none replaced",
            a.fallback,
        )
    elif prior.random:
        log.warning(
            "the face prior is a seeded RANDOM TEST GENERATOR (%s): synthetic 'faces' are not faces",
            prior.description,
        )
    resolution = int(prior.G.cfg.resolution) if prior is not None else None
    size = (info.video.width, info.video.height)
    reasons: dict[tuple[int, int], str] = {}
    for track in result.tracks:
        for r in track.frames:
            why = unservable(r, size, a, resolution)
            if why is not None:
                reasons[(track.track_id, r.frame_index)] = why
    served = {(tr.track_id, r.frame_index) for tr in result.tracks for r in tr.frames} - set(reasons)

    crops_key = WorkDir.settings_key(scan_key, "anon-crops-v1", sorted(served))
    crops_dir = wd.root / "anon-crops"
    synthetic: list[FaceRestoration] = []
    affine: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
    try:
        t = time.perf_counter()
        crops: list[FaceCrop] = []
        if served:
            crops = make_crops(input, result, served, config)
            if a.keep_crops:
                from pipeline.faces import store

                wd.save_arrays(
                    wd.artifact("anon-crops", crops_key, "crops.npz"), **store.crops_to_arrays(crops)
                )
        affine = {(c.track_id, c.frame_index): (c.crop_to_frame, c.image.shape[0]) for c in crops}
        seconds["crops"] = time.perf_counter() - t
        t = time.perf_counter()
        if crops and prior is not None:
            search_key = WorkDir.settings_key(crops_key, prior.key, config.search, a.bottleneck)
            path = wd.artifact("anon-search", search_key, "synthetic.npz")
            if wd.has("anon-search", search_key, "synthetic.npz"):
                synthetic = faces_from_arrays(wd.load_arrays(path))
            else:
                from pipeline.search.latent_space import GaussianizedW

                _, resolve_device = _prior_api()
                device = resolve_device(config.run.device)
                space = GaussianizedW.fit(prior.G, n=config.search.gaussian_samples, device=device)
                synthetic = anonymize_unit(prior.G, space, crops, config, device)
                wd.save_arrays(path, **faces_to_arrays(synthetic))
            # exactly what the store gives back (float16 images): a resumed run pastes the same
            synthetic = faces_from_arrays(faces_to_arrays(synthetic)) if synthetic else []
        del crops
        seconds["search"] = time.perf_counter() - t
    finally:
        if not a.keep_crops:
            shutil.rmtree(crops_dir, ignore_errors=True)

    by_key = {(f.track_id, f.frame_index): f for f in synthetic}
    faces = []
    for tr in result.tracks:
        for r in tr.frames:
            k = (tr.track_id, r.frame_index)
            s = by_key.get(k)
            if s is None and k not in reasons:
                reasons[k] = "search failed"
            aff = affine.get(k) if s is not None else None
            faces.append(
                AnonFace(
                    tr.track_id,
                    r.frame_index,
                    r.box,
                    r.landmarks,
                    s,
                    aff[0] if aff else None,
                    aff[1] if aff else 0,
                )
            )

    t = time.perf_counter()
    total = len(frame_index(input)[1])
    compose_key = WorkDir.settings_key(
        "anon-compose-v1",
        vkey,
        decode,
        scan_key,
        [(f.track_id, f.frame_index, f.synthetic is not None) for f in faces],
        [f.synthetic.image.astype(np.float16) for f in faces if f.synthetic is not None],
        config.upscale,
        a,
        config.io.preset,
        config.io.crf,
    )
    identity: dict[tuple[int, int], float] = {}
    parts = []
    length = max(1, total if config.io.inverse_telecine else config.run.segment_frames)
    for s0 in range(0, total, length):
        e0 = min(s0 + length, total)
        name = f"part-{s0:08d}.mov"
        figures = f"part-{s0:08d}.identity.json"
        part = wd.artifact("anon-compose", compose_key, name)
        if wd.has("anon-compose", compose_key, name) and (
            not a.measure_identity or wd.has("anon-compose", compose_key, figures)
        ):
            if a.measure_identity:
                stored = wd.load_json(wd.artifact("anon-compose", compose_key, figures))
                identity.update({(int(x[0]), int(x[1])): float(x[2]) for x in stored})
        else:
            mine = [f for f in faces if s0 <= f.frame_index < e0]
            measured: dict[tuple[int, int], float] | None = {} if a.measure_identity else None
            anonymize_segment(input, info, s0, e0, mine, result.gray, config, part, measured)
            if measured is not None:
                wd.save_json(
                    wd.artifact("anon-compose", compose_key, figures),
                    [[k[0], k[1], v] for k, v in sorted(measured.items())],
                )
                identity.update(measured)
        parts.append(part)
    seconds["compose"] = time.perf_counter() - t
    t = time.perf_counter()
    _mux(parts, input, output, info, preset, config, overwrite=overwrite)
    seconds["mux"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    dump_config(config, output.with_name(output.name + ".config.yaml"))
    values = list(identity.values())
    report = AnonReport(
        output=output,
        frames=total,
        tracks=len(result.tracks),
        face_frames=len(faces),
        synthetic=len(synthetic),
        masked=len(faces) - len(synthetic),
        max_identity_cosine=max(values) if values else None,
        leaked=sum(v >= SAME_PERSON_COSINE for v in values),
        model=prior.description if prior is not None else None,
        random_generator=bool(prior is not None and prior.random),
        seconds=seconds,
    )
    report.audit_path = write_audit(report, scanned, faces, reasons, identity, config)
    if config.report.html:
        from pipeline.report.anon import write_anon_report

        report.html_path = write_anon_report(report.audit_path, config.report)
    log.info("%s", report.summary())
    return report


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return {"max": round(max(finite), 4), "mean": round(sum(finite) / len(finite), 4)}


def write_audit(
    report: AnonReport,
    scanned: AnonScan,
    faces: Sequence[AnonFace],
    reasons: dict[tuple[int, int], str],
    identity: dict[tuple[int, int], float],
    config: Config,
) -> Path:
    """`OUTPUT.anon.json`: every track, how each of its frames was found and hidden, identity figures.

    A reviewer can check a file before release from this alone, without the original.
    """
    from pipeline.config import to_dict
    from pipeline.run.workdir import save_json

    tracks = []
    by_track: dict[int, list[AnonFace]] = {}
    for f in faces:
        by_track.setdefault(f.track_id, []).append(f)
    for tr in scanned.result.tracks:
        mine = by_track.get(tr.track_id, [])
        kinds = [scanned.kinds.get((tr.track_id, f.frame_index), "detected") for f in mine]
        fell = [
            reasons[(tr.track_id, f.frame_index)] for f in mine if (tr.track_id, f.frame_index) in reasons
        ]
        ids = [
            identity[(tr.track_id, f.frame_index)] for f in mine if (tr.track_id, f.frame_index) in identity
        ]
        psnr = [f.synthetic.psnr for f in mine if f.synthetic is not None]
        tracks.append(
            {
                "track_id": tr.track_id,
                "shot": tr.shot,
                "frames": [tr.start, tr.end],
                **{k: sum(x == k for x in kinds) for k in KINDS},
                "synthetic": sum(f.synthetic is not None for f in mine),
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
                "measured_face_frames": len(identity),
                "max": report.max_identity_cosine,
                "leaked_face_frames": report.leaked,
            },
            "tracks": tracks,
            "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
            "config": to_dict(config),
        },
    )
    return path
