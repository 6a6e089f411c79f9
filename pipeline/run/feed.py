"""Keeping the device fed: decode ahead of the device work, and encode beside it.

`prefetched(frames, depth)` reads an iterator (decode, film cleaning) on a thread into a bounded
queue of `depth` items, so the next frames are decoded while the device upscales and composes the
current ones; `ThreadedWriter` hands finished frames to the encoder through a bounded queue and
encodes them on a thread, so the encoder runs beside the next frames' device work. Both bound what
they hold (memory stays flat), and both give the worker's errors back to the caller, as they were
raised (a DecodeError stays the one-line DecodeError naming the file): a prefetched item that
failed raises in the consumer where it would have been read, and a failed encode raises at the next
`write` or at `close`. A failed encoder is never handed another frame: from then on every `write`
and `close` raises that same error at once (`close` aborting the encoder first, so no ffmpeg is left
running and no partial file left behind). Neither waits on a clock: the threads are stopped by queue
items and events.
Decoders, cleaners and encoders release the GIL in their C code, which is where the overlap comes from.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

import numpy as np

T = TypeVar("T")


class _End:
    """The type of `_END`, the last item a queue carries: the source is exhausted."""


_END = _End()


class _Failure:
    """An exception raised by the producer, carried through the queue to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _produce(source: Iterable[T], items: queue.Queue[T | _Failure | _End], stop: threading.Event) -> None:
    try:
        for item in source:
            if stop.is_set():
                return
            items.put(item)
            if stop.is_set():
                return
        items.put(_END)
    except BaseException as exc:  # handed to the consumer, raised there
        items.put(_Failure(exc))


@contextlib.contextmanager
def prefetched(source: Iterable[T], depth: int = 2) -> Iterator[Iterator[T]]:
    """`source`'s items, read `depth` ahead on a thread (depth < 1: read in the caller, no thread).

    Leaving the block stops the thread and waits for it, whether the items were all read or not, so
    the source (a reader whose file the caller closes next) is never read after the block."""
    if depth < 1:
        yield iter(source)
        return
    items: queue.Queue[T | _Failure | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(source, items, stop), name="reel-prefetch", daemon=True)
    thread.start()

    def consume() -> Iterator[T]:
        while True:
            item = items.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    try:
        yield consume()
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting for room, until it has returned
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.1)
        thread.join()


class Encoder(Protocol):
    """What `ThreadedWriter` uses of its writer (a `pipeline.io.writer.VideoWriter`)."""

    @property
    def frames_written(self) -> int: ...

    def open(self) -> None: ...

    def write(self, image: np.ndarray, pts: int) -> None: ...

    def close(self) -> object: ...

    def abort(self) -> None: ...


W = TypeVar("W", bound=Encoder)


class ThreadedWriter(Generic[W]):
    """A `VideoWriter` (or anything with open/write/close/abort) whose `write`s are encoded on a
    thread, at most `depth` frames waiting; `close` and `abort` wait for the thread first.

    The encoder's first error is kept: the thread hands the encoder nothing more (the frames still
    queued are dropped), and every later `write` or `close` raises that same error without reaching
    the encoder; `close` then aborts it (its process stopped, its partial file removed)."""

    def __init__(self, writer: W, depth: int = 4) -> None:
        self.writer = writer
        self._frames: queue.Queue[tuple[np.ndarray, int] | _End] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None  # the encoder's first error (kept: raised again)
        self._thread: threading.Thread | None = None
        self._done = False  # closed or aborted: nothing more is taken

    @property
    def frames_written(self) -> int:
        return int(self.writer.frames_written)

    def open(self) -> None:
        self.writer.open()
        self._thread = threading.Thread(target=self._encode, name="reel-encode", daemon=True)
        self._thread.start()

    def _encode(self) -> None:
        while True:
            item = self._frames.get()
            if isinstance(item, _End):
                return
            if self._error is not None:
                continue  # after a failure: drain (the caller raises it at its next call)
            try:
                self.writer.write(*item)
            except BaseException as exc:
                self._error = exc

    def write(self, image: np.ndarray, pts: int) -> None:
        """Queue a frame (the caller must not change `image` afterwards); raises an earlier failure."""
        if self._error is not None:
            raise self._error
        if self._thread is None or self._done:
            raise RuntimeError("ThreadedWriter.write before open() or after close()")
        self._frames.put((image, pts))

    def _finish(self) -> None:
        if self._thread is not None:
            self._frames.put(_END)  # the thread takes every item, failed or not: this never waits long
            self._thread.join()
            self._thread = None

    def close(self) -> object:
        """Wait for the queued frames and finish the encode; the encoder's error, if it failed
        (raised again on every later call), after aborting it."""
        self._finish()
        if self._error is not None:
            if not self._done:
                self._done = True
                self.writer.abort()
            raise self._error
        try:
            result = self.writer.close()
        except BaseException as exc:  # kept too: a later close raises it again, abort still aborts
            self._error = exc
            raise
        self._done = True
        return result

    def abort(self) -> None:
        """Drop what is queued, stop the encoder and remove its partial file (safe to call again)."""
        self._error = self._error or RuntimeError("aborted")  # the thread skips what is left
        self._finish()
        if not self._done:
            self._done = True
            self.writer.abort()
