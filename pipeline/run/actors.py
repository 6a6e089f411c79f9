"""Ray building blocks for the executor: model-holding actors, and a bounded work queue over them.

`ModelActor` loads a model once (the face generator, on whatever device its node has) and then runs
module-level stage functions with it, one whole work unit per call, so warm starts stay in order
inside a unit. `WorkQueue` is the single place where work enters Ray: tasks and actor calls are
admitted only while fewer than `max_in_flight` are pending (the `ray.wait` backpressure pattern),
actor calls go to the least-loaded live actor (of those, the one given the fewest calls), and every
completion is handed, with the tag it was queued with, to the queue's one `on_done` handler, which
may queue more work (so stages overlap naturally: a finished scan queues crops, a finished search
queues a segment...). What waits in the queue is data (`Call`: a label, the remote function or none
for an actor call, its arguments and a tag), never a closure.

Faults: tasks are retried by Ray (`max_retries`) when their worker dies; actors are restarted
(`max_restarts`) and the interrupted call is retried on the restarted actor (`max_task_retries`).
Stage functions are deterministic, so a retried unit gives the same bytes. A unit that still fails
raises `JobError` naming it (and the original error); the remaining work is cancelled.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, ParamSpec, Protocol, TypedDict, TypeVar

from pipeline.errors import JobError, PipelineError

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle

log = logging.getLogger(__name__)

R = TypeVar("R")  # what the queue's tasks and actor calls return
T = TypeVar("T")  # the tags work is queued with


class ModelActor:
    """Loads `loader(*args)` once; `run(fn, ...)` calls `fn(model, ...)` with it."""

    def __init__(self, loader: Callable[..., object], *args: object) -> None:
        started = time.perf_counter()
        self.model = loader(*args)
        self.load_seconds = time.perf_counter() - started

    def run(self, fn: Callable[..., R], *args: object, **kwargs: object) -> R:
        return fn(self.model, *args, **kwargs)

    def where(self) -> dict[str, str | int]:
        """Node and process this actor lives in (for logs and tests)."""
        import os

        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


class ActorOptions(TypedDict, total=False):
    """The Ray actor options the executor sets (`ActorClass.options(**...)`)."""

    max_restarts: int
    max_task_retries: int
    num_cpus: float
    max_concurrency: int
    num_gpus: float
    resources: dict[str, float]
    scheduling_strategy: object  # a placement-group strategy (pipeline.run.lanes)


def search_actor_options(
    *,
    num_gpus_per_search: float,
    search_resource: str | None,
    cluster_gpus: float,
    max_retries: int,
) -> ActorOptions:
    """Ray options for a search actor: a GPU share when the cluster has GPUs, else one CPU."""
    options: ActorOptions = {
        "max_restarts": max_retries,
        "max_task_retries": max_retries,
        "num_cpus": 1,
        # two calls at once (WorkQueue.calls_per_actor): the queued unit reads its crops, and the finished
        # one measures and writes its results, while the running one searches (SearchModel.lock)
        "max_concurrency": 2,
    }
    if cluster_gpus > 0 and num_gpus_per_search > 0:
        options["num_gpus"] = num_gpus_per_search
        # The GPU does the work; a fractional CPU lets several actors share a small node.
        options["num_cpus"] = 0.5
    if search_resource:
        options["resources"] = {search_resource: 1}
    return options


def default_actor_count(
    requested: int | None, *, cluster_gpus: float, num_gpus_per_search: float, cluster_resource: float
) -> int:
    """Actors to start: as asked, else one per GPU share (or per unit of the custom resource), else 1."""
    if requested is not None:
        if requested < 1:
            raise JobError(f"run.search_actors = {requested}: must be at least 1")
        return requested
    if cluster_gpus > 0 and num_gpus_per_search > 0:
        return max(1, int(cluster_gpus / num_gpus_per_search + 1e-9))
    if cluster_resource > 0:
        return max(1, int(cluster_resource))
    return 1


class RemoteTask(Protocol[R]):
    """A Ray remote function (`ray.remote(fn)`, or its `.options(...)`) whose calls return R."""

    @property
    def remote(self) -> Callable[..., ObjectRef[R]]: ...


class _ActorRun(Protocol[R]):
    def remote(self, *args: object) -> ObjectRef[R]: ...


class RunsCalls(Protocol[R]):
    """What the queue uses of a `ModelActor` handle: `actor.run.remote(fn, *args)`."""

    @property
    def run(self) -> _ActorRun[R]: ...


@dataclass(frozen=True)
class Call(Generic[T, R]):
    """One piece of queued work: a task, `remote.remote(*args)`, or, with `remote` None, an actor
    call, `actor.run.remote(*args)` on the least-loaded live actor. `tag` is handed back with its
    result (`WorkQueue.on_done`)."""

    label: str  # names the unit in errors and logs
    args: tuple[object, ...]
    remote: RemoteTask[R] | None = None  # a Ray remote function; None: an actor call
    tag: T | None = None


@dataclass
class _Pending(Generic[T, R]):
    call: Call[T, R]
    actor: int | None = None  # index of the actor running it


def _ignore(tag: object, result: object) -> None:
    return None


@dataclass
class WorkQueue(Generic[T, R]):
    """Bounded in-flight Ray work; `drain()` runs until everything has finished, handing each result
    to `on_done(tag, result)`."""

    max_in_flight: int
    actors: Sequence[ActorHandle[ModelActor]] = ()
    on_done: Callable[[T | None, R], None] = _ignore
    calls_per_actor: int = 2  # one running + one queued keeps an actor busy between units
    _in_flight: dict[ObjectRef[R], _Pending[T, R]] = field(default_factory=dict)
    _waiting: collections.deque[Call[T, R]] = field(default_factory=collections.deque)
    _waiting_actor: collections.deque[Call[T, R]] = field(default_factory=collections.deque)
    _actor_load: list[int] = field(default_factory=list)
    _actor_given: list[int] = field(default_factory=list)  # calls each actor has been given
    _retired: set[int] = field(default_factory=set)  # actors that take no more calls
    completed: int = 0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise JobError(f"max_in_flight = {self.max_in_flight}: must be at least 1")
        self._actor_load = [0] * len(self.actors)
        self._actor_given = [0] * len(self.actors)

    def set_actors(self, actors: Sequence[ActorHandle[ModelActor]]) -> None:
        """Use these actors for actor calls from now on (set before the first actor call)."""
        if any(p.actor is not None for p in self._in_flight.values()):
            raise JobError("cannot replace actors while actor calls are running")
        self.actors = list(actors)
        self._actor_load = [0] * len(self.actors)
        self._actor_given = [0] * len(self.actors)
        self._retired = set()

    def retire_idle(self, keep: int) -> list[ActorHandle[ModelActor]]:
        """Stop giving calls to idle actors beyond `keep` live ones; returns them (to be killed, which
        gives their CPUs or GPUs back to tasks while the other actors finish)."""
        live = [i for i in range(len(self.actors)) if i not in self._retired]
        idle = [i for i in live if self._actor_load[i] == 0]
        out = []
        for i in idle[: max(0, len(live) - keep)]:
            self._retired.add(i)
            out.append(self.actors[i])
        return out

    @property
    def live_actors(self) -> int:
        return len(self.actors) - len(self._retired)

    @property
    def actor_calls(self) -> int:
        """Actor calls queued or running."""
        return len(self._waiting_actor) + sum(1 for p in self._in_flight.values() if p.actor is not None)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def submit(self, label: str, remote: RemoteTask[R], *args: object, tag: T | None = None) -> None:
        """Queue a task, `remote.remote(*args)` (submitted only when there is room)."""
        self._waiting.append(Call(label, args, remote, tag))
        self._admit()

    def submit_actor(self, label: str, *args: object, tag: T | None = None) -> None:
        """Queue an actor call, `actor.run.remote(*args)`; the least-loaded live actor takes it."""
        if not self.actors:
            raise JobError(f"{label}: no actors to run it")
        self._waiting_actor.append(Call(label, args, None, tag))
        self._admit()

    def _admit(self) -> None:
        while self._waiting_actor:
            live = [i for i in range(len(self.actors)) if i not in self._retired]
            if not live:
                raise JobError(f"{self._waiting_actor[0].label}: no actors to run it")
            # the least loaded; among those, the one given the fewest calls (units alternate actors)
            index = min(live, key=lambda i: (self._actor_load[i], self._actor_given[i], i))
            if self._actor_load[index] >= self.calls_per_actor:
                break
            call = self._waiting_actor.popleft()
            actor: RunsCalls[R] = self.actors[index]  # Ray types an actor's methods as Never
            self._in_flight[actor.run.remote(*call.args)] = _Pending(call, index)
            self._actor_load[index] += 1
            self._actor_given[index] += 1
        tasks = sum(1 for p in self._in_flight.values() if p.actor is None)
        while self._waiting and tasks < self.max_in_flight:
            call = self._waiting.popleft()
            assert call.remote is not None  # queued by submit
            self._in_flight[call.remote.remote(*call.args)] = _Pending(call)
            tasks += 1

    def drain(self, timeout: float | None = None) -> None:
        """Wait for every queued and running item (and whatever their callbacks queue)."""
        import ray

        deadline = None if timeout is None else time.monotonic() + timeout
        while self._in_flight or self._waiting or self._waiting_actor:
            self._admit()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=remaining)
            if not ready:
                self.cancel()
                raise JobError(f"timed out after {timeout:.0f} s with {self.in_flight} unit(s) running")
            for ref in ready:
                pending = self._in_flight.pop(ref)
                if pending.actor is not None:
                    self._actor_load[pending.actor] -= 1
                try:
                    result = ray.get(ref)
                except Exception as exc:
                    self.cancel()
                    raise unit_error(pending.call.label, exc) from exc
                self.completed += 1
                try:
                    self.on_done(pending.call.tag, result)
                except BaseException:
                    self.cancel()
                    raise

    def cancel(self) -> None:
        """Drop queued work and cancel running tasks (actor calls finish; their results are ignored)."""
        import ray

        self._waiting.clear()
        self._waiting_actor.clear()
        for ref, pending in list(self._in_flight.items()):
            if pending.actor is None:
                try:
                    ray.cancel(ref, force=True)
                except Exception as exc:  # already finished or lost: nothing to cancel
                    log.debug("cancel %s: %s", pending.call.label, exc)
        self._in_flight.clear()
        self._actor_load = [0] * len(self.actors)


class RemotePipelineError(Exception):
    """A PipelineError raised in a worker, in a form that survives pickling.

    PipelineError subclasses take structured constructor arguments (InputError(path, problem)), which
    Ray cannot rebuild from a pickled exception; this carries the class and message instead, and
    `unit_error` turns it back into the original class on the driver.
    """

    def __init__(self, module: str, qualname: str, message: str) -> None:
        super().__init__(module, qualname, message)
        self.module, self.qualname, self.message = module, qualname, message

    def __str__(self) -> str:
        return self.message

    def rebuild(self) -> PipelineError:
        import importlib

        try:
            cls: object = importlib.import_module(self.module)
            for part in self.qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError):
            cls = JobError
        if not (isinstance(cls, type) and issubclass(cls, PipelineError)):
            cls = JobError
        error = cls.__new__(cls)
        Exception.__init__(error, self.message)
        return error


P = ParamSpec("P")


def portable_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a function that runs in Ray workers so its PipelineErrors reach the driver intact."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            raise RemotePipelineError(type(exc).__module__, type(exc).__qualname__, str(exc)) from None

    return wrapper


def unit_error(label: str, exc: BaseException) -> PipelineError:
    """The error a failed unit raises on the driver.

    An expected problem (a PipelineError raised by the stage: a damaged input, a bad checkpoint) comes
    back as itself, since its message already names the file; anything else (a bug, a worker that kept
    dying) becomes a JobError naming the unit.
    """
    import ray.exceptions

    cause: BaseException = exc
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
    if isinstance(cause, RemotePipelineError):
        log.info("%s failed: %s", label, cause)
        return cause.rebuild()
    if isinstance(cause, PipelineError):
        detail = str(cause)
    elif isinstance(cause, ray.exceptions.RayError):
        detail = f"{type(cause).__name__} (a worker or actor died and the retries were used up)"
    else:
        detail = f"{type(cause).__name__}: {cause}"
    return JobError(f"{label} failed: {detail}")
