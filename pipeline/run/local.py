"""The in-process executor: the plan's steps one after another on this machine.

The same plan, keys, step functions, retries and progress as the Ray executor
(`pipeline.run.schedule`), so the output is the same frame for frame, and so is a resumed run.
The generator is loaded once, when the first search step runs.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pipeline.run.plan import Job
from pipeline.run.progress import Progress, ProgressDisplay
from pipeline.run.schedule import Schedule, run_search_step, run_step
from pipeline.run.search_steps import load_search_model
from pipeline.run.work import Driver, Search, Task

if TYPE_CHECKING:
    from pipeline.run.mode import DriverContext, RunReport
    from pipeline.run.search_steps import SearchModel

log = logging.getLogger(__name__)


def run_plan(job: Job) -> RunReport:

    cfg = job.config
    started, wall = time.perf_counter(), time.time()
    progress = Progress()
    schedule = Schedule(job, progress)
    model: SearchModel | None = None
    with ProgressDisplay(progress.snapshot, enabled=cfg.run.progress):
        while not schedule.done:
            ready = schedule.ready()
            if not ready:
                raise AssertionError(f"the plan is stuck: {sorted(schedule.needed - schedule.finished)}")
            step = ready[0]  # plan order
            schedule.start(step)
            retries = cfg.run.max_retries
            if step.driver:
                seconds = {**schedule.seconds, "total": time.perf_counter() - started}
                context: DriverContext = {
                    "executor": "local",
                    "seconds": seconds,
                    "decode": schedule.decode_section(),
                }

                t0 = time.time()
                assert isinstance(step.work, Driver)
                report = step.work(context=context)
                schedule.finish(step, {"seconds": time.time() - t0, "started": t0})
                continue
            if isinstance(step.work, Search):
                if model is None:
                    model = load_search_model(
                        str(cfg.prior.model), cfg.run.device, cfg.prior.dtype, cfg.search.gaussian_samples
                    )
                done = run_search_step(model, step.work, retries, step.label)
            else:
                assert isinstance(step.work, Task)
                done = run_step(step.work, retries, step.label)
            schedule.finish(step, done)
    log.info("steps: %s", schedule.summary())
    schedule.write_timeline(wall, time.time())
    report.seconds["total"] = time.perf_counter() - started
    return report
