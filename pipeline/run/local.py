"""The in-process executor: every stage in order on this machine, results kept in the work dir.

    preflight -> scan -> crops -> search (per unit of tracks) -> compose (per segment) -> mux

The stage functions, the search units and the segments are those of the Ray executor
(`pipeline.run.stages`), so both give the same output frame for frame, and so does a resumed run.

Each stage's result is stored under a key made of the input's content key and exactly the
settings it depends on, so a rerun (after a crash, or with a changed late-stage setting) skips
what is done. A JSON report beside the output (`pipeline.run.report`, the Ray executor's too) lists
every face-frame with its consistency (PSNR of the downscaled restoration against the footage) and
every track's identity figures, and says plainly that the facial detail is invented.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import INVENTED_DETAIL_NOTICE
from pipeline.config import Config, dump_config
from pipeline.errors import CheckpointError
from pipeline.faces.scan import ScanResult
from pipeline.run.report import RestoreReport, face_record, measure_identity, write_report
from pipeline.run.stages import FacePlacement
from pipeline.types import FaceCrop, FaceRestoration

log = logging.getLogger(__name__)

RANDOM_SOURCE_PREFIX = "random"  # `source` metadata of seeded random (non-face) test generators
# Part of the compose stage's key: bumped when paste-back changes (mask, tone or grain matching).
COMPOSE_VERSION = "compose-v2"


@dataclass(frozen=True)
class Prior:
    G: Any  # pipeline.prior.stylegan2.Generator on `device`
    description: str  # where the weights came from
    random: bool  # a seeded random test generator, not a face model
    key: str  # content key of the weights (part of the search stage's key)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_prior(model: str, device: str, dtype: str = "float32") -> Prior:
    """A generator from a checkpoint path (any supported format) or a model-zoo name."""
    import torch

    from pipeline.prior.checkpoint import load_checkpoint, prepare
    from pipeline.prior.zoo import resolve_model
    from pipeline.run.workdir import WorkDir

    # A file, or a zoo name already in the local cache; otherwise a ModelNotAvailableError that
    # says where to get the weights (nothing is downloaded here: `reel models fetch` does that).
    path = Path(resolve_model(model))
    G, kind = load_checkpoint(path)
    source = kind
    if kind == "reel":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                source = (f.metadata() or {}).get("source", "") or "reel"
        except OSError as exc:
            raise CheckpointError(path, f"cannot read: {exc}") from exc
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    G = prepare(G, device, torch_dtype)
    return Prior(G, f"{path} ({source})", source.startswith(RANDOM_SOURCE_PREFIX), WorkDir.video_key(path))


def restore(
    input: str | Path,
    output: str | Path,
    config: Config,
    *,
    overwrite: bool = False,
    prior: Prior | None = None,
) -> RestoreReport:
    """Restore `input` into `output` on this machine; faces are restored when config.prior.model is set."""
    from pipeline.faces import store
    from pipeline.run import stages
    from pipeline.run.preflight import preflight
    from pipeline.run.workdir import WorkDir, default_workdir

    input, output = Path(input), Path(output)
    info, preset = preflight(input, output, config, overwrite=overwrite)
    wd = WorkDir(default_workdir(output, config.run.workdir))
    wd.clean_temporaries()
    vkey = WorkDir.video_key(input)
    decode = (config.io.deinterlace, config.io.inverse_telecine)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    # scan
    scan_key = WorkDir.settings_key(vkey, config.scan, decode)
    scan_path = wd.artifact("scan", scan_key, "scan.npz")
    if wd.has("scan", scan_key, "scan.npz"):
        scanned: ScanResult = store.scan_from_arrays(wd.load_arrays(scan_path))
        log.info("scan: reusing %s", scan_path)
    else:
        scanned = stages.scan(input, config)
        wd.save_arrays(scan_path, **store.scan_to_arrays(scanned))
    seconds["scan"] = time.perf_counter() - t0
    log.info(
        "%d shots, %d face tracks (%d face-frames), footage is %s",
        len(scanned.shots),
        len(scanned.tracks),
        sum(len(t.frames) for t in scanned.tracks),
        "black and white" if scanned.gray else "colour",
    )

    # crops
    t = time.perf_counter()
    crops_key = WorkDir.settings_key(scan_key, "crops-v1")
    crops_path = wd.artifact("crops", crops_key, "crops.npz")
    if wd.has("crops", crops_key, "crops.npz"):
        crops: list[FaceCrop] = store.crops_from_arrays(wd.load_arrays(crops_path))
    else:
        crops = stages.make_crops(input, scanned.tracks, scanned.gray, config)
        wd.save_arrays(crops_path, **store.crops_to_arrays(crops))
    seconds["crops"] = time.perf_counter() - t

    # search, one stored result per track
    t = time.perf_counter()
    restorations: list[FaceRestoration] = []
    identity: dict[int, dict[str, float]] = {}
    model = config.prior.model
    if model is None and crops:
        log.warning(
            "no face model given (--model): %d face-frames are upscaled but not restored. Give a "
            "StyleGAN2 face checkpoint with --model PATH_OR_NAME",
            len(crops),
        )
    if model is not None and crops:
        if prior is None:
            prior = load_prior(model, resolve_device(config.run.device), config.prior.dtype)
        if prior.random:
            log.warning(
                "the face prior is a seeded RANDOM TEST GENERATOR (%s): restored faces are not faces; "
                "this run only exercises the pipeline",
                prior.description,
            )
        restorations, identity = _search(wd, prior, scanned, crops, scan_key, config)
    seconds["search"] = time.perf_counter() - t

    # compose: upscale, paste, encode parts; then mux
    t = time.perf_counter()
    affine = {(c.track_id, c.frame_index): (c.crop_to_frame, c.image.shape[0]) for c in crops}
    placements = [FacePlacement(r, *affine[(r.track_id, r.frame_index)]) for r in restorations]
    compose_key = WorkDir.settings_key(
        COMPOSE_VERSION,
        vkey,
        decode,
        [(r.track_id, r.frame_index, float(r.psnr), r.latents) for r in restorations],
        config.upscale,
        config.io.preset,
        config.io.crf,
        scanned.gray,
    )
    parts = []
    total = len(_frame_count(input))
    for s, e in stages.segments(total, config):
        name = f"part-{s:08d}.mov"
        part = wd.artifact("compose", compose_key, name)
        if not wd.has("compose", compose_key, name):
            mine = [p for p in placements if s <= p.restoration.frame_index < e]
            stages.compose_segment(input, info, s, e, mine, scanned.gray, config, part)
        parts.append(part)
    seconds["compose"] = time.perf_counter() - t
    t = time.perf_counter()
    stages.mux_parts(parts, input, output, info, preset, config, overwrite=overwrite)
    seconds["mux"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    dump_config(config, output.with_name(output.name + ".config.yaml"))
    report = RestoreReport(
        output=output,
        frames=total,
        tracks=len(scanned.tracks),
        face_frames=len(crops),
        restored=len(restorations),
        met_bound=sum(r.met_bound for r in restorations),
        random_generator=bool(prior and prior.random),
        model=prior.description if prior else model,
        seconds=seconds,
    )
    faces = [face_record(r) for r in restorations]
    report.report_path = write_report(report, scanned, faces, identity, config)
    log.info(
        "wrote %s: %d frames, %d tracks, %d face-frames restored (%d met the bound). %s",
        output,
        report.frames,
        report.tracks,
        report.restored,
        report.met_bound,
        INVENTED_DETAIL_NOTICE if restorations else "",
    )
    return report


def _frame_count(input: Path) -> Sequence[int]:
    from pipeline.io.decode import frame_index

    return frame_index(input)[1]


def _search(
    wd: Any,
    prior: Prior,
    scanned: ScanResult,
    crops: list[FaceCrop],
    scan_key: str,
    config: Config,
) -> tuple[list[FaceRestoration], dict[int, dict[str, float]]]:
    """Every track's restorations and identity figures, searched unit by unit (`stages.search_plan`
    of all the scan's tracks, as the Ray executor divides them) and stored per track (identity beside
    the restorations, as the Ray search worker stores it); finished units are reused. A chunked
    track's anchors and chunks are stored as they finish, then joined into its result."""
    from pipeline.faces import store
    from pipeline.run import stages
    from pipeline.run.report import identity_from_arrays, identity_to_arrays
    from pipeline.run.workdir import WorkDir
    from pipeline.search.latent_space import GaussianizedW

    key = WorkDir.settings_key(scan_key, prior.key, config.search, config.prior.dtype)

    def name(tid: int) -> str:
        return f"track-{tid:06d}.npz"

    out: list[FaceRestoration] = []
    identity: dict[int, dict[str, float]] = {}
    space = None
    device = resolve_device(config.run.device)
    # Units are decided from every track, not only the pending ones, so that a resumed run batches
    # each face exactly as an uninterrupted one (the search's floats depend on batch companions).
    plan = stages.search_plan({t.track_id: len(t.frames) for t in scanned.tracks}, config)
    for unit in plan.units:
        tracks = [t for t in scanned.tracks if t.track_id in unit]
        mine = [c for c in crops if c.track_id in unit]
        if all(wd.has("search", key, name(tid)) for tid in unit):
            faces: list[FaceRestoration] = []
            for tid in unit:
                stored = wd.load_arrays(wd.artifact("search", key, name(tid)))
                theirs = store.restorations_from_arrays(stored)
                figures = identity_from_arrays(stored)
                if figures is not None:
                    identity[tid] = figures
                faces.extend(theirs)
            if any(f.track_id not in identity for f in faces):  # stored without (SFace was unavailable)
                measured = measure_identity(tracks, mine, faces)
                identity.update({tid: v for tid, v in measured.items() if tid not in identity})
            out.extend(faces)
            continue
        if space is None:
            space = GaussianizedW.fit(prior.G, n=config.search.gaussian_samples, device=device)
        # The unit's tracks advance in lockstep, frame t of each in one batch (see search.track).
        faces = stages.search_tracks(prior.G, space, mine, config, device)
        measured = measure_identity(tracks, mine, faces)
        for tid in unit:
            theirs = [f for f in faces if f.track_id == tid]
            wd.save_arrays(
                wd.artifact("search", key, name(tid)),
                **store.restorations_to_arrays(theirs),
                **identity_to_arrays(measured.get(tid)),
            )
            if theirs:
                log.info(
                    "track %d: %d frames restored, mean consistency %.1f dB",
                    tid,
                    len(theirs),
                    sum(f.psnr for f in theirs) / len(theirs),
                )
        identity.update(measured)
        out.extend(faces)

    def search_space() -> Any:
        nonlocal space
        if space is None:
            space = GaussianizedW.fit(prior.G, n=config.search.gaussian_samples, device=device)
        return space

    for tid, chunks in plan.chunked.items():
        tracks = [t for t in scanned.tracks if t.track_id == tid]
        mine = [c for c in crops if c.track_id == tid]
        result = wd.artifact("search", key, name(tid))
        if wd.has("search", key, name(tid)):
            stored = wd.load_arrays(result)
            faces = store.restorations_from_arrays(stored)
            figures = identity_from_arrays(stored)
            if figures is not None:
                identity[tid] = figures
            elif faces:  # stored without (SFace was unavailable)
                identity.update(measure_identity(tracks, mine, faces))
            out.extend(faces)
            continue
        anchors_name, chunk_names = stages.chunk_artifacts(tid, chunks)
        anchors_path = wd.artifact("search", key, anchors_name)
        if wd.has("search", key, anchors_name):
            arrays = wd.load_arrays(anchors_path)
            anchors, states = store.restorations_from_arrays(arrays), stages.states_from_arrays(arrays)
        else:
            anchors, states = stages.search_anchors(prior.G, search_space(), mine, chunks, config, device)
            wd.save_arrays(
                anchors_path, **store.restorations_to_arrays(anchors), **stages.states_to_arrays(states)
            )
        parts: list[list[FaceRestoration]] = []
        for chunk, part_name in zip(chunks, chunk_names, strict=True):
            part_path = wd.artifact("search", key, part_name)
            if wd.has("search", key, part_name):
                parts.append(store.restorations_from_arrays(wd.load_arrays(part_path)))
                continue
            after = states[chunk.index + 1] if chunk.index + 1 < len(states) else None
            part = stages.search_chunk(
                prior.G, search_space(), mine, chunks, chunk.index, states[chunk.index], after, config, device
            )
            wd.save_arrays(part_path, **store.restorations_to_arrays(part))
            parts.append(part)
        faces = stages.join_chunked(anchors, parts)
        measured = measure_identity(tracks, mine, faces)
        wd.save_arrays(result, **store.restorations_to_arrays(faces), **identity_to_arrays(measured.get(tid)))
        log.info(
            "track %d: %d frames restored in %d chunks, mean consistency %.1f dB",
            tid,
            len(faces),
            len(chunks),
            sum(f.psnr for f in faces) / max(len(faces), 1),
        )
        identity.update(measured)
        out.extend(faces)
    out.sort(key=lambda f: f.track_id)  # track order, whichever way each track was searched
    return out, identity
