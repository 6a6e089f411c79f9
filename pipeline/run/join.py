"""The plan's last step, run by the driver: join the encoded parts into the output (audio, subtitles
and tags from the source), write the resolved config and the report, and tidy the work directory.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import INVENTED_DETAIL_NOTICE
from pipeline.config import Config, dump_config
from pipeline.faces import store
from pipeline.faces.people import people_from_arrays
from pipeline.files import load_arrays
from pipeline.film.clean import collect_stats
from pipeline.io.presets import EncoderPreset
from pipeline.io.verify import output_frame_count
from pipeline.report.build import load_records, merge_records
from pipeline.report.model import FaceCounts
from pipeline.run.frames import inverse_telecine
from pipeline.run.report import ReportArtifacts, RestoreReport, provenance_tags, write_report
from pipeline.types import VideoInfo, VideoStreamInfo

if TYPE_CHECKING:
    from pipeline.faces.scan import ScanResult
    from pipeline.run.mode import DecodeSection, DriverContext, RunReport
    from pipeline.run.plan import PlanSummary

log = logging.getLogger(__name__)


def decoded_frame_rate(video: VideoStreamInfo, cfg: Config) -> Fraction | None:
    """The rate of the stream the steps decode: the source's, or after inverse telecine 4/5 of it
    (24000/1001 from a telecined 30000/1001), as the decoder's `FrameReader.frame_rate` gives it."""
    from pipeline.io.decode import IVTC_RATE

    rate = video.frame_rate
    return rate * IVTC_RATE if rate is not None and inverse_telecine(cfg) else rate


def mux_parts(
    parts: Sequence[str | Path],
    video: Path,
    output: Path,
    info: VideoInfo,
    preset: EncoderPreset,
    cfg: Config,
    *,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Join the encoded parts with the source's audio and subtitles into `output` (see io.mux.mux),
    declaring the source's colour, rotation and pixel aspect and the decoded stream's frame rate."""
    from pipeline.io.mux import mux

    vs = info.video
    return mux(
        [Path(p) for p in parts],
        video,
        output,
        overwrite=overwrite,
        color=vs.color,
        rotation=vs.rotation,
        frame_rate=decoded_frame_rate(vs, cfg),
        variable_frame_rate=vs.variable_frame_rate and not inverse_telecine(cfg),
        sample_aspect_ratio=vs.sample_aspect_ratio,
        codec_tag=preset.codec_tag,
        threads=1,  # stream copy: one thread keeps the driver's share of the machine small
        metadata=metadata,  # provenance tags (pipeline.run.report.provenance_tags)
    )


def join(summary: PlanSummary, *, context: DriverContext) -> RunReport:
    """Mux and config, then the mode's report (`Mode.finish`); `context` is the executor's: its name,
    the seconds so far and the frames decoded and cleaned (`Schedule.decode_section`). Returns what
    the mode's finish returns (a `RunReport`)."""
    job = summary.job
    cfg = job.config
    seconds = dict(context.get("seconds", {}))
    t = time.perf_counter()
    tags = provenance_tags(cfg, job.model_key, job.model_random)
    mux_parts(
        summary.parts,
        job.input,
        job.output,
        job.info,
        job.preset,
        cfg,
        overwrite=job.overwrite,
        metadata=tags,
    )
    if cfg.film.matte:  # the provenance matte beside the output, joined as the video parts were
        from pipeline.run.matte import join_matte

        join_matte(summary.records, job.output)
    seconds["mux"] = time.perf_counter() - t
    dump_config(cfg, job.output.with_name(job.output.name + ".config.yaml"))
    report = job.mode.finish(summary, seconds, context.get("executor"), context.get("decode"))
    if cfg.film.matte:
        from pipeline.run.matte import remove_matte_files

        remove_matte_files(summary.records)
    _remove_parts(summary.parts, summary.records)
    return report


def _film_figures(records: Sequence[str], scanned: ScanResult | None) -> dict[str, Any] | None:
    """What film cleaning changed, over the whole run and per shot (the whole clip as one when not
    scanned), from the compose segments' figures (removed once read); None without cleaning."""
    from pipeline.run.steps import film_stats_path

    cleaned = collect_stats([film_stats_path(p) for p in records], remove=True)
    if cleaned is None:
        return None
    film = cleaned.as_dict()
    log.info("film cleaning: %s", ", ".join(f"{k} {v:.4g}" for k, v in film.items()))
    last = int(max((r[0] for r in cleaned.by_frame), default=-1)) + 1
    ranges = [(s.start, s.end) for s in scanned.shots] if scanned is not None else [(0, last)]
    film["shots"] = cleaned.by_shot(ranges)
    return film


def finish_restore(
    summary: PlanSummary,
    seconds: dict[str, float],
    executor: str | None,
    decode: DecodeSection | None = None,
) -> RestoreReport:
    """Restore's report: every face-frame's figures, film cleaning's, the JSON and the HTML page."""
    from pipeline.run.steps import face_rows

    job = summary.job
    cfg = job.config
    faces: list[dict[str, Any]] = []
    identity: dict[int, dict[str, float]] = {}
    for path in summary.tracks:
        rows, figures = face_rows(path)
        faces += rows
        if rows and figures is not None:
            identity[rows[0]["track_id"]] = figures
    stitched = load_arrays(summary.scan) if summary.scan is not None else None
    scanned = store.scan_from_arrays(stitched) if stitched is not None else None

    people = people_from_arrays(stitched, scanned.tracks) if stitched is not None and scanned else None
    model = job.model_description or cfg.prior.model
    film = _film_figures(summary.records, scanned)
    counts = FaceCounts.of(merge_records(faces, load_records(summary.records)))
    matte = None
    if cfg.film.matte:  # the share of altered pixels per shot (the whole clip when not scanned)
        from pipeline.run.matte import matte_report

        shots = [(s.start, s.end) for s in scanned.shots] if scanned is not None else None
        matte = matte_report(summary.records, job.output, shots)
    report = RestoreReport(
        output=job.output,
        frames=output_frame_count(job.output),  # the output's, not the source index's (#15)
        tracks=len(scanned.tracks) if scanned is not None else 0,
        face_frames=sum(len(tr.frames) for tr in scanned.tracks) if scanned is not None else 0,
        restored=counts.restored,
        met_bound=counts.met_bound,
        random_generator=job.model_random,
        model=model,
        seconds=seconds,
        searched=counts.searched,
        fell_back=counts.fell_back,
        met_bound_in_frame=counts.met_bound_in_frame,
        decode=decode.copy() if decode is not None else None,
    )
    report.input = job.input
    # the report reads crops, restorations and compose records before the records are removed
    artifacts = ReportArtifacts(
        Path(job.workdir),
        [Path(p) for p in summary.crops],
        [Path(p) for p in summary.tracks],
        [Path(p) for p in summary.records],
        Path(summary.spread) if summary.spread else None,
        [Path(_pictures_path(p)) for p in summary.records],
    )
    report.report_path = write_report(
        report,
        scanned,
        faces,
        identity,
        cfg,
        executor=executor,
        artifacts=artifacts,
        model_key=job.model_key,
        film=film,
        people=people,
        matte=matte,
    )
    # DEBUG: the command line prints this summary as its final line; at INFO it showed twice.
    log.debug("wrote %s: %s", job.output, face_sentence(report))
    if report.restored:
        log.info(INVENTED_DETAIL_NOTICE)
    return report


def face_sentence(report: RestoreReport) -> str:
    """What happened to the faces, in one line: restored, fallbacks and the output's promise apart."""
    if not report.model:
        return f"{report.frames} frames; no face model: faces were upscaled with the rest of the frame"
    parts = [
        f"{report.frames} frames, {report.tracks} face tracks, "
        f"{report.restored}/{report.face_frames} face-frames restored"
    ]
    if report.fell_back:
        parts.append(f"{report.fell_back} fell back to the plain upscale")
    if report.restored:
        parts.append(
            f"{report.met_bound_in_frame}/{report.restored} meet the consistency bound in the output frame"
        )
    return ", ".join(parts)


def _remove_parts(parts: Sequence[str], records: Sequence[str]) -> None:
    """Encoded parts are as big as the output and only serve a rerun before the mux: once the output
    exists they go, with their records (scan, crops and search results stay: a changed late setting
    reuses them)."""
    for path in (*parts, *records, *map(_pictures_path, records)):
        Path(path).unlink(missing_ok=True)


def _pictures_path(records: str) -> str:
    from pipeline.run.steps import pictures_path

    return pictures_path(records)


def remove_empty_dirs(root: Path) -> None:
    """A failed or finished run leaves no empty directories behind (artifacts stay)."""
    if not root.is_dir():
        return
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            directory.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()
