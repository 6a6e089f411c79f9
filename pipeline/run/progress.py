"""One progress display for a whole job, fed by workers on any node.

Workers hold a `ProgressReporter` (a handle to one small `ProgressActor`, picklable, so it travels with
a task to any node) and add to named counters as they go; updates are batched in time so a frame
loop costs nothing. The driver polls the actor and draws one line on stderr: a live line on a
terminal, a log line every few seconds otherwise (logs of Ray jobs are files).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TextIO, cast

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle

log = logging.getLogger(__name__)

# The counters every restore reports, in display order, with their display names.
FRAMES_SCANNED = "frames_scanned"
FACE_FRAMES_SEARCHED = "face_frames_searched"
SEGMENTS_ENCODED = "segments_encoded"
LABELS = {
    FRAMES_SCANNED: "frames scanned",
    FACE_FRAMES_SEARCHED: "face-frames searched",
    SEGMENTS_ENCODED: "segments encoded",
}


class Progress:
    """Counters and totals; the state inside the actor (and usable directly in one process)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.totals: dict[str, int] = {}

    def add(self, counter: str, n: int = 1) -> None:
        self.counts[counter] = self.counts.get(counter, 0) + int(n)

    def add_many(self, counts: Mapping[str, int]) -> None:
        for counter, n in counts.items():
            self.add(counter, n)

    def set_total(self, counter: str, total: int) -> None:
        self.totals[counter] = int(total)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {"counts": dict(self.counts), "totals": dict(self.totals)}


def format_progress(
    snapshot: Mapping[str, Mapping[str, int]],
    elapsed: float,
    since: Mapping[str, float] | None = None,
) -> str:
    """`frames scanned 120/300 (24/s, 8s left) | face-frames searched 40/96 | 12s`.

    `since`: seconds into the job at which each counter first moved; with it, a counter that is
    moving (for a second or more) shows its rate and, with a total, the time left at that rate.
    """
    counts, totals = snapshot.get("counts", {}), snapshot.get("totals", {})
    names = list(LABELS) + sorted((set(counts) | set(totals)) - set(LABELS))
    parts = []
    for name in names:
        if name not in counts and name not in totals:
            continue
        done = counts.get(name, 0)
        total = totals.get(name)
        label = LABELS.get(name, name.replace("_", " "))
        text = f"{label} {done}/{total}" if total is not None else f"{label} {done}"
        start = (since or {}).get(name)
        if start is not None and done > 0 and elapsed - start >= 1.0 and (total is None or done < total):
            rate = done / (elapsed - start)
            text += f" ({_rate(rate)}" + (f", {_duration((total - done) / rate)} left)" if total else ")")
        parts.append(text)
    parts.append(_duration(elapsed))
    return " | ".join(parts)


def _rate(per_second: float) -> str:
    return f"{per_second:.1f}/s" if per_second < 10 else f"{per_second:.0f}/s"


def _duration(seconds: float) -> str:
    """`12s`, `4m05s`, `2h03m`."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class _RemoteCall(Protocol):
    def remote(self, *args: object) -> ObjectRef[None]: ...


class ProgressActor(Protocol):
    """What a reporter calls on the `Progress` actor (`make_progress_actor`)."""

    @property
    def add_many(self) -> _RemoteCall: ...

    @property
    def set_total(self) -> _RemoteCall: ...


class ProgressReporter:
    """Worker-side handle: `add()` is cheap; updates reach the actor at most every `interval` s."""

    def __init__(self, actor: ProgressActor | None, interval: float = 0.5) -> None:
        self._actor = actor
        self._interval = interval
        self._pending: dict[str, int] = {}
        self._last = 0.0
        self._sent: ObjectRef[None] | None = None  # the last update sent

    def __reduce__(self) -> tuple[type[ProgressReporter], tuple[ProgressActor | None, float]]:
        return (ProgressReporter, (self._actor, self._interval))  # pending counts stay behind

    def add(self, counter: str, n: int = 1) -> None:
        self._pending[counter] = self._pending.get(counter, 0) + int(n)
        if time.monotonic() - self._last >= self._interval:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        """Send pending counts; `wait=True` (at the end of a task) returns once the actor has them all."""
        if self._pending and self._actor is not None:
            # Fire and forget inside loops: progress must never slow down the work. An actor runs one
            # caller's calls in order, so waiting for the last one waits for them all.
            self._sent = self._actor.add_many.remote(self._pending)
        self._pending = {}
        self._last = time.monotonic()
        if wait and self._sent is not None:
            import ray

            try:
                ray.get(self._sent, timeout=10)
            except Exception as exc:  # a lost progress actor must never fail the work
                log.debug("progress update lost: %s", exc)
            self._sent = None

    def set_total(self, counter: str, total: int) -> None:
        if self._actor is not None:
            self._actor.set_total.remote(counter, total)


def make_progress_actor() -> ActorHandle[Progress]:
    """A Progress in a Ray actor that takes no CPU (it only adds numbers)."""
    import ray

    # Ray types `ActorClass.remote()` as a handle or the class itself: it is a handle
    return cast("ActorHandle[Progress]", ray.remote(num_cpus=0, max_restarts=-1)(Progress).remote())


class _ClearLine(logging.Filter):
    """A logging filter that lets every record through after clearing the live progress line."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def filter(self, record: logging.LogRecord) -> bool:
        with contextlib.suppress(OSError, ValueError):  # a closed terminal: the record still goes out
            self._stream.write("\r\033[K")
        return True


class ProgressDisplay:
    """Polls `fetch()` on a thread and draws one line; `close()` draws the final state."""

    def __init__(
        self,
        fetch: Callable[[], Mapping[str, Mapping[str, int]]],
        *,
        enabled: bool = True,
        interval: float = 0.5,
        log_every: float = 10.0,
        stream: TextIO | None = None,
    ) -> None:
        self._fetch = fetch
        self._stream = stream if stream is not None else sys.stderr
        self._live = enabled and hasattr(self._stream, "isatty") and self._stream.isatty()
        self._enabled = enabled
        self._interval = interval
        self._log_every = log_every
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: Mapping[str, Mapping[str, int]] = {"counts": {}, "totals": {}}
        self._since: dict[str, float] = {}
        self._clear = _ClearLine(self._stream)

    def __enter__(self) -> ProgressDisplay:
        if self._live:  # a log line first clears the live line, which is redrawn at the next poll
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._clear)
        if self._enabled:
            self._thread = threading.Thread(target=self._loop, name="reel-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _poll(self) -> str:
        try:
            self.last = self._fetch()
        except Exception as exc:  # a lost progress actor must not fail the job
            log.debug("progress poll failed: %s", exc)
        elapsed = time.monotonic() - self._start
        for name, done in self.last.get("counts", {}).items():
            if done > 0 and name not in self._since:
                # first seen moving: the rate counts from the poll before (the work began in between)
                self._since[name] = max(0.0, elapsed - self._interval)
        return format_progress(self.last, elapsed, self._since)

    def _loop(self) -> None:
        last_log = time.monotonic()
        while not self._stop.wait(self._interval):
            line = self._poll()
            if self._live:
                self._stream.write("\r\033[K" + line)
                self._stream.flush()
            elif time.monotonic() - last_log >= self._log_every:
                log.info("progress: %s", line)
                last_log = time.monotonic()

    def close(self) -> str:
        """Stop polling; returns (and shows, when enabled) the final line."""
        self._stop.set()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._clear)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        line = self._poll()
        if self._live:
            self._stream.write("\r\033[K" + line + "\n")
            self._stream.flush()
        elif self._enabled:
            log.info("progress: %s", line)
        self._enabled = False
        return line
