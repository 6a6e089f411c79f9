"""What both executors share: which steps of a plan are done, needed and ready; progress; retries.

An executor asks `ready()` for steps whose dependencies have finished, runs them (in order, or as
Ray tasks and actor calls), and reports each with `finish()`, which releases its dependents. A step
is needed when the final step needs it and it is not done: a finished stitch needs no scan segment,
a finished search no crops search. When the stitch finishes (or was done earlier) the plan is
rebuilt from the tracks it found, and the steps after it join the schedule.

Retries are the same everywhere: `run_step` calls a step up to `run.max_retries` more times when it
fails with an unexpected error (a PipelineError, such as a damaged input, fails at once); on Ray a
task whose worker dies is also retried by Ray, and a search actor that dies is restarted.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from pipeline.errors import JobError, PipelineError
from pipeline.faces import store
from pipeline.faces.people import person_of_tracks
from pipeline.files import load_arrays, save_json
from pipeline.run.frames import frame_counts, one_thread
from pipeline.run.plan import Job, Plan, Step, build_plan
from pipeline.run.progress import Progress
from pipeline.run.work import Search, StepKind

if TYPE_CHECKING:
    from pipeline.run.mode import DecodeSection
    from pipeline.run.search_steps import SearchModel

log = logging.getLogger(__name__)


class StepResult(TypedDict):
    """A finished step (`run_step`), or a driver step's seconds; the Ray executor adds where it ran."""

    seconds: float
    started: float  # epoch seconds
    result: NotRequired[object]  # what the step's work returned
    frames: NotRequired[dict[str, int]]  # frames decoded and cleaned ("decoded", "cleaned")
    gpus: NotRequired[list[str]]  # the GPUs Ray gave it (none in-process or on a CPU)
    node_id: NotRequired[str]  # the Ray node a search ran on


class Schedule:
    """The state of one run of a plan (driver side; both executors)."""

    def __init__(self, job: Job, progress: Progress | None = None) -> None:
        self.job = job
        self.progress = progress if progress is not None else Progress()
        self.finished: set[str] = set()
        self.started: set[str] = set()
        self.needed: set[str] = set()
        # (kind, start, end, GPU ids) of every step run, epoch seconds; the ids Ray gave the step
        self.timeline: list[tuple[str, float, float, tuple[str, ...]]] = []
        self._checked: set[str] = set()  # steps whose done-test ran (only running them changes it)
        self._removed: set[str] = set()  # transient steps whose artifacts are gone
        self.ran: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        # per stage: seconds spent in its steps, summed over workers (search: anchors, chunks too)
        self.seconds: dict[str, float] = dict.fromkeys(("scan", "crops", "search", "compose"), 0.0)
        # per stage: frames decoded and film-cleaned by its steps (context frames included)
        self.decoded: dict[str, dict[str, int]] = {}
        self.plan: Plan = build_plan(job)
        self._settle()

    # -- the executor's side

    def ready(self) -> list[Step]:
        """Needed steps not started yet whose dependencies have all finished, in plan order."""
        return [
            s
            for k, s in self.plan.steps.items()
            if k in self.needed
            and k not in self.started
            and k not in self.finished
            and all(d in self.finished for d in s.deps)
        ]

    def start(self, step: Step) -> None:
        self.started.add(step.key)

    def finish(self, step: Step, result: StepResult | None = None) -> None:
        """`step` has written its artifacts (`result`: `run_step`'s): count it, release its dependents."""
        seconds = float(result["seconds"]) if result else 0.0
        if result and "started" in result:
            begun = float(result["started"])
            self.timeline.append((step.kind, begun, begun + seconds, tuple(result.get("gpus", ()))))
        self.finished.add(step.key)
        self.ran[step.kind] = self.ran.get(step.kind, 0) + 1
        stage = step.stage
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        if result and "frames" in result:
            mine = self.decoded.setdefault(stage, {"decoded": 0, "cleaned": 0})
            for name, n in result["frames"].items():
                mine[name] = mine.get(name, 0) + int(n)
        for counter, n in step.progress:
            self.progress.add(counter, n)
        if step.kind is StepKind.STITCH:
            self._expand()
        self._settle()
        self._remove_transient(step.deps)

    @property
    def done(self) -> bool:
        return self.plan.complete and "join" in self.finished

    def pending(self, search: bool) -> int:
        """Needed steps not finished yet (search steps, or the others)."""
        return sum(1 for k in self.needed if k not in self.finished and self.plan.steps[k].search == search)

    def write_timeline(self, started: float, ended: float) -> None:
        """Every step's kind, start and end (epoch seconds) and the GPUs it ran with (Ray's ids; none
        in-process or on a CPU) to `run.timeline`, when set."""
        path = self.job.config.run.timeline
        if path:
            steps = [{"kind": k, "start": a, "end": b, "gpus": list(g)} for k, a, b, g in self.timeline]
            save_json(path, {"started": started, "ended": ended, "steps": steps})

    def decode_section(self) -> DecodeSection:
        """The report's "decode" section: frames decoded and film-cleaned by the steps this run ran
        (context frames included), per frame of the video and per stage."""
        frames = max(1, self.job.frames)
        decoded = sum(s["decoded"] for s in self.decoded.values())
        cleaned = sum(s["cleaned"] for s in self.decoded.values())
        return {
            "frames": self.job.frames,
            "decoded": decoded,
            "cleaned": cleaned,
            "decoded_per_frame": round(decoded / frames, 3),
            "cleaned_per_frame": round(cleaned / frames, 3),
            "by_stage": {k: dict(v) for k, v in sorted(self.decoded.items())},
        }

    def summary(self) -> str:
        kinds = sorted(set(self.ran) | set(self.skipped))
        return ", ".join(f"{k} {self.ran.get(k, 0)} run / {self.skipped.get(k, 0)} skipped" for k in kinds)

    # -- internals

    def _expand(self) -> None:

        stitch = self.plan.stitch
        assert stitch is not None

        arrays = load_arrays(stitch.artifacts[0])
        self.plan = build_plan(self.job, store.scan_from_arrays(arrays), person_of_tracks(arrays))
        for counter, total in self.plan.totals.items():
            self.progress.set_total(counter, total)

    def _settle(self) -> None:
        """Mark what is done, find what is still needed; expand the plan once the scan is known."""
        for counter, total in self.plan.totals.items():
            self.progress.set_total(counter, total)
        while True:
            target = "join" if self.plan.complete else "stitch"
            needed: set[str] = set()
            stack = [target]
            while stack:
                key = stack.pop()
                if key in needed or key in self.finished:
                    continue
                step = self.plan.steps[key]
                if key not in self._checked:
                    self._checked.add(key)
                    if step.done():
                        self._skip(step, found=True)
                        continue
                needed.add(key)
                stack.extend(step.deps)
            self.needed = needed
            if not self.plan.complete and "stitch" in self.finished:
                self._expand()
                continue
            break
        # Steps no needed step depends on (scan segments behind a finished stitch) count as done.
        for key, step in self.plan.steps.items():
            if key not in needed and key not in self.finished:
                self._skip(step, found=key not in self._checked and step.done())
        self._remove_transient([k for k, s in self.plan.steps.items() if s.transient])

    def _remove_transient(self, keys: Iterable[str]) -> None:
        """Remove the artifacts of the transient steps among `keys` (clean segments' frames) once the
        plan is complete and every step that reads them has finished: nothing reads them again in
        this run, and a rerun that needs them (a changed late setting) makes them again."""
        if not self.plan.complete:
            return  # the steps after the stitch, which read them too, are not planned yet
        for key in keys:
            step = self.plan.steps.get(key)
            if step is None or not step.transient or key in self._removed or key not in self.finished:
                continue
            if all(u in self.finished for u in self.plan.users(key)):
                self._removed.add(key)
                for path in step.artifacts:
                    Path(path).unlink(missing_ok=True)

    def _skip(self, step: Step, found: bool) -> None:
        self.finished.add(step.key)
        self.skipped[step.kind] = self.skipped.get(step.kind, 0) + 1
        for counter, n in step.progress:
            self.progress.add(counter, n)
        if found:
            log.info("%s: done earlier, skipped", step.label)


def run_step(work: Callable[[], object], retries: int, label: str) -> StepResult:
    """Call a step with one thread per library, retrying unexpected errors; returns its result and
    the seconds it took (the same wrapper in-process and in a Ray worker)."""

    for attempt in range(retries + 1):
        started, wall, before = time.perf_counter(), time.time(), frame_counts()
        try:
            with one_thread():
                result = work()
            after = frame_counts()
            return {
                "result": result,
                "seconds": time.perf_counter() - started,
                "started": wall,
                # frames this attempt decoded and cleaned (a failed attempt's are not counted)
                "frames": {k: after[k] - before[k] for k in after},
            }
        except PipelineError:
            raise
        except Exception as exc:
            if attempt == retries:
                raise JobError(
                    f"{label} failed after {retries + 1} attempt(s): {type(exc).__name__}: {exc}"
                ) from exc
            log.warning(
                "%s failed (%s: %s); retrying (%d/%d)", label, type(exc).__name__, exc, attempt + 1, retries
            )
    raise AssertionError("unreachable")


def run_search_step(model: SearchModel, work: Search, retries: int, label: str) -> StepResult:
    """`run_step` for a search step: `work(model)` with the worker's loaded generator."""
    return run_step(functools.partial(work, model), retries, label)
