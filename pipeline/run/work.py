"""The work of each step kind of the plan: a small frozen record of its arguments, by name, that calls
its step function.

    CPU steps (`Task`):        CleanWork, ScanWork, StitchWork, CropsWork, JoinChunksWork, ComposeWork
    search steps (`Search`):   GuideWork, SearchWork, AnchorsWork, ChunkWork, SpreadWork  -> work(model)
    the driver step (`Driver`): JoinWork                                        -> work(context=...)

A record is what an executor ships (a Ray task or actor call pickles it, its class by reference) and
what the schedule runs: `work()`, `work(model)` with the worker's loaded generator, or
`work(context=...)` in the driver. Which of the three it is says where it runs. The step functions
are looked up in their modules when called (`steps.scan_segment`, not a copy), so a test that
replaces one sees every later call use it.

To add a step kind: a `StepKind` and its row in `KINDS`, a record here, and the part of
`pipeline.run.plan.build_plan` that adds its steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from pipeline.config import Config
from pipeline.report.spread import spread_step
from pipeline.run import join, search_steps, steps
from pipeline.run.frames import CleanSegment, film_on_torch
from pipeline.run.mode import DriverContext, Mode, RunReport
from pipeline.types import VideoInfo

if TYPE_CHECKING:
    from pipeline.faces.choose import PeopleChoice, References
    from pipeline.run.mode import RunReport
    from pipeline.run.plan import PlanSummary
    from pipeline.run.search_steps import SearchModel
    from pipeline.search.plan import Chunk


class StepKind(StrEnum):
    """The kinds of step of a plan (a step's key starts with its kind, the stitch's and join's is it)."""

    CLEAN = "clean"  # a segment decoded and film-cleaned once, full size (transient)
    SCAN = "scan"  # a segment's detections and cuts
    STITCH = "stitch"  # every segment's scan -> the tracks and people of the video
    CROPS = "crops"  # the aligned crops of a search unit's tracks, or of one chunked track
    GUIDE = "guide"  # the reference photos inverted into each person's latents (pipeline.search.guide)
    SEARCH = "search"  # a search unit: whole tracks in lockstep batches
    ANCHORS = "anchors"  # a chunked track's anchor chain
    CHUNK = "chunk"  # one chunk of a chunked track
    JOIN_CHUNKS = "join_chunks"  # a chunked track's chunks joined into its result
    COMPOSE = "compose"  # a segment upscaled, its faces pasted (or hidden), encoded
    SPREAD = "spread"  # the report's "where is this invented?" spread
    JOIN = "join"  # the parts muxed into the output, the mode's report


def _never(cfg: Config) -> bool:
    return False


def _always(cfg: Config) -> bool:
    return True


def _film_on_cuda(cfg: Config) -> bool:
    """Film cleaning is on and its torch stages run on CUDA (`film.device` "cuda" or "cuda:N"; "cpu"
    runs the same torch code on the worker's CPU, which needs no GPU)."""
    return film_on_torch(cfg) and cfg.film.device.startswith("cuda")


def _compose_on_gpu(cfg: Config) -> bool:
    """Compose runs GPU work: a learned upscaler, or a CUDA device named outright by `film.device`
    or `run.device` (`steps.compose_device`: the plain upscale, paste and projection then run there)."""
    return bool(cfg.upscale.model) or any(d.startswith("cuda") for d in (cfg.film.device, cfg.run.device))


@dataclass(frozen=True)
class GpuUse:
    """When a step of a kind asks for a GPU share, on a cluster that has GPUs (`when(cfg)`), and how
    much: the `RunConfig` field `share` names (fractions share a GPU)."""

    when: Callable[[Config], bool] = _never
    share: str = "num_gpus_per_upscale"

    def of(self, cfg: Config) -> float:
        return float(getattr(cfg.run, self.share)) if self.when(cfg) else 0.0


CPU_ONLY = GpuUse()  # decode, detection, encode, stitch, mux: no GPU work
SEARCH_GPU = GpuUse(_always, "num_gpus_per_search")  # the generator's search, on its actors
FILM_ON_CUDA = GpuUse(_film_on_cuda)  # film cleaning written in torch, on a CUDA `film.device`
COMPOSE_GPU = GpuUse(_compose_on_gpu)  # a learned upscaler, or a CUDA device named for compose


@dataclass(frozen=True)
class KindRule:
    stage: str  # the report's timing stage its seconds count in (`Schedule.seconds`)
    transient: bool = False  # its artifacts are removed once every step that reads them has finished
    gpu: GpuUse = CPU_ONLY  # when it asks for a GPU share (the cluster having GPUs), and how much


# The table of step kinds: what the schedule needs to know of each (where a step runs is its work's
# class: `Task`, `Search` or `Driver`; whether it holds a GPU share there is its `gpu` rule).
KINDS: dict[StepKind, KindRule] = {
    StepKind.CLEAN: KindRule("clean", transient=True, gpu=FILM_ON_CUDA),
    StepKind.SCAN: KindRule("scan"),
    StepKind.STITCH: KindRule("scan"),
    StepKind.CROPS: KindRule("crops"),
    StepKind.GUIDE: KindRule("search", gpu=SEARCH_GPU),
    StepKind.SEARCH: KindRule("search", gpu=SEARCH_GPU),
    StepKind.ANCHORS: KindRule("search", gpu=SEARCH_GPU),
    StepKind.CHUNK: KindRule("search", gpu=SEARCH_GPU),
    StepKind.JOIN_CHUNKS: KindRule("search"),
    StepKind.COMPOSE: KindRule("compose", gpu=COMPOSE_GPU),
    StepKind.SPREAD: KindRule("spread", gpu=SEARCH_GPU),
    StepKind.JOIN: KindRule("join"),
}


def gpu_share(kind: StepKind, cfg: Config) -> float:
    """The GPU share a step of `kind` asks for where the cluster has GPUs (0: it takes CPUs only)."""
    return KINDS[kind].gpu.of(cfg)


@dataclass(frozen=True)
class TrackFiles:
    """Where a searched track's results are: its crops (npz, with each crop's affine and size), its
    search result rows (npz) and its face images (npy)."""

    crops: str
    result: str
    faces: str


class Task:
    """A step that runs on any CPU worker: `work()`."""

    kind: ClassVar[StepKind]

    def __call__(self) -> dict[str, int]:
        raise NotImplementedError


class Search:
    """A step that runs where the generator is loaded: `work(model)`."""

    kind: ClassVar[StepKind]

    def __call__(self, model: SearchModel) -> dict[str, int]:
        raise NotImplementedError


class Driver:
    """A step that runs in the driver process: `work(context=...)` (the executor's run summary)."""

    kind: ClassVar[StepKind]

    def __call__(self, *, context: DriverContext) -> RunReport:
        raise NotImplementedError


Work = Task | Search | Driver


@dataclass(frozen=True)
class CleanWork(Task):
    kind: ClassVar[StepKind] = StepKind.CLEAN

    video: str
    info: VideoInfo
    cfg: Config
    segment: CleanSegment

    def __call__(self) -> dict[str, int]:
        return steps.clean_step(self.video, self.info, self.cfg, self.segment)


@dataclass(frozen=True)
class ScanWork(Task):
    kind: ClassVar[StepKind] = StepKind.SCAN

    video: str
    info: VideoInfo
    cfg: Config
    start: int
    end: int
    total: int  # frames of the video
    out: str
    stored: Sequence[CleanSegment] = ()

    def __call__(self) -> dict[str, int]:
        return steps.scan_segment(
            self.video, self.info, self.cfg, self.start, self.end, self.total, self.out, self.stored
        )


@dataclass(frozen=True)
class StitchWork(Task):
    kind: ClassVar[StepKind] = StepKind.STITCH

    cfg: Config
    segments: Sequence[str]  # every scan segment's npz, in order
    out: str
    mode: Mode[RunReport]
    people: PeopleChoice | None = None
    references: References | None = None

    def __call__(self) -> dict[str, int]:
        return steps.stitch_scan(self.cfg, self.segments, self.out, self.mode, self.people, self.references)


@dataclass(frozen=True)
class CropsWork(Task):
    kind: ClassVar[StepKind] = StepKind.CROPS

    video: str
    info: VideoInfo
    cfg: Config
    scan: str  # the stitched scan (npz)
    track_ids: Sequence[int]
    outs: Sequence[str]  # one crops npz per track
    mode: Mode[RunReport]
    stored: Sequence[CleanSegment] = ()

    def __call__(self) -> dict[str, int]:
        return steps.crops_step(
            self.video,
            self.info,
            self.cfg,
            self.scan,
            self.track_ids,
            self.outs,
            self.mode,
            self.stored,
        )


@dataclass(frozen=True)
class SearchWork(Search):
    kind: ClassVar[StepKind] = StepKind.SEARCH

    cfg: Config
    mode: Mode[RunReport]
    scan: str
    crops: Sequence[str]  # one crops npz per track of the unit
    outs: Sequence[tuple[str, str]]  # per track: (result npz, faces npy)
    guide: str | None = None  # the guide step's latents (reference photos), when guided

    def __call__(self, model: SearchModel) -> dict[str, int]:
        return search_steps.search_unit(
            model, self.cfg, self.mode, self.scan, self.crops, self.outs, self.guide
        )


@dataclass(frozen=True)
class GuideWork(Search):
    kind: ClassVar[StepKind] = StepKind.GUIDE

    cfg: Config
    references: References
    out: str

    def __call__(self, model: SearchModel) -> dict[str, int]:
        return search_steps.references_step(model, self.cfg, self.references, self.out)


@dataclass(frozen=True)
class AnchorsWork(Search):
    kind: ClassVar[StepKind] = StepKind.ANCHORS

    cfg: Config
    crops: str
    chunks: Sequence[Chunk]
    out: str
    scan: str | None = None  # the stitched scan (whose person each track is), when guided
    guide: str | None = None  # the guide step's latents (reference photos), when guided

    def __call__(self, model: SearchModel) -> dict[str, int]:
        return search_steps.search_anchors_step(
            model, self.cfg, self.crops, self.chunks, self.out, self.scan, self.guide
        )


@dataclass(frozen=True)
class ChunkWork(Search):
    kind: ClassVar[StepKind] = StepKind.CHUNK

    chain: AnchorsWork  # the track's anchor chain: its crops, chunks and guide; `chain.out` its states
    index: int  # which chunk
    out: str

    def __call__(self, model: SearchModel) -> dict[str, int]:
        c = self.chain
        return search_steps.search_chunk_step(
            model, c.cfg, c.crops, c.out, c.chunks, self.index, self.out, c.scan, c.guide
        )


@dataclass(frozen=True)
class JoinChunksWork(Task):
    kind: ClassVar[StepKind] = StepKind.JOIN_CHUNKS

    scan: str
    crops: str
    anchors: str
    parts: Sequence[str]  # every chunk's npz, in order
    out: tuple[str, str]  # (result npz, faces npy)

    def __call__(self) -> dict[str, int]:
        return search_steps.join_chunks(self.scan, self.crops, self.anchors, self.parts, self.out)


@dataclass(frozen=True)
class ComposeWork(Task):
    kind: ClassVar[StepKind] = StepKind.COMPOSE

    video: str
    info: VideoInfo
    cfg: Config
    start: int
    end: int
    sources: Sequence[TrackFiles]  # the searched tracks shown in [start, end)
    gray: bool
    part: str  # the encoded part
    records: str  # its per-face records (JSON)
    mode: Mode[RunReport]
    scan: str | None = None  # the stitched scan (a mode that hides faces places them from it)
    stored: Sequence[CleanSegment] = ()
    keep: Sequence[int] = ()  # frames whose output pictures the report shows (kept beside the records)

    def __call__(self) -> dict[str, int]:
        return steps.compose_step(
            self.video,
            self.info,
            self.cfg,
            self.start,
            self.end,
            [(s.crops, s.result, s.faces) for s in self.sources],
            self.gray,
            self.part,
            self.records,
            self.mode,
            self.scan,
            self.stored,
            self.keep,
        )


@dataclass(frozen=True)
class SpreadWork(Search):
    kind: ClassVar[StepKind] = StepKind.SPREAD

    cfg: Config
    crops: Sequence[str]  # the sampled tracks' crops
    out: str

    def __call__(self, model: SearchModel) -> dict[str, int]:
        return spread_step(model, self.cfg, self.crops, self.out)


@dataclass(frozen=True)
class JoinWork(Driver):
    kind: ClassVar[StepKind] = StepKind.JOIN

    summary: PlanSummary

    def __call__(self, *, context: DriverContext) -> RunReport:
        return join.join(self.summary, context=context)
