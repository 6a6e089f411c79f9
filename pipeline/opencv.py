"""OpenCV, imported quietly: its own log lines stay off the user's terminal.

OpenCV 5's dnn engine prints `[ WARN:0@…] … setPreferableTarget …` each time a network is made
(per worker, per identity measurement), which buries our one-line messages. Its level is set to
errors only, unless the user chose one with OPENCV_LOG_LEVEL.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def cv2_quiet() -> Any:
    """The cv2 module with OpenCV's logging at ERROR (or at the user's OPENCV_LOG_LEVEL)."""
    import cv2

    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2
