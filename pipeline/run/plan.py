"""The plan of one restore: every step, its key, artifacts and dependencies, built once, as data.

    scan segment ─► stitch ─► crops (per unit) ─► search unit ──────────────► compose segment ─► join
                                             └─► anchors ─► chunk ─► join chunks ─┘

When faces are scanned and film cleaning or inverse telecine is on, a clean step per segment comes
first: it decodes and cleans the segment once, and the scan, crops and compose steps that read its
frames depend on it and read them back (`stores_clean`). Its frames are big (raw pictures): the
schedule removes them once every step that reads them has finished (`Step.transient`).

`build_plan(job, scanned)` is a pure function of the job (input, settings, work directory) and, once
the stitch step has run, of the tracks it found: before that the plan holds the scan steps and the
stitch only (`complete` is False), after it the whole job. Executors (`pipeline.run.local`,
`pipeline.run.ray_exec`) only run plans, through `pipeline.run.schedule.Schedule`.

A step is done when all its artifacts exist (every artifact is written atomically, so existing
means complete). Its artifacts live under `<workdir>/<stage>/<key>/`, the key a hash of the input's
content key and exactly the settings the result depends on, so a changed setting recomputes its
stage and those after it, and nothing before: a paste-back (compose) setting recomputes compose
only, a search setting search and compose, never the scan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.faces.choose import PeopleChoice, References
from pipeline.faces.scan import ScanResult
from pipeline.files import settings_key
from pipeline.io.presets import EncoderPreset
from pipeline.run import progress as P
from pipeline.run.frames import CleanSegment, film_cleaning, inverse_telecine
from pipeline.run.mode import Mode
from pipeline.types import VideoInfo

log = logging.getLogger(__name__)

# Part of a stage's key: bumped when what the stage computes changes (every key after it changes too).
SCAN_VERSION = "scan-v2"  # v2: per-segment detections and cuts, stitched
CLEAN_VERSION = "clean-v1"  # the decoded, film-cleaned frames of a segment, full size
CROPS_VERSION = "crops-v2"  # v2: crops per search unit, with each crop's size
SEARCH_VERSION = "search-v2"  # v2: face images beside the rows (read a frame range at a time)
GUIDE_VERSION = "guide-v1"  # the reference photos' latents (pipeline.search.guide)
COMPOSE_VERSION = "compose-v3"  # v3: faces' compose_frame (projection, fallback, per-face records)


@dataclass(frozen=True)
class Job:
    """What to do: the input, the output and the settings (small; sent to every step as needed)."""

    input: Path
    output: Path
    config: Config
    info: VideoInfo  # the probed input
    preset: EncoderPreset
    frames: int  # frames of the decoded stream (`pipeline.io.decode.frame_index`)
    workdir: Path
    video_key: str  # content key of the input (`WorkDir.video_key`)
    model_key: str | None  # content key of the generator's weights; None without a model
    mode: Mode[Any]  # what the steps call and which rules hold (pipeline.run.mode)
    model_description: str | None = None  # where the weights come from (for logs and the report)
    model_random: bool = False  # the model is a seeded random test generator, not a face model
    overwrite: bool = False
    store_frames: bool = False  # clean steps store each segment's frames once (`wants_stored_frames`)
    people: PeopleChoice | None = None  # whom reference photos chose (pipeline.faces.choose); None: all
    references: References | None = None  # photos that guide the search (pipeline.search.guide)

    @property
    def faces(self) -> bool:
        """Faces are scanned: with a model, or in a mode that handles faces without one (anonymise)."""
        return self.mode.faces_without_model or self.config.prior.model is not None


@dataclass(frozen=True)
class Step:
    """One unit of work. `fn(*args)` writes `artifacts`; search steps get the loaded generator first
    (`fn(model, *args)`), driver steps a `context` keyword (the executor's run summary)."""

    key: str  # unique in the plan, e.g. "scan/00000240", "search/0003", "compose/00000480"
    kind: (
        str  # clean | scan | stitch | crops | guide | search | anchors | chunk | join_chunks | compose | join
    )
    fn: Callable[..., Any]  # a module-level function (Ray ships it by reference)
    args: tuple[Any, ...]
    artifacts: tuple[str, ...]  # done when every one exists
    deps: tuple[str, ...] = ()  # keys of the steps whose artifacts it reads
    search: bool = False  # runs where the generator is loaded (Ray: a search actor)
    driver: bool = False  # runs in the driver process (the join: mux and report)
    progress: tuple[tuple[str, int], ...] = ()  # counters advanced when it finishes (or was done)
    label: str = ""  # for logs and errors
    transient: bool = False  # its artifacts are removed once every step that reads them has finished

    def done(self) -> bool:
        """Every artifact exists and verifies (`WorkDir.has`: a damaged one is removed, and redone)."""
        from pipeline.run.workdir import WorkDir

        if not self.artifacts:
            return False
        for artifact in map(Path, self.artifacts):  # <root>/<stage>/<key>/<name>
            key_dir = artifact.parent
            if not WorkDir(key_dir.parent.parent).has(key_dir.parent.name, key_dir.name, artifact.name):
                return False
        return True


@dataclass
class Plan:
    job: Job
    steps: dict[str, Step]  # in a valid running order
    complete: bool  # False until the tracks are known (only the scan and the stitch are planned)
    segments: list[tuple[int, int]]
    keys: dict[str, str]  # stage -> key (directory under the work directory)
    scanned: ScanResult | None = None
    totals: dict[str, int] = field(default_factory=dict)  # progress totals
    _users: dict[str, list[str]] | None = field(default=None, repr=False)  # key -> its dependents

    @property
    def stitch(self) -> Step | None:
        return self.steps.get("stitch")

    def users(self, key: str) -> list[str]:
        """The steps that depend on step `key` (indexed once per plan)."""
        if self._users is None:
            self._users = {}
            for k, step in self.steps.items():
                for dep in step.deps:
                    self._users.setdefault(dep, []).append(k)
        return self._users.get(key, [])

    def parts(self) -> list[Path]:
        """The encoded parts, in order (the compose steps' first artifacts)."""
        return [Path(s.artifacts[0]) for s in self.steps.values() if s.kind == "compose"]

    def records(self) -> list[Path]:
        """The per-segment face records (JSON lists of `compose_frame` records), in order."""
        return [Path(s.artifacts[1]) for s in self.steps.values() if s.kind == "compose"]

    def track_results(self) -> list[Path]:
        """Every track's stored search result (npz), in track order."""
        out = []
        for s in self.steps.values():
            if s.kind == "search":
                out += [Path(p) for p in s.artifacts[0::2]]
            elif s.kind == "join_chunks":
                out.append(Path(s.artifacts[0]))
        return sorted(out)


def segments(frames: int, cfg: Config) -> list[tuple[int, int]]:
    """The frame ranges [start, end) scanned and composed as separate steps (run.segment_frames).

    Inverse telecine renumbers frames as it decodes, so it can only read from frame 0: one segment.
    """
    length = max(1, frames if inverse_telecine(cfg) else cfg.run.segment_frames)
    return [(s, min(s + length, frames)) for s in range(0, frames, length)]


def wants_stored_frames(cfg: Config, faces: bool) -> bool:
    """Whether a plan should decode and clean each segment once in a clean step: faces are scanned
    (so scan, crops and compose would each decode the frames), decoding is costly to repeat (film
    cleaning, or inverse telecine, which reads from frame 0) and `run.store_frames` is on. The job
    decides once (`Job.store_frames`), also from the free space (`stored_frames_bytes`)."""
    return faces and cfg.run.store_frames and (film_cleaning(cfg) or inverse_telecine(cfg))


def stored_frames_bytes(info: VideoInfo, frames: int) -> int:
    """The disk the stored frames of the whole video take at most (raw RGB, full size): every
    segment's are written before the stitch, and removed as compose reads them."""
    vs = info.video
    return frames * vs.width * vs.height * 3 * (2 if vs.bit_depth > 8 else 1)


def stores_clean(job: Job) -> bool:
    """Whether the job's plan has clean steps (decided once, when the job was made)."""
    return job.store_frames


def _keys(job: Job) -> dict[str, str]:

    cfg = job.config
    decode = (cfg.io.deinterlace, cfg.io.inverse_telecine, cfg.film)
    mode = job.mode.settings(cfg)  # its name, and the settings of its own section
    # the scan detects on stored full-size cleaned frames when there are clean steps
    scan_input = ("stored",) if stores_clean(job) else ()
    scan = settings_key(SCAN_VERSION, job.video_key, cfg.scan, decode, mode[0], *scan_input)
    keys = {"scan": scan, "crops": settings_key(scan, CROPS_VERSION)}
    keys["clean"] = settings_key(CLEAN_VERSION, job.video_key, decode)
    search_settings = (cfg.search, cfg.prior.dtype, *mode)
    if job.references is not None:  # guided: the photos' latents change every search
        keys["guide"] = settings_key(GUIDE_VERSION, job.model_key, job.references.key(), *search_settings)
        search_settings = (*search_settings, keys["guide"])
    keys["search"] = settings_key(SEARCH_VERSION, scan, job.model_key, *search_settings)
    compose_settings = (cfg.upscale, cfg.io, cfg.compose, *mode)
    keys["compose"] = settings_key(COMPOSE_VERSION, job.video_key, decode, *compose_settings)
    return keys


def _add_references(
    job: Job, plan: Plan, add: Callable[[Step], None], art: Callable[[str, str], str], searched: bool
) -> tuple[str | None, tuple[str, ...]]:
    """The step inverting the reference photos (when the job has them and searches faces); returns
    its artifact and the dependency the search steps take on it."""
    from pipeline.run import search_steps

    if job.references is None or not searched:
        return None, ()
    out = art("guide", "references.npz")
    add(
        Step(
            "guide",
            "guide",
            search_steps.references_step,
            (job.config, job.references, out),
            (out,),
            search=True,
            label=f"inverting the reference photos of {len(job.references.names)} person(s)",
        )
    )
    return out, ("guide",)


def build_plan(job: Job, scanned: ScanResult | None = None) -> Plan:
    """The job's steps: the scan and the stitch, and, once `scanned` is given, everything else."""
    from pipeline.run import search_steps, steps
    from pipeline.run.workdir import WorkDir

    cfg = job.config
    wd = WorkDir(job.workdir)
    keys = _keys(job)
    segs = segments(job.frames, cfg)
    plan = Plan(job, {}, complete=True, segments=segs, keys=keys, scanned=scanned)
    plan.totals = {P.SEGMENTS_ENCODED: len(segs)}

    def art(stage: str, name: str) -> str:
        return str(wd.artifact(stage, keys[stage], name))

    def add(step: Step) -> None:
        assert step.key not in plan.steps and all(d in plan.steps for d in step.deps), step.key
        plan.steps[step.key] = step

    video = str(job.input)
    tracks: dict[int, Any] = {}  # tid -> Track, once scanned
    track_of: dict[int, tuple[str, str, str, str]] = {}  # tid -> (crops, npz, npy, producing step)
    crops_step_of: dict[int, str] = {}
    clean: list[CleanSegment] = []
    if stores_clean(job):
        for s, e in segs:
            name = f"segment-{s:08d}-{e:08d}"
            seg = CleanSegment(s, e, art("clean", f"{name}.npy"), art("clean", f"{name}.npz"))
            add(
                Step(
                    f"clean/{s:08d}",
                    "clean",
                    steps.clean_step,
                    (video, job.info, cfg, seg),
                    (seg.frames, seg.meta),
                    transient=True,
                    label=f"decoding and cleaning frames {s}-{e}",
                )
            )
            clean.append(seg)

    def reads(start: int, end: int, *more: int) -> tuple[list[CleanSegment], tuple[str, ...]]:
        """The clean segments holding frames [start, end) (and the frames `more`), and their steps."""
        mine = [
            c for c in clean if (c.start < end and c.end > start) or any(c.start <= i < c.end for i in more)
        ]
        return mine, tuple(f"clean/{c.start:08d}" for c in mine)

    if job.faces:
        plan.totals[P.FRAMES_SCANNED] = job.frames
        scan_keys = []
        for s, e in segs:
            key = f"scan/{s:08d}"
            first = 0 if inverse_telecine(cfg) else max(0, s - steps.scan_overlap(cfg))
            stored, deps = reads(first, min(job.frames, e + steps.CUT_WINDOW), 0)  # frame 0: gray vote
            out = art("scan", f"segment-{s:08d}-{e:08d}.npz")
            add(
                Step(
                    key,
                    "scan",
                    steps.scan_segment,
                    (video, job.info, cfg, s, e, job.frames, out, stored),
                    (out,),
                    deps=deps,
                    progress=((P.FRAMES_SCANNED, e - s),),
                    label=f"scan of frames {s}-{e}",
                )
            )
            scan_keys.append(key)
        # the stitched scan, with its people (and, under a choice of people, only the chosen tracks)
        chosen = f"-{job.people.key()}" if job.people is not None else ""
        chosen += f"-r{job.references.key()}" if job.references is not None else ""
        scan_path = art("scan", f"scan-people{chosen}.npz")
        segment_scans = [plan.steps[k].artifacts[0] for k in scan_keys]
        add(
            Step(
                "stitch",
                "stitch",
                steps.stitch_scan,
                (cfg, segment_scans, scan_path, job.mode, job.people, job.references),
                (scan_path,),
                deps=tuple(scan_keys),
                label="scan",
            )
        )
        if scanned is None:
            plan.complete = False
            return plan
        from pipeline.search.units import search_plan

        tracks = {t.track_id: t for t in scanned.tracks}
        lengths = {t.track_id: len(t.frames) for t in scanned.tracks}
        if job.model_key is None:
            lengths = {}  # faces without a model (anonymise): every face is masked, nothing is searched
        plan.totals[P.FACE_FRAMES_SEARCHED] = sum(lengths.values())
        divided = search_plan(lengths, cfg)
        if divided.chunked and not job.mode.chunkable:
            raise ConfigError(
                f"search.chunk_len={cfg.search.chunk_len}: {job.mode.name} searches every track whole "
                "(set search.chunk_len=0)"
            )
        guide_path, guide_deps = _add_references(job, plan, add, art, bool(lengths))
        if guide_path is not None and divided.chunked:
            log.warning(
                "--reference-photos: %d track(s) longer than search.chunk_len are searched in chunks, "
                "without the guidance (set search.chunk_len=0 to guide every track)",
                len(divided.chunked),
            )
        for i, unit in enumerate(divided.units):
            crops = [art("crops", f"track-{tid:06d}.npz") for tid in unit]
            stored, deps = reads(min(tracks[t].start for t in unit), max(tracks[t].end for t in unit))
            add(
                Step(
                    f"crops/{i:04d}",
                    "crops",
                    steps.crops_step,
                    (video, job.info, cfg, scan_path, list(unit), crops, job.mode, stored),
                    tuple(crops),
                    deps=("stitch", *deps),
                    label=f"crops of track(s) {', '.join(map(str, unit))}",
                )
            )
            outs = [
                (art("search", f"track-{t:06d}.npz"), art("search", f"track-{t:06d}.faces.npy")) for t in unit
            ]
            span = (min(tracks[t].start for t in unit), max(tracks[t].end for t in unit))
            add(
                Step(
                    f"search/{i:04d}",
                    "search",
                    search_steps.search_unit,
                    (cfg, job.mode, scan_path, crops, outs, guide_path),
                    tuple(p for pair in outs for p in pair),
                    deps=(f"crops/{i:04d}", *guide_deps),
                    search=True,
                    progress=((P.FACE_FRAMES_SEARCHED, sum(len(tracks[t].frames) for t in unit)),),
                    label=f"search of track(s) {', '.join(map(str, unit))} (frames {span[0]}-{span[1]})",
                )
            )
            for tid, c, (npz, npy) in zip(unit, crops, outs, strict=True):
                track_of[tid] = (c, npz, npy, f"search/{i:04d}")
                crops_step_of[tid] = f"crops/{i:04d}"
        for tid, chunks in divided.chunked.items():
            crop = art("crops", f"track-{tid:06d}.npz")
            stored, deps = reads(tracks[tid].start, tracks[tid].end)
            add(
                Step(
                    f"crops/t{tid:06d}",
                    "crops",
                    steps.crops_step,
                    (video, job.info, cfg, scan_path, [tid], [crop], job.mode, stored),
                    (crop,),
                    deps=("stitch", *deps),
                    label=f"crops of track {tid}",
                )
            )
            stem = f"chunked-{tid:06d}"
            anchors = art("search", f"{stem}-anchors.npz")
            add(
                Step(
                    f"anchors/{tid:06d}",
                    "anchors",
                    search_steps.search_anchors_step,
                    (cfg, crop, chunks, anchors),
                    (anchors,),
                    deps=(f"crops/t{tid:06d}",),
                    search=True,
                    progress=((P.FACE_FRAMES_SEARCHED, len(chunks)),),
                    label=f"anchors of track {tid} ({len(chunks)} chunks)",
                )
            )
            parts = []
            for chunk in chunks:
                part = art("search", f"{stem}-chunk-{chunk.index:04d}.npz")
                add(
                    Step(
                        f"chunk/{tid:06d}/{chunk.index:04d}",
                        "chunk",
                        search_steps.search_chunk_step,
                        (cfg, crop, anchors, chunks, chunk.index, part),
                        (part,),
                        deps=(f"anchors/{tid:06d}",),
                        search=True,
                        progress=((P.FACE_FRAMES_SEARCHED, chunk.end - chunk.start - 1),),
                        label=(
                            f"search of track {tid} chunk {chunk.index} "
                            f"(track frames {chunk.start}-{chunk.end})"
                        ),
                    )
                )
                parts.append(part)
            npz, npy = art("search", f"track-{tid:06d}.npz"), art("search", f"track-{tid:06d}.faces.npy")
            add(
                Step(
                    f"join_chunks/{tid:06d}",
                    "join_chunks",
                    search_steps.join_chunks,
                    (scan_path, crop, anchors, parts, (npz, npy)),
                    (npz, npy),
                    deps=tuple(f"chunk/{tid:06d}/{c.index:04d}" for c in chunks),
                    label=f"joining the chunks of track {tid}",
                )
            )
            track_of[tid] = (crop, npz, npy, f"join_chunks/{tid:06d}")
            crops_step_of[tid] = f"crops/t{tid:06d}"

    compose_keys: list[str] = []
    stitched = plan.stitch.artifacts[0] if plan.stitch is not None else None  # the scan (anonymise reads it)
    gray = bool(scanned.gray) if scanned is not None else False
    for s, e in segs:
        shown = sorted(tid for tid, t in tracks.items() if t.start < e and t.end > s)
        faces = (keys["search"], keys["crops"], shown, gray) if shown else None
        stem = f"part-{s:08d}-{settings_key(s, e, faces)[:12]}"
        part, records = art("compose", f"{stem}.mov"), art("compose", f"{stem}.records.json")
        searched = [t for t in shown if t in track_of]  # anonymise: tracks without a search are masked
        sources = [track_of[t][:3] for t in searched]
        deps = sorted({track_of[t][3] for t in searched} | {crops_step_of[t] for t in searched})
        if job.mode.hider is not None and shown:  # hidden faces are placed from the scan
            deps = sorted({*deps, "stitch"})
        key = f"compose/{s:08d}"
        stored, reading = reads(s, e)
        add(
            Step(
                key,
                "compose",
                steps.compose_step,
                (video, job.info, cfg, s, e, sources, gray, part, records, job.mode, stitched, stored),
                (part, records),
                deps=(*deps, *reading),
                progress=((P.SEGMENTS_ENCODED, 1),),
                label=f"segment {len(compose_keys)} (frames {s}-{e})",
            )
        )
        compose_keys.append(key)
    spread_deps: tuple[str, ...] = ()
    r = cfg.report
    if job.mode.spread and track_of and r.spread_k >= 2 and r.spread_faces > 0:
        # "where is this invented?" (pipeline.report.spread): a few faces searched again from
        # several starts, on a search worker; the report draws the stored result
        from pipeline.report.spread import sample_tracks, spread_step

        sample = sample_tracks({t: len(tracks[t].frames) for t in track_of}, r.spread_faces)
        keys["report"] = settings_key(
            "spread-v1", keys["crops"], job.model_key, cfg.search, cfg.prior.dtype, r.spread_k, sample
        )
        out = art("report", "spread.npz")
        spread_deps = tuple(sorted({crops_step_of[t] for t in sample}))
        add(
            Step(
                "spread",
                "spread",
                spread_step,
                (cfg, [track_of[t][0] for t in sample], out),
                (out,),
                deps=spread_deps,
                search=True,
                label=f"where-invented spread of track(s) {', '.join(map(str, sample))}",
            )
        )
        spread_deps = ("spread",)
    from pipeline.run.join import join

    add(
        Step(
            "join",
            "join",
            join,
            (plan_summary(plan),),
            (),
            deps=(*compose_keys, *spread_deps),
            driver=True,
            label=f"joining {len(compose_keys)} part(s) into {job.output}",
        )
    )
    return plan


@dataclass(frozen=True)
class PlanSummary:
    """What the join step reads: where every result of the plan is (small, picklable)."""

    job: Job
    parts: tuple[str, ...]
    records: tuple[str, ...]
    scan: str | None  # the stitched scan (None without faces)
    tracks: tuple[str, ...]  # every track's search result (npz)
    crops: tuple[str, ...] = ()  # every track's crops (npz; the report's pictures)
    spread: str | None = None  # the "where is this invented?" spread (npz), when computed


def plan_summary(plan: Plan) -> PlanSummary:
    stitch = plan.stitch
    return PlanSummary(
        plan.job,
        tuple(map(str, plan.parts())),
        tuple(map(str, plan.records())),
        stitch.artifacts[0] if stitch is not None else None,
        tuple(map(str, plan.track_results())),
        tuple(str(p) for s in plan.steps.values() if s.kind == "crops" for p in s.artifacts),
        plan.steps["spread"].artifacts[0] if "spread" in plan.steps else None,
    )
