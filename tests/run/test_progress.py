"""The progress line: rates and time left per stage, and log lines that never break it (issue 22)."""

from __future__ import annotations

import io
import logging
import threading
from types import SimpleNamespace

import pytest

from pipeline.run import progress
from pipeline.run.progress import ProgressDisplay, format_progress


def test_a_moving_counter_shows_its_rate_and_the_time_left() -> None:
    snap = {"counts": {"frames_scanned": 50, "segments_encoded": 2}, "totals": {"frames_scanned": 250}}
    line = format_progress(snap, 12.0, {"frames_scanned": 2.0, "segments_encoded": 4.0})
    # 50 frames in 10 s: 5/s, 200 left: 40 s
    assert line == "frames scanned 50/250 (5.0/s, 40s left) | segments encoded 2 (0.2/s) | 12s"
    assert format_progress(
        {"counts": {"frames_scanned": 250}, "totals": {"frames_scanned": 250}}, 3725, {}
    ) == ("frames scanned 250/250 | 1h02m")
    assert "(600/s, 1m40s left)" in format_progress(
        {"counts": {"x": 600}, "totals": {"x": 60600}}, 2.0, {"x": 1.0}
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Polls:
    """The display's fetch: counts the polls and can hold the polling thread inside one, so the test
    waits for the display's own steps instead of sleeping and hoping a poll fell in between."""

    def __init__(self, snapshot: dict[str, dict[str, int]]) -> None:
        self.snapshot = snapshot
        self.count = 0
        self.open = threading.Event()
        self.open.set()
        self.waiting = threading.Event()  # a poll is held at the gate
        self._changed = threading.Condition()

    def __call__(self) -> dict[str, dict[str, int]]:
        if threading.current_thread().name == "reel-progress" and not self.open.is_set():
            self.waiting.set()
            self.open.wait()
        with self._changed:
            self.count += 1
            self._changed.notify_all()
        return {k: dict(v) for k, v in self.snapshot.items()}

    def wait_for_a_poll_after(self, n: int) -> None:
        """Until a poll that fetched after the `n`-th has been drawn: the thread has begun the one
        after it (polls run one after another on the one thread)."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.count >= n + 2, timeout=120), "the display stopped"


def test_a_log_line_clears_the_live_line_first_and_the_line_is_redrawn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]  # the display's clock: seconds pass when the test says so
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    term = _Terminal()
    handler = logging.StreamHandler(term)
    root = logging.getLogger()
    root.addHandler(handler)
    polls = _Polls({"counts": {"frames_scanned": 0}, "totals": {"frames_scanned": 10}})
    try:
        with ProgressDisplay(polls, interval=0.01, stream=term):
            polls.snapshot["counts"]["frames_scanned"] = 4
            polls.wait_for_a_poll_after(polls.count)  # the display has seen the counter move
            clock[0] += 2.0  # ... and it moved for two seconds: a rate is shown
            polls.wait_for_a_poll_after(polls.count)
            polls.open.clear()  # the polling thread waits while the warning is written
            polls.waiting.wait(timeout=120)
            logging.getLogger("pipeline.test").warning("a warning mid-run")
            seen = polls.count
            polls.open.set()
            polls.wait_for_a_poll_after(seen)  # redrawn after the warning
    finally:
        root.removeHandler(handler)
    text = term.getvalue()
    before, _, after = text.partition("a warning mid-run")
    assert before.endswith("\r\033[K")  # the bar was cleared, the warning starts a clean line
    assert "frames scanned 4/10 (" in before  # the live line had its rate before the warning
    assert "frames scanned 4/10 (" in after and "left)" in after  # redrawn, with a rate and time left
    assert not any(f.__class__.__name__ == "_ClearLine" for f in handler.filters)  # removed at close
