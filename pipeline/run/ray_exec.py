"""The Ray executor: the in-process pipeline's stage functions as Ray tasks and actors.

    probe (driver) -> scan (task) -> crops (task per track) -> search (actor call per unit)
                   -> compose+encode (task per segment) -> mux (driver)

Everything runs the functions of `pipeline.run.stages` with the same inputs as `pipeline.run.local`,
so the output is the same frame for frame. What differs is the schedule:
- Stages overlap: a search unit starts as soon as its tracks' crops exist while other tracks are
  cropped, and a segment is composed and encoded as soon as every track it shows has been searched
  (segments without faces start at once).
- Big things never cross the object store: each task decodes its own frame range from the source
  path, and crops and restored faces go through the work directory (which must be on storage all
  nodes see); tasks exchange paths and small summaries (`pipeline.run.ray_tasks`).
- Search actors load the generator once and take whole units (up to `search.batch_size` whole tracks
  advanced in lockstep batches, so warm starts stay in order); they ask for `run.num_gpus_per_search`
  GPUs where the cluster has GPUs, else a CPU, and are released as soon as the search is done.
- A track longer than `search.chunk_len` (when set) is split (`stages.search_plan`): its anchor chain
  is one unit, then its chunks are units of their own that run on any actors at once (each reads the
  track's crops and the stored anchor states); a task joins them into the track's result.
- Work in flight is bounded (`WorkQueue`), faults are retried (task retries, actor restarts), and
  every result is stored under the same keys the in-process executor uses: a rerun after a crash or
  Ctrl-C redoes only the units that were not finished, and says which it skipped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import INVENTED_DETAIL_NOTICE
from pipeline.config import Config, dump_config
from pipeline.run import progress as P
from pipeline.run.preflight import preflight
from pipeline.run.ray_tasks import (
    compose_task,
    crops_task,
    describe_model,
    finish_chunked_track,
    load_search_model,
    scan_task,
    search_anchors_unit,
    search_chunk_unit,
    search_unit,
    stored_results,
)
from pipeline.run.report import RestoreReport, write_report
from pipeline.run.stages import chunk_artifacts, mux_parts, search_plan, segments
from pipeline.run.workdir import WorkDir, default_workdir

log = logging.getLogger(__name__)

CROPS_VERSION = "crops-v1"  # the in-process executor's crops key tag


@dataclass
class _Plan:
    """Keys and paths of one restore, the same as the in-process executor's where they are shared."""

    wd: WorkDir
    video: str
    video_key: str
    scan_key: str
    crops_key: str
    search_key: str | None
    segments: list[tuple[int, int]]
    skipped: dict[str, int] = field(default_factory=lambda: {"search": 0, "segments": 0})
    ran: dict[str, int] = field(default_factory=lambda: {"search": 0, "segments": 0})

    def scan_path(self) -> Path:
        return self.wd.artifact("scan", self.scan_key, "scan.npz")

    def crops_path(self, track_id: int) -> Path:
        return self.wd.artifact("crops", self.crops_key, f"track-{track_id:06d}.npz")

    def search_path(self, track_id: int) -> Path:
        assert self.search_key is not None
        return self.wd.artifact("search", self.search_key, f"track-{track_id:06d}.npz")


def model_key(model: str) -> str:
    """Content key of the generator's weights (as the in-process executor computes it)."""
    path = Path(model).expanduser()
    if not path.is_file():
        try:
            from pipeline.prior.zoo import resolve_model
        except ImportError:
            from pipeline.errors import ModelNotAvailableError

            raise ModelNotAvailableError(f"model {model!r}: no such file") from None
        path = Path(resolve_model(model))
    return WorkDir.video_key(path)


def restore(
    input: str | Path, output: str | Path, config: Config, *, overwrite: bool = False
) -> RestoreReport:
    """Restore `input` into `output` with Ray (embedded, or the cluster of `config.run.address`).

    Returns the in-process executor's `RestoreReport` and writes the same report file
    (`pipeline.run.report`, with "executor": "ray"); the output equals `local.restore`'s frame for
    frame. Raises JobError naming a unit that kept failing.
    """
    from pipeline.io.decode import frame_index

    input, output = Path(input), Path(output)
    info, preset = preflight(input, output, config, overwrite=overwrite)
    frames = len(frame_index(input)[1])
    wd = WorkDir(default_workdir(output, config.run.workdir))
    try:
        return _restore(input, output, config, overwrite, info, preset, frames, wd)
    finally:
        _remove_empty_dirs(wd.root)


def _remove_empty_dirs(root: Path) -> None:
    """A failed or finished run leaves no empty directories behind (artifacts stay)."""
    if not root.is_dir():
        return
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            directory.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def _restore(
    input: Path,
    output: Path,
    config: Config,
    overwrite: bool,
    info: Any,
    preset: Any,
    frames: int,
    wd: WorkDir,
) -> RestoreReport:
    from pipeline.run.ray_runtime import ray_session

    wd.clean_temporaries()
    vkey = WorkDir.video_key(input)
    decode = (config.io.deinterlace, config.io.inverse_telecine)
    scan_key = WorkDir.settings_key(vkey, config.scan, decode)
    model = config.prior.model
    plan = _Plan(
        wd=wd,
        video=str(input.resolve()),
        video_key=vkey,
        scan_key=scan_key,
        crops_key=WorkDir.settings_key(scan_key, CROPS_VERSION),
        search_key=(
            WorkDir.settings_key(scan_key, model_key(model), config.search, config.prior.dtype)
            if model is not None
            else None
        ),
        segments=segments(frames, config),
    )
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with ray_session(config.run) as cluster:
        seconds["ray_start"] = time.perf_counter() - t0  # ~0 when Ray was already up (batch, job)
        run = _Run(plan, config, info, cluster)
        try:
            records = run.execute()
        finally:
            run.close()
    seconds["pipeline"] = time.perf_counter() - t0
    t = time.perf_counter()
    mux_parts(run.parts, input, output, info, preset, config, overwrite=overwrite)
    seconds["mux"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    _remove_parts(wd, run.parts)
    dump_config(config, output.with_name(output.name + ".config.yaml"))
    report = RestoreReport(
        output=output,
        frames=frames,
        tracks=run.tracks,
        face_frames=run.face_frames,
        restored=len(records),
        met_bound=sum(r["met_bound"] for r in records),
        random_generator=run.random_generator,
        model=run.model_description or model,
        seconds=seconds,
    )
    if model is not None and run.scanned is not None:
        report.report_path = write_report(report, run.scanned, records, run.identity, config, executor="ray")
    log.info(
        "wrote %s: %d frames, %d tracks, %d face-frames restored; search units run %d, skipped %d "
        "(done earlier); segments encoded %d, skipped %d. %s",
        output,
        frames,
        run.tracks,
        len(records),
        plan.ran["search"],
        plan.skipped["search"],
        plan.ran["segments"],
        plan.skipped["segments"],
        INVENTED_DETAIL_NOTICE if records else "",
    )
    return report


class _Run:
    """One restore's schedule: callbacks on a WorkQueue that queue the next stages as results arrive."""

    def __init__(self, plan: _Plan, config: Config, info: Any, cluster: Any) -> None:
        import ray

        from pipeline.run.actors import WorkQueue

        self.ray = ray
        self.plan = plan
        self.config = config
        self.info = info
        self.cluster = cluster
        self.run_cfg = config.run
        retries = self.run_cfg.max_retries
        self.task_options: dict[str, Any] = {"num_cpus": 1, "max_retries": retries, "retry_exceptions": False}
        cpus = max(1, int(cluster.cpus))
        self.queue = WorkQueue(max_in_flight=self.run_cfg.max_in_flight or 2 * cpus)
        self.progress_actor = P.make_progress_actor()
        self.reporter = P.ProgressReporter(self.progress_actor)
        self.display = P.ProgressDisplay(
            lambda: ray.get(self.progress_actor.snapshot.remote(), timeout=10), enabled=self.run_cfg.progress
        )
        self.parts: list[str] = [""] * len(plan.segments)
        self.tracks = 0
        self.face_frames = 0
        self.random_generator = False
        self.model_description: str | None = None
        self.search_nodes: set[str] = set()
        self._records: dict[int, list[dict[str, Any]]] = {}
        self.identity: dict[int, dict[str, float]] = {}  # per track, measured by the search workers
        self._track_spans: dict[int, tuple[int, int]] = {}
        self._searched: set[int] = set()
        self._segment_tracks: dict[int, tuple[int, ...]] = {}  # tracks shown in each segment
        self._segment_waiting: dict[int, set[int]] = {}  # ... not yet searched
        self._units: list[tuple[int, ...]] = []  # search units: tracks searched together
        self._chunked: dict[int, list[Any]] = {}  # long tracks searched in chunks: their chunks
        self._chunks_waiting: dict[int, set[int]] = {}  # per chunked track: chunks not yet searched
        self._crops_waiting: dict[int, set[int]] = {}  # per unit needing search: tracks without crops
        self._units_to_search = 0
        self._scan: Any = None
        self._actors: list[Any] = []

    @property
    def scanned(self) -> Any:
        """The scan (ScanResult) once it is done, else None."""
        return self._scan

    # -- lifecycle

    def execute(self) -> list[dict[str, Any]]:
        self.reporter.set_total(P.SEGMENTS_ENCODED, len(self.plan.segments))
        with self.display:
            if self.config.prior.model is None:
                # No face model: nothing to scan for; every segment is upscaled and encoded at once.
                self._plan_segments({})
                self._queue_ready_segments()
            else:
                self._start_scan()
            self.queue.drain()
            self.reporter.flush(wait=True)  # the driver's own counts (units skipped) before the last line
        records = [r for tid in sorted(self._records) for r in self._records[tid]]
        if self.search_nodes:
            log.info("search ran on node(s): %s", ", ".join(sorted(self.search_nodes)))
        return records

    def close(self) -> None:
        self.display.close()
        self._release_actors()
        self.ray.kill(self.progress_actor)

    # -- scan

    def _start_scan(self) -> None:
        path = self.plan.scan_path()
        if self.plan.wd.has("scan", self.plan.scan_key, "scan.npz"):
            log.info("scan: done earlier, skipped (%s)", path)
            self._scanned()
            return
        remote = self.ray.remote(scan_task).options(**self.task_options)
        self.queue.submit(
            "scan",
            lambda: remote.remote(self.plan.video, self.config, str(path), self.reporter),
            lambda _: self._scanned(),
        )

    def _scanned(self) -> None:
        from pipeline.faces import store
        from pipeline.run.workdir import load_arrays

        self._scan = store.scan_from_arrays(load_arrays(self.plan.scan_path()))
        self.reporter.set_total(P.FRAMES_SCANNED, self._scan.end - self._scan.start)
        tracks = self._scan.tracks
        self.tracks = len(tracks)
        self.face_frames = sum(len(t.frames) for t in tracks)
        self.reporter.set_total(P.FACE_FRAMES_RESTORED, self.face_frames)
        self._track_spans = {t.track_id: (t.start, t.end) for t in tracks}
        log.info(
            "%d shots, %d face tracks (%d face-frames), footage is %s",
            len(self._scan.shots),
            len(tracks),
            self.face_frames,
            "black and white" if self._scan.gray else "colour",
        )
        self._plan_segments(self._track_spans)
        divided = search_plan({t.track_id: len(t.frames) for t in tracks}, self.config)
        self._units, self._chunked = divided.units, divided.chunked
        self._units_to_search = sum(not self._unit_stored(i) for i in range(len(self._units)))
        self._units_to_search += sum(self._chunk_units_to_search(tid) for tid in self._chunked)
        for index in range(len(self._units)):
            self._start_unit(index)
        for tid in self._chunked:
            self._start_chunked(tid)
        self._queue_ready_segments()

    # -- crops and search

    def _unit_stored(self, index: int) -> bool:
        """Every track of the unit has its crops and its search result in the work directory."""
        plan = self.plan
        names = [f"track-{tid:06d}.npz" for tid in self._units[index]]
        return all(
            plan.wd.has("crops", plan.crops_key, name) and plan.wd.has("search", str(plan.search_key), name)
            for name in names
        )

    def _start_unit(self, index: int) -> None:
        plan, unit = self.plan, self._units[index]
        names = [f"track-{tid:06d}.npz" for tid in unit]
        has_crops = [plan.wd.has("crops", plan.crops_key, name) for name in names]
        if self._unit_stored(index):
            stored = {tid: stored_results(plan.search_path(tid)) for tid in unit}
            records = {tid: faces for tid, (faces, _) in stored.items()}
            identity = {tid: figures for tid, (_, figures) in stored.items() if figures is not None}
            self._unit_done(index, {"faces": records, "identity": identity, "node_id": None}, skipped=True)
            return
        self._crops_waiting[index] = {tid for tid, done in zip(unit, has_crops, strict=True) if not done}
        if not self._crops_waiting[index]:
            self._start_search(index)
            return
        remote = self.ray.remote(crops_task).options(**self.task_options)
        scan_path = str(plan.scan_path())
        for tid in sorted(self._crops_waiting[index]):
            out = str(plan.crops_path(tid))
            self.queue.submit(
                f"crops of track {tid}",
                functools.partial(remote.remote, plan.video, scan_path, tid, self.config, out),
                functools.partial(self._crops_done, index, tid),
            )

    def _crops_done(self, index: int, track_id: int, _count: int = 0) -> None:
        self._crops_waiting[index].discard(track_id)
        if not self._crops_waiting[index]:
            self._start_search(index)

    def _start_actors(self) -> None:
        from pipeline.run.actors import ModelActor, default_actor_count, search_actor_options

        if self._actors:
            return
        run = self.run_cfg
        custom = self.cluster.resources.get(run.search_resource, 0.0) if run.search_resource else 0.0
        options = search_actor_options(
            num_gpus_per_search=run.num_gpus_per_search,
            search_resource=run.search_resource,
            cluster_gpus=self.cluster.gpus,
            max_retries=run.max_retries,
        )
        count = default_actor_count(
            run.search_actors,
            cluster_gpus=self.cluster.gpus,
            num_gpus_per_search=run.num_gpus_per_search,
            cluster_resource=custom,
        )
        count = min(count, max(1, self._units_to_search))  # never more actors than units to search
        actor_class = self.ray.remote(ModelActor)
        prior, search = self.config.prior, self.config.search
        args = (str(prior.model), run.device, prior.dtype, search.gaussian_samples)
        # Named (reel-search-<run>-<i> in the "reel" namespace) so operators and tests can find them.
        run_id = os.urandom(4).hex()
        self._actors = [
            actor_class.options(**options, name=f"reel-search-{run_id}-{i}").remote(load_search_model, *args)
            for i in range(count)
        ]
        self.queue.set_actors(self._actors)
        # Loading errors (a bad checkpoint) surface here, before any unit is queued.
        try:
            about = self.ray.get(self._actors[0].run.remote(describe_model))
        except Exception as exc:
            from pipeline.run.actors import unit_error

            raise unit_error(f"loading the face model {prior.model}", exc) from exc
        self.model_description, self.random_generator = about["description"], about["random"]
        if self.random_generator:
            log.warning(
                "the face prior is a seeded RANDOM TEST GENERATOR (%s): restored faces are not faces; "
                "this run only exercises the pipeline",
                self.model_description,
            )
        log.info("%d search actor(s): %s", count, {k: v for k, v in options.items() if "retr" not in k})

    def _unit_label(self, index: int) -> str:
        unit = self._units[index]
        start = min(self._track_spans[t][0] for t in unit)
        end = max(self._track_spans[t][1] for t in unit)
        return f"search of track(s) {', '.join(map(str, unit))} (frames {start}-{end})"

    def _start_search(self, index: int) -> None:
        plan, unit = self.plan, self._units[index]
        self._start_actors()
        scan_path = str(plan.scan_path())
        crops = [str(plan.crops_path(tid)) for tid in unit]
        outs = [str(plan.search_path(tid)) for tid in unit]
        self.queue.submit_actor(
            self._unit_label(index),
            lambda actor: actor.run.remote(search_unit, scan_path, crops, self.config, outs, self.reporter),
            lambda result: self._unit_done(index, result),
        )

    def _unit_done(self, index: int, result: dict[str, Any], skipped: bool = False) -> None:
        unit = self._units[index]
        for tid in unit:
            self._track_done(tid, result, skipped)
        if skipped:
            self.plan.skipped["search"] += 1
        else:
            self.plan.ran["search"] += 1
            self.search_nodes.add(result["node_id"])
        self._tracks_searched(unit)

    def _track_done(self, tid: int, result: dict[str, Any], skipped: bool) -> None:
        faces = result["faces"].get(tid, [])
        self._records[tid] = faces
        figures = result["identity"].get(tid)
        if figures is not None:
            self.identity[tid] = figures
        if skipped:
            self.reporter.add(P.FACE_FRAMES_RESTORED, len(faces))
            log.info("search of track %d: done earlier, skipped", tid)
            if faces and figures is None:
                log.info("track %d: no identity figures were stored with it (SFace unavailable)", tid)
        else:
            log.info(
                "track %d: %d frames restored, mean consistency %.1f dB",
                tid,
                len(faces),
                sum(f["psnr_db"] for f in faces) / max(len(faces), 1),
            )

    # -- chunked tracks: anchors (one unit), then chunks (a unit each, in parallel), then a join

    def _chunk_names(self, tid: int) -> tuple[str, list[str]]:
        return chunk_artifacts(tid, self._chunked[tid])

    def _chunk_units_to_search(self, tid: int) -> int:
        plan = self.plan
        if plan.wd.has("search", str(plan.search_key), f"track-{tid:06d}.npz"):
            return 0
        anchors, chunks = self._chunk_names(tid)
        return sum(not plan.wd.has("search", str(plan.search_key), n) for n in [anchors, *chunks])

    def _start_chunked(self, tid: int) -> None:
        plan = self.plan
        name = f"track-{tid:06d}.npz"
        has_crops = plan.wd.has("crops", plan.crops_key, name)
        if has_crops and plan.wd.has("search", str(plan.search_key), name):
            faces, figures = stored_results(plan.search_path(tid))
            identity = {tid: figures} if figures is not None else {}
            self._track_done(tid, {"faces": {tid: faces}, "identity": identity}, skipped=True)
            plan.skipped["search"] += 1
            self._tracks_searched((tid,))
            return
        if has_crops:
            self._start_anchors(tid)
            return
        remote = self.ray.remote(crops_task).options(**self.task_options)
        self.queue.submit(
            f"crops of track {tid}",
            functools.partial(
                remote.remote, plan.video, str(plan.scan_path()), tid, self.config, str(plan.crops_path(tid))
            ),
            lambda _: self._start_anchors(tid),
        )

    def _start_anchors(self, tid: int) -> None:
        plan, chunks = self.plan, self._chunked[tid]
        anchors, _ = self._chunk_names(tid)
        if plan.wd.has("search", str(plan.search_key), anchors):
            self.reporter.add(P.FACE_FRAMES_RESTORED, len(chunks))
            plan.skipped["search"] += 1
            log.info("anchors of track %d: done earlier, skipped", tid)
            self._start_chunks(tid)
            return
        self._start_actors()
        crops, out = str(plan.crops_path(tid)), str(plan.wd.artifact("search", str(plan.search_key), anchors))
        self.queue.submit_actor(
            f"anchors of track {tid} ({len(chunks)} chunks)",
            lambda actor: actor.run.remote(
                search_anchors_unit, crops, chunks, self.config, out, self.reporter
            ),
            lambda result: self._anchors_done(tid, result),
        )

    def _anchors_done(self, tid: int, result: dict[str, Any]) -> None:
        self.plan.ran["search"] += 1
        self.search_nodes.add(result["node_id"])
        self._start_chunks(tid)

    def _start_chunks(self, tid: int) -> None:
        plan, chunks = self.plan, self._chunked[tid]
        key = str(plan.search_key)
        anchors, names = self._chunk_names(tid)
        crops, anchors_path = str(plan.crops_path(tid)), str(plan.wd.artifact("search", key, anchors))
        self._chunks_waiting[tid] = set()
        for chunk, name in zip(chunks, names, strict=True):
            if plan.wd.has("search", key, name):
                self.reporter.add(P.FACE_FRAMES_RESTORED, chunk.end - chunk.start - 1)
                plan.skipped["search"] += 1
                log.info("chunk %d of track %d: done earlier, skipped", chunk.index, tid)
                continue
            self._chunks_waiting[tid].add(chunk.index)
            self._start_actors()
            out = str(plan.wd.artifact("search", key, name))
            span = self._track_spans[tid]
            self.queue.submit_actor(
                f"search of track {tid} chunk {chunk.index} (track frames {chunk.start}-{chunk.end}, "
                f"of frames {span[0]}-{span[1]})",
                functools.partial(self._submit_chunk, crops, anchors_path, tid, chunk.index, out),
                functools.partial(self._chunk_done, tid, chunk.index),
            )
        if not self._chunks_waiting[tid]:
            self._finish_chunked(tid)

    def _submit_chunk(self, crops: str, anchors_path: str, tid: int, index: int, out: str, actor: Any) -> Any:
        chunks = self._chunked[tid]
        return actor.run.remote(
            search_chunk_unit, crops, anchors_path, chunks, index, self.config, out, self.reporter
        )

    def _chunk_done(self, tid: int, index: int, result: dict[str, Any]) -> None:
        self.plan.ran["search"] += 1
        self.search_nodes.add(result["node_id"])
        self._chunks_waiting[tid].discard(index)
        if not self._chunks_waiting[tid]:
            self._finish_chunked(tid)

    def _finish_chunked(self, tid: int) -> None:
        plan = self.plan
        key = str(plan.search_key)
        anchors, names = self._chunk_names(tid)
        remote = self.ray.remote(finish_chunked_track).options(**self.task_options)
        args = (
            str(plan.scan_path()),
            str(plan.crops_path(tid)),
            str(plan.wd.artifact("search", key, anchors)),
            [str(plan.wd.artifact("search", key, n)) for n in names],
            str(plan.search_path(tid)),
        )
        self.queue.submit(
            f"joining the chunks of track {tid}",
            lambda: remote.remote(*args),
            lambda result: self._chunked_joined(tid, result),
        )

    def _chunked_joined(self, tid: int, result: dict[str, Any]) -> None:
        self._track_done(tid, result, skipped=False)
        self._tracks_searched((tid,))

    def _tracks_searched(self, tids: Sequence[int]) -> None:
        self._searched.update(tids)
        if len(self._searched) == self.tracks and self._actors:
            # Every track is searched: give the actors' GPUs and CPUs back to the compose tasks.
            self.queue.set_actors([])
            self._release_actors()
        self._queue_ready_segments()

    def _release_actors(self) -> None:
        for actor in self._actors:
            self.ray.kill(actor)
        self._actors = []

    # -- compose

    def _plan_segments(self, spans: dict[int, tuple[int, int]]) -> None:
        for i, (s, e) in enumerate(self.plan.segments):
            shown = tuple(sorted(tid for tid, (a, b) in spans.items() if a < e and b > s))
            self._segment_tracks[i] = shown
            self._segment_waiting[i] = set(shown)

    def _segment_artifact(self, index: int) -> tuple[str, str]:
        """(key, name) of a part: the key holds the output settings, the name the part's own inputs.

        A segment without faces does not depend on the scan or search settings, so changing those
        re-encodes only the segments that show a face.
        """
        plan, config = self.plan, self.config
        tracks = self._segment_tracks[index]
        key = WorkDir.settings_key(
            plan.video_key, config.io.deinterlace, config.io.inverse_telecine, config.upscale, config.io
        )
        faces = (plan.search_key, plan.scan_key, tracks, bool(self._scan.gray)) if tracks else None
        start, end = plan.segments[index]
        # MOV keeps any time base exactly
        return key, f"part-{start:08d}-{WorkDir.settings_key(start, end, faces)[:12]}.mov"

    def _queue_ready_segments(self) -> None:
        ready = [i for i, waiting in self._segment_waiting.items() if not (waiting - self._searched)]
        for index in ready:
            del self._segment_waiting[index]
            self._start_segment(index)

    def _start_segment(self, index: int) -> None:
        plan = self.plan
        start, end = plan.segments[index]
        key, name = self._segment_artifact(index)
        out = plan.wd.artifact("compose", key, name)
        self.parts[index] = str(out)
        if plan.wd.has("compose", key, name):
            plan.skipped["segments"] += 1
            self.reporter.add(P.SEGMENTS_ENCODED)
            log.info("segment %d (frames %d-%d): done earlier, skipped", index, start, end)
            return
        tracks = self._segment_tracks[index]
        sources = [(str(plan.crops_path(t)), str(plan.search_path(t))) for t in tracks]
        gray = bool(self._scan.gray) if self._scan is not None else False
        remote = self.ray.remote(compose_task).options(**self.task_options)
        self.queue.submit(
            f"segment {index} (frames {start}-{end})",
            lambda: remote.remote(
                plan.video, self.info, start, end, sources, gray, self.config, str(out), self.reporter
            ),
            lambda _: plan.ran.__setitem__("segments", plan.ran["segments"] + 1),
        )


def _remove_parts(wd: WorkDir, parts: Sequence[str]) -> None:
    """Encoded parts are as big as the output and only serve a rerun before the mux: once the output
    exists they go (scan, crops and search results stay: a changed late setting reuses them). An
    emptied work directory goes too."""
    for part in parts:
        Path(part).unlink(missing_ok=True)
    for directory in [*sorted({Path(p).parent for p in parts}), wd.root / "compose", wd.root]:
        # not empty: other keys' artifacts, or a concurrent run's
        with contextlib.suppress(OSError):
            directory.rmdir()
