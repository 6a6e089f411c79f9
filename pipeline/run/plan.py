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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.faces.choose import PeopleChoice, References
from pipeline.faces.scan import ScanResult
from pipeline.files import settings_key
from pipeline.io.presets import EncoderPreset
from pipeline.report.model import UNSCANNED_THUMBS, thumb_frames
from pipeline.report.spread import sample_tracks
from pipeline.run import progress as P
from pipeline.run import steps
from pipeline.run.frames import CleanSegment, film_cleaning, inverse_telecine
from pipeline.run.mode import Mode, RunReport
from pipeline.run.work import (
    KINDS,
    AnchorsWork,
    ChunkWork,
    CleanWork,
    ComposeWork,
    CropsWork,
    Driver,
    GuideWork,
    JoinChunksWork,
    JoinWork,
    ScanWork,
    Search,
    SearchWork,
    SpreadWork,
    StepKind,
    StitchWork,
    TrackFiles,
    Work,
)
from pipeline.run.workdir import WorkDir
from pipeline.search.units import search_plan
from pipeline.types import Track, VideoInfo

if TYPE_CHECKING:
    from pipeline.search.plan import Chunk

log = logging.getLogger(__name__)

# Part of a stage's key: bumped when what the stage computes changes (every key after it changes too).
SCAN_VERSION = "scan-v2"  # v2: per-segment detections and cuts, stitched
CLEAN_VERSION = "clean-v3"  # v3: grain measured with its colour and the picture motion (v2: measured)
CROPS_VERSION = "crops-v2"  # v2: crops per search unit, with each crop's size
SEARCH_VERSION = "search-v2"  # v2: face images beside the rows (read a frame range at a time)
GUIDE_VERSION = "guide-v2"  # v2: with the reference people's SFace embeddings (the identity term)
COMPOSE_VERSION = "compose-v5"  # v5: regrain moves with the picture, in colour (v4: regrain; v3: projection)


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
    mode: Mode[RunReport]  # what the steps call and which rules hold (pipeline.run.mode)
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
    """One unit of work: its `work` (a record of its arguments, `pipeline.run.work`) writes
    `artifacts`. Where it runs is the work's class: any CPU worker (`Task`: `work()`), where the
    generator is loaded (`Search`: `work(model)`) or the driver (`Driver`: `work(context=...)`)."""

    key: str  # unique in the plan, e.g. "scan/00000240", "search/0003", "compose/00000480"
    work: Work
    artifacts: tuple[str, ...]  # done when every one exists
    deps: tuple[str, ...] = ()  # keys of the steps whose artifacts it reads
    progress: tuple[tuple[str, int], ...] = ()  # counters advanced when it finishes (or was done)
    label: str = ""  # for logs and errors

    @property
    def kind(self) -> StepKind:
        return self.work.kind

    @property
    def search(self) -> bool:
        """Runs where the generator is loaded (Ray: a search actor)."""
        return isinstance(self.work, Search)

    @property
    def driver(self) -> bool:
        """Runs in the driver process (the join: mux and report)."""
        return isinstance(self.work, Driver)

    @property
    def transient(self) -> bool:
        """Its artifacts are removed once every step that reads them has finished."""
        return KINDS[self.kind].transient

    @property
    def stage(self) -> str:
        """The report's timing stage its seconds count in."""
        return KINDS[self.kind].stage

    def done(self) -> bool:
        """Every artifact exists and verifies (`WorkDir.has`: a damaged one is removed, and redone)."""
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
        return [Path(s.artifacts[0]) for s in self.steps.values() if s.kind is StepKind.COMPOSE]

    def records(self) -> list[Path]:
        """The per-segment face records (JSON lists of `compose_frame` records), in order."""
        return [Path(s.artifacts[1]) for s in self.steps.values() if s.kind is StepKind.COMPOSE]

    def track_results(self) -> list[Path]:
        """Every track's stored search result (npz), in track order."""
        out = []
        for s in self.steps.values():
            if s.kind is StepKind.SEARCH:
                out += [Path(p) for p in s.artifacts[0::2]]
            elif s.kind is StepKind.JOIN_CHUNKS:
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
    # the matte only reads the fill masks clean steps always keep: it keys compose, not decoding
    decode = (cfg.io.deinterlace, cfg.io.inverse_telecine, replace(cfg.film, matte=False))
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
    compose_settings = (cfg.upscale, cfg.io, cfg.compose, *mode, *(("matte",) if cfg.film.matte else ()))
    keys["compose"] = settings_key(COMPOSE_VERSION, job.video_key, decode, *compose_settings)
    return keys


@dataclass(frozen=True)
class _Searched:
    """A track whose search result the plan makes: its files, and the steps that write them."""

    files: TrackFiles
    step: str  # the search unit's, or the chunked track's join_chunks
    crops_step: str


@dataclass
class _Builder:
    """The state `build_plan` fills in, stage by stage (one method per part of the plan)."""

    job: Job
    plan: Plan
    wd: WorkDir
    clean: list[CleanSegment] = field(default_factory=list)
    tracks: dict[int, Track] = field(default_factory=dict)  # tid -> Track, once scanned
    searched: dict[int, _Searched] = field(default_factory=dict)
    guide: str | None = None  # the reference photos' latents (npz), when the search is guided

    @property
    def video(self) -> str:
        return str(self.job.input)

    def art(self, stage: str, name: str) -> str:
        return str(self.wd.artifact(stage, self.plan.keys[stage], name))

    def add(self, step: Step) -> None:
        plan = self.plan
        assert step.key not in plan.steps and all(d in plan.steps for d in step.deps), step.key
        plan.steps[step.key] = step

    def reads(self, start: int, end: int, *more: int) -> tuple[list[CleanSegment], tuple[str, ...]]:
        """The clean segments holding frames [start, end) (and the frames `more`), and their steps."""
        mine = [
            c
            for c in self.clean
            if (c.start < end and c.end > start) or any(c.start <= i < c.end for i in more)
        ]
        return mine, tuple(f"{StepKind.CLEAN}/{c.start:08d}" for c in mine)

    def span(self, unit: Sequence[int]) -> tuple[int, int]:
        return min(self.tracks[t].start for t in unit), max(self.tracks[t].end for t in unit)

    def add_clean(self) -> None:
        job = self.job
        for s, e in self.plan.segments:
            name = f"segment-{s:08d}-{e:08d}"
            seg = CleanSegment(s, e, self.art("clean", f"{name}.npy"), self.art("clean", f"{name}.npz"))
            work = CleanWork(self.video, job.info, job.config, seg)
            label = f"decoding and cleaning frames {s}-{e}"
            self.add(Step(f"clean/{s:08d}", work, (seg.frames, seg.meta), label=label))
            self.clean.append(seg)

    def add_scan(self) -> str:
        """The scan steps and the stitch; returns the stitched scan's path."""
        job, cfg = self.job, self.job.config
        self.plan.totals[P.FRAMES_SCANNED] = job.frames
        scan_keys, outs = [], []
        for s, e in self.plan.segments:
            first = 0 if inverse_telecine(cfg) else max(0, s - steps.scan_overlap(cfg))
            stored, deps = self.reads(first, min(job.frames, e + steps.CUT_WINDOW), 0)  # 0: gray vote
            out = self.art("scan", f"segment-{s:08d}-{e:08d}.npz")
            work = ScanWork(self.video, job.info, cfg, s, e, job.frames, out, stored)
            progress = ((P.FRAMES_SCANNED, e - s),)
            self.add(Step(f"scan/{s:08d}", work, (out,), deps, progress, f"scan of frames {s}-{e}"))
            scan_keys.append(f"scan/{s:08d}")
            outs.append(out)
        # the stitched scan, with its people (and, under a choice of people, only the chosen tracks)
        chosen = f"-{job.people.key()}" if job.people is not None else ""
        chosen += f"-r{job.references.key()}" if job.references is not None else ""
        scan = self.art("scan", f"scan-people{chosen}.npz")
        stitch = StitchWork(cfg, outs, scan, job.mode, job.people, job.references)
        self.add(Step("stitch", stitch, (scan,), tuple(scan_keys), label="scan"))
        return scan

    def add_search(self, scanned: ScanResult, scan: str, persons: Mapping[int, int] | None) -> None:
        """The crops and search steps of every track (whole, in units, or in chunks)."""
        job, cfg = self.job, self.job.config
        self.tracks = {t.track_id: t for t in scanned.tracks}
        lengths = {t.track_id: len(t.frames) for t in scanned.tracks}
        if job.model_key is None:
            lengths = {}  # faces without a model (anonymise): every face is masked, nothing is searched
        self.plan.totals[P.FACE_FRAMES_SEARCHED] = sum(lengths.values())
        divided = search_plan(lengths, cfg, dict(persons or {}) if job.mode.units_by_person else None)
        if divided.chunked and not job.mode.chunkable:
            raise ConfigError(
                f"search.chunk_len={cfg.search.chunk_len}: {job.mode.name} searches every track whole "
                "(set search.chunk_len=0)"
            )
        if job.references is not None and lengths:
            self.add_guide(job.references)  # whole tracks and chunked ones alike are guided
        for i, unit in enumerate(divided.units):
            self.add_unit(i, unit, scan)
        for tid, chunks in divided.chunked.items():
            self.add_chunked(tid, chunks, scan)

    def add_guide(self, references: References) -> None:
        """The step inverting the reference photos into each person's latents (a search step)."""
        self.guide = self.art("guide", "references.npz")
        work = GuideWork(self.job.config, references, self.guide)
        label = f"inverting the reference photos of {len(references.names)} person(s)"
        self.add(Step("guide", work, (self.guide,), label=label))

    def add_unit(self, i: int, unit: Sequence[int], scan: str) -> None:
        """Search unit `i`: its crops step and its search step (whole tracks in lockstep batches)."""
        job, cfg = self.job, self.job.config
        crops = [self.art("crops", f"track-{tid:06d}.npz") for tid in unit]
        stored, deps = self.reads(*self.span(unit))
        named = ", ".join(map(str, unit))
        work = CropsWork(self.video, job.info, cfg, scan, list(unit), crops, job.mode, stored)
        self.add(
            Step(f"crops/{i:04d}", work, tuple(crops), ("stitch", *deps), label=f"crops of track(s) {named}")
        )
        outs = [
            (self.art("search", f"track-{t:06d}.npz"), self.art("search", f"track-{t:06d}.faces.npy"))
            for t in unit
        ]
        start, end = self.span(unit)
        progress = ((P.FACE_FRAMES_SEARCHED, sum(len(self.tracks[t].frames) for t in unit)),)
        label = f"search of track(s) {named} (frames {start}-{end})"
        search = SearchWork(cfg, job.mode, scan, crops, outs, self.guide)
        artifacts = tuple(p for pair in outs for p in pair)
        deps = (f"crops/{i:04d}", *(("guide",) if self.guide is not None else ()))
        self.add(Step(f"search/{i:04d}", search, artifacts, deps, progress, label))
        for tid, c, (npz, npy) in zip(unit, crops, outs, strict=True):
            self.searched[tid] = _Searched(TrackFiles(c, npz, npy), f"search/{i:04d}", f"crops/{i:04d}")

    def add_chunked(self, tid: int, chunks: Sequence[Chunk], scan: str) -> None:
        """A long track in chunks: its crops, its anchor chain, each chunk, and the chunks joined."""
        job, cfg = self.job, self.job.config
        crop = self.art("crops", f"track-{tid:06d}.npz")
        stored, deps = self.reads(*self.span([tid]))
        work = CropsWork(self.video, job.info, cfg, scan, [tid], [crop], job.mode, stored)
        self.add(Step(f"crops/t{tid:06d}", work, (crop,), ("stitch", *deps), label=f"crops of track {tid}"))
        stem = f"chunked-{tid:06d}"
        anchors = self.art("search", f"{stem}-anchors.npz")
        progress = ((P.FACE_FRAMES_SEARCHED, len(chunks)),)
        label = f"anchors of track {tid} ({len(chunks)} chunks)"
        guided = {"scan": scan, "guide": self.guide} if self.guide is not None else {}
        work_a = AnchorsWork(cfg, crop, chunks, anchors, **guided)
        deps_a = (f"crops/t{tid:06d}", *(("guide",) if self.guide is not None else ()))
        self.add(Step(f"anchors/{tid:06d}", work_a, (anchors,), deps_a, progress, label))
        parts = []
        for chunk in chunks:
            part = self.art("search", f"{stem}-chunk-{chunk.index:04d}.npz")
            progress = ((P.FACE_FRAMES_SEARCHED, chunk.end - chunk.start - 1),)
            label = f"search of track {tid} chunk {chunk.index} (track frames {chunk.start}-{chunk.end})"
            work_c = ChunkWork(work_a, chunk.index, part)

            key = f"chunk/{tid:06d}/{chunk.index:04d}"
            self.add(Step(key, work_c, (part,), (f"anchors/{tid:06d}",), progress, label))
            parts.append(part)
        npz, npy = (
            self.art("search", f"track-{tid:06d}.npz"),
            self.art("search", f"track-{tid:06d}.faces.npy"),
        )
        work_j = JoinChunksWork(scan, crop, anchors, parts, (npz, npy))
        deps = tuple(f"chunk/{tid:06d}/{c.index:04d}" for c in chunks)
        label = f"joining the chunks of track {tid}"
        self.add(Step(f"join_chunks/{tid:06d}", work_j, (npz, npy), deps, label=label))
        self.searched[tid] = _Searched(
            TrackFiles(crop, npz, npy), f"join_chunks/{tid:06d}", f"crops/t{tid:06d}"
        )

    def add_compose(self, scanned: ScanResult | None) -> list[str]:
        """A compose step per segment; returns their keys."""
        job, cfg, keys = self.job, self.job.config, self.plan.keys
        compose_keys: list[str] = []
        stitch = self.plan.stitch
        stitched = stitch.artifacts[0] if stitch is not None else None  # the scan (anonymise reads it)
        gray = bool(scanned.gray) if scanned is not None else False
        pictured = self.report_pictures(scanned)
        for s, e in self.plan.segments:
            shown = sorted(tid for tid, t in self.tracks.items() if t.start < e and t.end > s)
            faces = (keys["search"], keys["crops"], shown, gray) if shown else None
            stem = f"part-{s:08d}-{settings_key(s, e, faces)[:12]}"
            part, records = self.art("compose", f"{stem}.mov"), self.art("compose", f"{stem}.records.json")
            searched = [self.searched[t] for t in shown if t in self.searched]  # anonymise: others masked
            deps = sorted({t.step for t in searched} | {t.crops_step for t in searched})
            if job.mode.hider is not None and shown:  # hidden faces are placed from the scan
                deps = sorted({*deps, "stitch"})
            stored, reading = self.reads(s, e)
            sources = [t.files for t in searched]
            work = ComposeWork(
                self.video, job.info, cfg, s, e, sources, gray, part, records, job.mode, stitched, stored
            )
            work = replace(work, keep=[f for f in pictured if s <= f < e])  # the report's pictures
            progress = ((P.SEGMENTS_ENCODED, 1),)
            label = f"segment {len(compose_keys)} (frames {s}-{e})"
            self.add(Step(f"compose/{s:08d}", work, (part, records), (*deps, *reading), progress, label))
            compose_keys.append(f"compose/{s:08d}")
        return compose_keys

    def report_pictures(self, scanned: ScanResult | None) -> list[int]:
        """The output frames the report pictures that compose can keep for it: the thumbnails of a
        run without a scan (the page's "shots" are then the whole output) whose frames pass to the
        encoder as decoded (`steps.passes_through`: already in the output's pixel format, so a
        picture of one is the output's but for the encoder's quantisation, none when lossless), so
        the report need not decode the output again. Other runs' frames would show detail the
        output's chroma subsampling takes away: the report decodes those."""
        cfg = self.job.config
        if scanned is not None or not cfg.report.html or not steps.passes_through(self.job.info, cfg):
            return []
        return thumb_frames([(0, self.job.frames)], UNSCANNED_THUMBS).get(0, [])

    def add_spread(self) -> tuple[str, ...]:
        """ "Where is this invented?" (pipeline.report.spread): a few faces searched again from several
        starts, on a search worker; the report draws the stored result. Returns the join's deps."""
        job, cfg, r = self.job, self.job.config, self.job.config.report
        if not (job.mode.spread and self.searched and r.spread_k >= 2 and r.spread_faces > 0):
            return ()
        sample = sample_tracks({t: len(self.tracks[t].frames) for t in self.searched}, r.spread_faces)
        self.plan.keys["report"] = settings_key(
            "spread-v1",
            self.plan.keys["crops"],
            job.model_key,
            cfg.search,
            cfg.prior.dtype,
            r.spread_k,
            sample,
        )
        out = self.art("report", "spread.npz")
        deps = tuple(sorted({self.searched[t].crops_step for t in sample}))
        work = SpreadWork(cfg, [self.searched[t].files.crops for t in sample], out)
        label = f"where-invented spread of track(s) {', '.join(map(str, sample))}"
        self.add(Step("spread", work, (out,), deps, label=label))
        return ("spread",)

    def add_join(self, compose_keys: Sequence[str], spread: Sequence[str]) -> None:
        label = f"joining {len(compose_keys)} part(s) into {self.job.output}"
        self.add(Step("join", JoinWork(plan_summary(self.plan)), (), (*compose_keys, *spread), label=label))


def build_plan(job: Job, scanned: ScanResult | None = None, persons: Mapping[int, int] | None = None) -> Plan:
    """The job's steps: the scan and the stitch, and, once `scanned` is given, everything else.
    `persons` (track id -> person id, the stitched scan's people) groups the search units of a mode
    that searches a person's tracks together (`Mode.units_by_person`)."""
    segs = segments(job.frames, job.config)
    plan = Plan(job, {}, complete=True, segments=segs, keys=_keys(job), scanned=scanned)
    plan.totals = {P.SEGMENTS_ENCODED: len(segs)}
    b = _Builder(job, plan, WorkDir(job.workdir))
    if stores_clean(job):
        b.add_clean()
    if job.faces:
        scan = b.add_scan()
        if scanned is None:
            plan.complete = False
            return plan
        b.add_search(scanned, scan, persons)
    compose_keys = b.add_compose(scanned)
    b.add_join(compose_keys, b.add_spread())
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
        tuple(str(p) for s in plan.steps.values() if s.kind is StepKind.CROPS for p in s.artifacts),
        plan.steps["spread"].artifacts[0] if "spread" in plan.steps else None,
    )
