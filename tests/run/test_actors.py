"""The work queue and model actors on a real embedded Ray (2 CPUs): backpressure, retries, errors."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import DecodeError, JobError
from pipeline.run.actors import (
    ModelActor,
    WorkQueue,
    default_actor_count,
    portable_errors,
    search_actor_options,
)
from pipeline.run.progress import (
    FRAMES_SCANNED,
    SEGMENTS_ENCODED,
    ProgressDisplay,
    ProgressReporter,
    format_progress,
    make_progress_actor,
)

ray = pytest.importorskip("ray")


pytestmark = pytest.mark.usefixtures("embedded_ray")


class Gauge:
    """Counts how many tasks run at the same time (an async actor: its calls wait together)."""

    def __init__(self) -> None:
        import asyncio

        self.now = 0
        self.peak = 0
        self.changed = asyncio.Condition()

    async def enter(self) -> None:
        async with self.changed:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.changed.notify_all()

    async def leave(self) -> None:
        self.now -= 1

    async def until_peak(self, n: int) -> int:
        """Returns once `n` tasks have been inside together (or after a minute, with the peak)."""
        import asyncio

        async with self.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait_for(lambda: self.peak >= n), timeout=60)
            return self.peak

    async def get_peak(self) -> int:
        return self.peak


@ray.remote(num_cpus=0.5)
def _busy(gauge: Any, x: int, together: int) -> int:
    """Stays inside until `together` tasks have been inside at once: the work in flight is seen
    whatever the machine's speed (a fixed sleep can end before the next task has started)."""
    ray.get(gauge.enter.remote())
    ray.get(gauge.until_peak.remote(together))
    ray.get(gauge.leave.remote())
    return x * x


def test_backpressure_bounds_work_in_flight() -> None:
    gauge = ray.remote(Gauge).remote()
    results: dict[int, int] = {}
    queue = WorkQueue(max_in_flight=1, on_done=results.__setitem__)
    for i in range(4):
        queue.submit(f"unit {i}", _busy, gauge, i, 1, tag=i)
    assert queue.in_flight == 1  # the rest wait in the driver, not in Ray
    queue.drain(timeout=120)
    assert results == {0: 0, 1: 1, 2: 4, 3: 9}
    # four 0.5-CPU tasks could run together on 2 CPUs without the bound
    assert ray.get(gauge.get_peak.remote()) == 1

    gauge = ray.remote(Gauge).remote()
    queue = WorkQueue(max_in_flight=3)
    for i in range(6):
        queue.submit(f"unit {i}", _busy, gauge, i, 3)
    queue.drain(timeout=120)
    assert ray.get(gauge.get_peak.remote()) == 3


@ray.remote(num_cpus=0.5)
def _double(x: int) -> int:
    return 2 * x


def test_callbacks_chain_stages() -> None:
    out: list[int] = []

    def done(stage: int, r: int) -> None:
        if stage == 1:
            queue.submit(f"stage 2 of {r}", _double, r, tag=2)
        else:
            out.append(r)

    queue = WorkQueue(max_in_flight=2, on_done=done)
    for i in range(5):
        queue.submit(f"stage 1 of {i}", _double, i, tag=1)
    queue.drain(timeout=60)
    assert sorted(out) == [0, 4, 8, 12, 16]
    assert queue.completed == 10


@ray.remote(num_cpus=0.5, max_retries=0)
def _broken(x: int) -> int:
    raise ValueError(f"bad frame {x}")


def test_a_failing_unit_fails_the_job_naming_it() -> None:
    queue = WorkQueue(max_in_flight=2)
    queue.submit("segment 3 (frames 96-144)", _broken, 3)
    queue.submit("segment 4 (frames 144-192)", _double, 4)
    with pytest.raises(JobError, match=r"segment 3 \(frames 96-144\) failed: ValueError: bad frame 3"):
        queue.drain(timeout=60)
    assert queue.in_flight == 0


@ray.remote(num_cpus=0.5, max_retries=0)
@portable_errors
def _damaged(path: str) -> None:
    raise DecodeError(path, "frame 17 cannot be decoded")


def test_an_input_error_in_a_worker_reaches_the_driver_as_itself() -> None:
    queue = WorkQueue(max_in_flight=1)
    queue.submit("segment 2 (frames 34-51)", _damaged, "/media/reel.mkv")
    with pytest.raises(DecodeError) as info:
        queue.drain(timeout=60)
    assert str(info.value) == "/media/reel.mkv: frame 17 cannot be decoded"
    assert info.value.exit_code == 2


def _load(value: int) -> dict[str, int]:
    return {"offset": value, "pid": os.getpid()}


def _add_after_a_kill(model: dict[str, int], x: int, marker: str) -> tuple[int, int]:
    """The first attempt marks that it started, then never ends (it is killed mid-unit, however long
    the kill takes to arrive); the retry finds the mark and returns."""
    if not Path(marker).exists():
        Path(marker).touch()
        threading.Event().wait()
    return model["offset"] + x, os.getpid()


def _die(model: dict[str, int], x: int) -> int:
    os._exit(1)


def test_a_killed_actor_restarts_and_its_unit_is_retried(tmp_path: Path) -> None:
    options = search_actor_options(
        num_gpus_per_search=1.0, search_resource=None, cluster_gpus=0, max_retries=2
    )
    assert "num_gpus" not in options  # no GPUs here: the same actor runs on a CPU
    actor = ray.remote(ModelActor).options(**options).remote(_load, 100)
    first_pid = ray.get(actor.where.remote())["pid"]
    marker = tmp_path / "started"
    results: list[tuple[int, int]] = []
    queue = WorkQueue(max_in_flight=1, actors=[actor], on_done=lambda tag, r: results.append(r))
    queue.submit_actor("search track 1 frames 0-8", _add_after_a_kill, 5, str(marker))
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the unit never started"
    ray.kill(actor, no_restart=False)  # mid-unit: the first attempt cannot have finished
    queue.drain(timeout=60)
    assert results[0][0] == 105  # the model was loaded again and the unit redone
    assert results[0][1] != first_pid


def test_an_actor_that_keeps_dying_fails_the_job_naming_the_unit() -> None:
    options = search_actor_options(
        num_gpus_per_search=1.0, search_resource=None, cluster_gpus=0, max_retries=1
    )
    actor = ray.remote(ModelActor).options(**options).remote(_load, 0)
    queue = WorkQueue(max_in_flight=1, actors=[actor])
    queue.submit_actor("search track 7 frames 24-48", _die, 1)
    with pytest.raises(JobError, match=r"search track 7 frames 24-48 failed: .*retries were used up"):
        queue.drain(timeout=120)


class _NamedActor:
    """Stands in for an actor handle: `run.remote(...)` records which actor took the call (no Ray)."""

    def __init__(self, name: str, started: list[str]) -> None:
        self.name, self.started = name, started
        self.run = self

    def remote(self, *args: Any) -> tuple[str, tuple[Any, ...]]:
        self.started.append(self.name)
        return self.name, args


def test_idle_actors_retire_and_take_no_more_calls() -> None:
    """An idle actor beyond the search work that can run gives its resources back (a CPU-only machine
    would otherwise starve the tasks a search waits for); the live ones keep taking calls."""
    started: list[str] = []
    a, b, c = (_NamedActor(name, started) for name in "abc")
    queue = WorkQueue(max_in_flight=2, actors=[a, b, c])
    queue.submit_actor("busy", "unit 1")
    assert started == ["a"]
    assert queue.retire_idle(keep=2) == [b]  # "a" is busy; one idle actor is kept
    assert (queue.live_actors, queue.actor_calls) == (2, 1)
    queue.submit_actor("next", "unit 2")
    assert started == ["a", "c"]  # never the retired one
    assert queue.retire_idle(keep=0) == []  # both are busy


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: Any) -> str:
        return self.name


def test_calls_one_at_a_time_alternate_between_idle_actors() -> None:
    """With every actor idle, the next call goes to the one given the fewest so far: a search that
    finishes before the next unit is ready still leaves the second actor (its GPU) its share."""
    actors = [ray.remote(_Named).options(num_cpus=0).remote(name) for name in "ab"]
    took: list[str] = []
    queue = WorkQueue(max_in_flight=1, actors=actors, on_done=lambda tag, name: took.append(name))
    for i in range(4):
        queue.submit_actor(f"unit {i}", i)
        queue.drain(timeout=120)  # finished before the next is submitted
    assert took == ["a", "b", "a", "b"]


def test_actor_sizing() -> None:
    assert default_actor_count(None, cluster_gpus=4, num_gpus_per_search=0.5, cluster_resource=0) == 8
    assert default_actor_count(None, cluster_gpus=0, num_gpus_per_search=1.0, cluster_resource=0) == 1
    assert default_actor_count(None, cluster_gpus=0, num_gpus_per_search=1.0, cluster_resource=3) == 3
    assert default_actor_count(2, cluster_gpus=8, num_gpus_per_search=1.0, cluster_resource=0) == 2
    with pytest.raises(JobError):
        default_actor_count(0, cluster_gpus=0, num_gpus_per_search=1.0, cluster_resource=0)
    gpu = search_actor_options(
        num_gpus_per_search=0.25, search_resource="a100", cluster_gpus=2, max_retries=3
    )
    assert gpu["num_gpus"] == 0.25 and gpu["resources"] == {"a100": 1} and gpu["max_task_retries"] == 3


@ray.remote(num_cpus=0.5)
def _scan(reporter: ProgressReporter, frames: int) -> None:
    for _ in range(frames):
        reporter.add(FRAMES_SCANNED)
    reporter.flush(wait=True)


def test_progress_from_workers_reaches_one_display() -> None:
    actor = make_progress_actor()
    reporter = ProgressReporter(actor)
    reporter.set_total(FRAMES_SCANNED, 30)
    ray.get([_scan.remote(reporter, n) for n in (10, 20)])
    reporter.add(SEGMENTS_ENCODED, 2)
    reporter.flush(wait=True)
    display = ProgressDisplay(lambda: ray.get(actor.snapshot.remote()), enabled=False)
    line = display.close()
    assert line.startswith("frames scanned 30/30 | segments encoded 2 | ")
    assert format_progress({"counts": {"x_y": 1}}, 3.0) == "x y 1 | 3s"
