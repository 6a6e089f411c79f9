"""The Ray executor: the plan's steps as Ray tasks (one CPU each) and search-actor calls.

The same plan, keys, step functions, retries and progress as the in-process executor
(`pipeline.run.schedule`), so the output is the same frame for frame. What Ray adds is the schedule:
every step whose dependencies have finished is submitted at once, within `run.max_in_flight`
(`WorkQueue`: the `ray.wait` backpressure pattern), and each finished step releases its dependents,
so scan segments run on every worker, a search unit starts when its crops exist, and a segment is
composed as soon as the tracks it shows are searched. Search steps go to actors that load the
generator once (`run.num_gpus_per_search` GPUs each where the cluster has GPUs, else a CPU), started
when the first one is ready and released when the last one is done. A compose step that runs a
learned upscaler (`upscale.model`) asks for `run.num_gpus_per_upscale` of a GPU where the cluster
has GPUs. Frames never cross the object store: steps read the source by path and exchange artifacts
through the work directory. Each step's result names the GPUs it ran with (`run.timeline`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from pipeline.run.actors import (
    ModelActor,
    WorkQueue,
    default_actor_count,
    portable_errors,
    search_actor_options,
    unit_error,
)
from pipeline.run.plan import Job, Step
from pipeline.run.progress import Progress, ProgressDisplay
from pipeline.run.ray_runtime import ray_session
from pipeline.run.schedule import Schedule, run_search_step, run_step
from pipeline.run.search_steps import SearchModel, describe_model, load_search_model
from pipeline.run.work import Driver, Search, StepKind, Task

log = logging.getLogger(__name__)


def _gpu_ids() -> list[str]:
    """The GPUs Ray gave the running task or actor (none on a CPU)."""
    import ray

    return [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]


@portable_errors
def step_task(work: Task, retries: int, label: str) -> dict[str, Any]:
    """A step in a Ray worker (a CPU, and a GPU share for a learned upscale: `_RayRun.gpu_task`)."""
    out = run_step(work, retries, label)
    out["gpus"] = _gpu_ids()
    return out


@portable_errors
def search_call(model: SearchModel, work: Search, retries: int, label: str) -> dict[str, Any]:
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
def describe(model: SearchModel) -> dict[str, Any]:
    return describe_model(model)


def run_plan(job: Job) -> Any:

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

    def __init__(self, job: Job, cluster: Any, started: float) -> None:
        import ray

        self.ray, self.job, self.cluster, self.started = ray, job, cluster, started
        run = job.config.run
        self.retries = run.max_retries
        in_flight = run.max_in_flight or 2 * max(1, int(cluster.cpus))
        self.queue = WorkQueue(max_in_flight=in_flight, on_done=self._done)
        self.progress = Progress()
        self.display = ProgressDisplay(self.progress.snapshot, enabled=run.progress)
        self.schedule = Schedule(job, self.progress)
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": self.retries, "retry_exceptions": False}
        self.task = ray.remote(step_task).options(**options)
        # compose with a learned upscaler runs the network: on a GPU share where the cluster has GPUs
        self.gpu_task: Any = None
        if getattr(job.config.upscale, "model", None) and cluster.gpus > 0 and run.num_gpus_per_upscale > 0:
            self.gpu_task = ray.remote(step_task).options(**options, num_gpus=run.num_gpus_per_upscale)
        self.actors: list[Any] = []
        self.search_nodes: set[str] = set()
        self.report: Any = None  # the join's (the mode's RunReport)

    def execute(self) -> Any:
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
                gpu = step.kind is StepKind.COMPOSE and self.gpu_task is not None
                task = self.gpu_task if gpu else self.task
                self.queue.submit(step.label, task, work, self.retries, step.label, tag=step)

    def _done(self, step: Step, result: dict[str, Any]) -> None:
        if "node_id" in result:
            self.search_nodes.add(result["node_id"])
        self.schedule.finish(step, result)
        if self.actors and self.schedule.plan.complete and not self.schedule.pending(search=True):
            # Every search is done: give the actors' GPUs and CPUs back to the compose tasks.
            self.queue.set_actors([])
            self._release_actors()
        elif self.actors:
            # Actors beyond the search work that can run now (queued or running) give their resources
            # back: on a CPU-only machine an idle actor may hold the CPU the crops task its next unit
            # waits for. Actors are started again when a search step is ready and none is left.
            ready = sum(1 for s in self.schedule.ready() if s.search)
            for actor in self.queue.retire_idle(keep=ready + self.queue.actor_calls):
                self.ray.kill(actor)
        self._submit_ready()

    def _run_driver_step(self, step: Step) -> None:
        seconds = {**self.schedule.seconds, "total": time.perf_counter() - self.started}
        context = {"executor": "ray", "seconds": seconds, "decode": self.schedule.decode_section()}
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
        self.actors = [
            actor_class.options(**options, name=f"reel-search-{run_id}-{i}").remote(load_model, *args)
            for i in range(count)
        ]
        self.queue.set_actors(self.actors)
        # Loading errors (a bad checkpoint) surface here, before any unit is queued.
        try:
            about = self.ray.get(self.actors[0].run.remote(describe))
        except Exception as exc:
            raise unit_error(f"loading the face model {cfg.prior.model}", exc) from exc
        log.info("face model on the search actors: %s (%s)", about["description"], about["device"])
        log.info("%d search actor(s): %s", count, {k: v for k, v in options.items() if "retr" not in k})

    def _release_actors(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
