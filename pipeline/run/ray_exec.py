"""The Ray executor: the plan's steps as Ray tasks (one CPU each) and search-actor calls.

The same plan, keys, step functions, retries and progress as the in-process executor
(`pipeline.run.schedule`), so the output is the same frame for frame. What Ray adds is the schedule:
every step whose dependencies have finished is submitted at once, within `run.max_in_flight`
(`WorkQueue`: the `ray.wait` backpressure pattern), and each finished step releases its dependents,
so scan segments run on every worker, a search unit starts when its crops exist, and a segment is
composed as soon as the tracks it shows are searched. Search steps go to actors that load the
generator once (`run.num_gpus_per_search` GPUs each where the cluster has GPUs, else a CPU), started
when the first one is ready and released when the last one is done. Whether any other step asks for
a GPU share is the step kinds' table (`pipeline.run.work.KINDS`, `gpu_share`): compose with a learned
upscaler, clean and compose with film cleaning in torch; the CPU-only steps take none. Where the
cluster has GPUs, every GPU step is placed in a GPU lane (`pipeline.run.lanes`: one placement-group
bundle per GPU), so the actors and GPU tasks spread over all of them. Frames never cross the object
store: steps read the source by path and exchange artifacts through the work directory. Each step's
result names the GPUs it ran with (`run.timeline`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, TypedDict, cast

from pipeline.run.actors import (
    ActorOptions,
    ModelActor,
    RunsCalls,
    WorkQueue,
    default_actor_count,
    portable_errors,
    search_actor_options,
    unit_error,
)
from pipeline.run.lanes import GpuLanes, usable
from pipeline.run.mode import DriverContext, RunReport
from pipeline.run.plan import Job, Step
from pipeline.run.progress import Progress, ProgressDisplay
from pipeline.run.ray_runtime import RayInfo, ray_session
from pipeline.run.schedule import Schedule, StepResult, run_search_step, run_step
from pipeline.run.search_steps import ModelDescription, SearchModel, describe_model, load_search_model
from pipeline.run.work import KINDS, Driver, Search, StepKind, Task, gpu_share

if TYPE_CHECKING:
    from ray.actor import ActorHandle


log = logging.getLogger(__name__)


class _TaskOptions(TypedDict):
    max_retries: int
    retry_exceptions: bool


def _gpu_ids() -> list[str]:
    """The GPUs Ray gave the running task or actor (none on a CPU)."""
    import ray

    return [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]


@portable_errors
def step_task(work: Task, retries: int, label: str) -> StepResult:
    """A step in a Ray worker (a CPU, and a GPU share where its kind asks for one: `_RayRun._submit_task`)."""
    out = run_step(work, retries, label)
    out["gpus"] = _gpu_ids()
    return out


@portable_errors
def search_call(model: SearchModel, work: Search, retries: int, label: str) -> StepResult:
    """A search step on a search actor (`model`: the actor's loaded generator)."""
    out = run_search_step(model, work, retries, label)
    import ray

    out["node_id"] = ray.get_runtime_context().get_node_id()
    out["gpus"] = _gpu_ids()
    return out


@portable_errors
def load_model(model: str, device: str, dtype: str, gaussian_samples: int) -> SearchModel:
    """A search actor's loader (`search_steps.load_search_model`, errors made portable)."""
    return load_search_model(model, device, dtype, gaussian_samples)


@portable_errors
def describe(model: SearchModel) -> ModelDescription:
    return describe_model(model)


def run_plan(job: Job) -> RunReport:

    started, wall = time.perf_counter(), time.time()
    with ray_session(job.config.run) as cluster:
        ray_start = time.perf_counter() - started  # ~0 when Ray was already up (batch, job)
        run = _RayRun(job, cluster, started)
        try:
            report = run.execute()
        finally:
            run.close()
        run.schedule.write_timeline(wall, time.time())
    report.seconds["ray_start"] = ray_start
    report.seconds["total"] = time.perf_counter() - started
    return report


class _RayRun:
    """Submits ready steps, releases dependents as results arrive; the actors for search steps."""

    def __init__(self, job: Job, cluster: RayInfo, started: float) -> None:
        import ray

        self.ray, self.job, self.cluster, self.started = ray, job, cluster, started
        run = job.config.run
        self.retries = run.max_retries
        in_flight = run.max_in_flight or 2 * max(1, int(cluster.cpus))
        self.queue: WorkQueue[Step, StepResult] = WorkQueue(max_in_flight=in_flight, on_done=self._done)
        self.progress = Progress()
        self.display = ProgressDisplay(self.progress.snapshot, enabled=run.progress)
        self.schedule = Schedule(job, self.progress)
        self.task_options: _TaskOptions = {"max_retries": self.retries, "retry_exceptions": False}
        self.remote = ray.remote(step_task)
        self.task = self.remote.options(num_cpus=1, **self.task_options)
        self.lanes = _reserve_lanes(job, cluster)  # one per GPU, where the job has GPU steps
        self.step_lanes: dict[str, int] = {}  # GPU task -> its lane, until it finishes
        self.actors: list[ActorHandle[ModelActor]] = []
        self.actor_gpus = False  # the search actors hold GPU shares
        self.search_nodes: set[str] = set()
        self.report: RunReport | None = None  # the join's (the mode's RunReport)

    def execute(self) -> RunReport:
        with self.display:
            self._submit_ready()
            self.queue.drain()
        if self.report is None:
            raise AssertionError(
                f"the plan is stuck: {sorted(self.schedule.needed - self.schedule.finished)}"
            )
        if self.search_nodes:
            log.info("search ran on node(s): %s", ", ".join(sorted(self.search_nodes)))
        log.info("steps: %s", self.schedule.summary())
        return self.report

    def close(self) -> None:
        self.display.close()
        self._release_actors()
        if self.lanes is not None:
            self.lanes.close()

    def _submit_ready(self) -> None:
        for step in self.schedule.ready():
            self.schedule.start(step)
            work = step.work
            if isinstance(work, Driver):
                self._run_driver_step(step)
            elif isinstance(work, Search):
                self._start_actors()
                self.queue.submit_actor(step.label, search_call, work, self.retries, step.label, tag=step)
            else:
                self._submit_task(step)

    def _submit_task(self, step: Step) -> None:
        """A task: one CPU, or, where its kind asks for a GPU share and the cluster has GPUs, that
        share (in the least busy GPU lane when there are lanes)."""
        share = gpu_share(step.kind, self.job.config) if self.cluster.gpus > 0 else 0.0
        task = self.task
        if share > 0 and self.lanes is not None:
            lane = self.step_lanes[step.key] = self.lanes.counts.take()
            task = self.remote.options(**self.task_options, **self.lanes.options(lane, share))
        elif share > 0:
            task = self.remote.options(**self.task_options, num_cpus=1, num_gpus=share)
        self.queue.submit(step.label, task, step.work, self.retries, step.label, tag=step)

    def _done(self, step: Step | None, result: StepResult) -> None:
        assert step is not None  # every step is queued with itself as its tag
        if "node_id" in result:
            self.search_nodes.add(result["node_id"])
        if step.key in self.step_lanes and self.lanes is not None:
            self.lanes.counts.release(self.step_lanes.pop(step.key))
        self.schedule.finish(step, result)
        if self.actors and self.schedule.plan.complete and not self.schedule.pending(search=True):
            # Every search is done: give the actors' GPUs and CPUs back to the compose tasks.
            self.queue.set_actors([])
            self._release_actors()
        elif self.actors and not self.actor_gpus:
            # Actors beyond the search work that can run now (queued or running) give their resources
            # back: on a CPU-only machine an idle actor may hold the CPU the crops task its next unit
            # waits for. Actors are started again when a search step is ready and none is left.
            # Actors on GPUs stay until the last search (each keeps its GPU, its lane's CPU share).
            ready = sum(1 for s in self.schedule.ready() if s.search)
            for actor in self.queue.retire_idle(keep=ready + self.queue.actor_calls):
                self.ray.kill(actor)
        self._submit_ready()

    def _run_driver_step(self, step: Step) -> None:
        seconds = {**self.schedule.seconds, "total": time.perf_counter() - self.started}
        context: DriverContext = {
            "executor": "ray",
            "seconds": seconds,
            "decode": self.schedule.decode_section(),
        }
        t0 = time.time()
        assert isinstance(step.work, Driver)
        self.report = step.work(context=context)
        self.schedule.finish(step, {"seconds": time.time() - t0, "started": t0})

    def _start_actors(self) -> None:

        if self.queue.live_actors:
            return
        self._release_actors()  # retired ones
        cfg = self.job.config
        run = cfg.run
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
        count = min(count, max(1, self.schedule.pending(search=True)))  # never more actors than units
        if not options.get("num_gpus"):
            # Actors that take whole CPUs leave one for the tasks (crops, compose) they wait for.
            count = min(count, max(1, int(self.cluster.cpus) - 1))
        actor_class = self.ray.remote(ModelActor)
        args = (str(cfg.prior.model), run.device, cfg.prior.dtype, cfg.search.gaussian_samples)
        # Named (reel-search-<run>-<i> in the "reel" namespace) so operators and tests can find them.
        run_id = os.urandom(4).hex()
        self.actor_gpus = bool(options.get("num_gpus"))
        # Ray types `ActorClass.remote()` as a handle or the class itself: it is a handle
        self.actors = [
            cast(
                "ActorHandle[ModelActor]",
                actor_class.options(**self._in_lane(options, i), name=f"reel-search-{run_id}-{i}").remote(
                    load_model, *args
                ),
            )
            for i in range(count)
        ]
        self.queue.set_actors(self.actors)
        first: RunsCalls[ModelDescription] = self.actors[0]
        # Loading errors (a bad checkpoint) surface here, before any unit is queued.
        try:
            about = self.ray.get(first.run.remote(describe))
        except Exception as exc:
            raise unit_error(f"loading the face model {cfg.prior.model}", exc) from exc
        log.info("face model on the search actors: %s (%s)", about["description"], about["device"])
        log.info("%d search actor(s): %s", count, {k: v for k, v in options.items() if "retr" not in k})

    def _in_lane(self, options: ActorOptions, i: int) -> ActorOptions:
        """Search actor i's options, placed in GPU lane i mod lanes where there are lanes (an actor
        pinned by `run.search_resource` is not: a lane holds GPUs and CPUs only)."""
        if self.lanes is None or not options.get("num_gpus") or "resources" in options:
            return options
        return {**options, **self.lanes.options(i % self.lanes.lanes, float(options["num_gpus"]))}

    def _release_actors(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []


def _reserve_lanes(job: Job, cluster: RayInfo) -> GpuLanes | None:
    """GPU lanes for the run (`pipeline.run.lanes`), where the cluster has GPUs and the job has GPU
    steps: the search (with a face model) or a kind whose `gpu` rule asks for a share. Reserved
    before any step runs, so the cluster can grant them at once."""
    if cluster.gpus <= 0:
        return None
    cfg = job.config
    shares = [gpu_share(kind, cfg) for kind in KINDS]
    searches = cfg.prior.model is not None
    wanted = [
        s for kind, s in zip(KINDS, shares, strict=True) if s > 0 and (searches or not _search_kind(kind))
    ]
    if not wanted or not usable(cluster.gpus, wanted):
        return None
    return GpuLanes.reserve(cluster.gpus, cluster.cpus)


def _search_kind(kind: StepKind) -> bool:
    return KINDS[kind].gpu.share == "num_gpus_per_search"
