"""The progress line: rates and time left per stage, and log lines that never break it (issue 22)."""

from __future__ import annotations

import io
import logging
import time

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


def test_a_log_line_clears_the_live_line_first_and_the_line_is_redrawn() -> None:
    term = _Terminal()
    handler = logging.StreamHandler(term)
    root = logging.getLogger()
    root.addHandler(handler)
    counts = {"counts": {"frames_scanned": 0}, "totals": {"frames_scanned": 10}}
    try:
        with ProgressDisplay(lambda: counts, interval=0.05, stream=term):
            time.sleep(0.1)
            counts["counts"]["frames_scanned"] = 4
            time.sleep(1.1)  # a rate is shown once a counter has moved for a second
            logging.getLogger("pipeline.test").warning("a warning mid-run")
            time.sleep(0.15)
    finally:
        root.removeHandler(handler)
    text = term.getvalue()
    before, _, after = text.partition("a warning mid-run")
    assert before.endswith("\r\033[K")  # the bar was cleared, the warning starts a clean line
    assert "frames scanned 4/10 (" in after and "left)" in after  # redrawn, with a rate and time left
    assert not any(f.__class__.__name__ == "_ClearLine" for f in handler.filters)  # removed at close
