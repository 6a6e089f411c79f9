#!/usr/bin/env python
"""Compose's torch code against today's numpy/OpenCV code, and batched learned upscaling, on this CPU.

Times (ms, median of `--repeats` after a warm-up; one torch and one OpenCV thread unless --threads):
  paste_1080p_ms      `paste_face` of a 1024-px face into a 1080p frame (tone and grain matched)
  project_1080p_ms    the consistency projection of that face's region (12 steps at most)
  compose_frame_ms    `compose_frame` of the tests' 160x90 astronaut frame with one face, x2
  sr_batch{1,4}_fps   a Real-ESRGAN compact x4 network (random weights, 32 features, 8 convs) on
                      4 frames of 320x180, one frame per forward pass vs four
each as "torch" and "numpy" (the reference kept in tests/frame/numpy_reference.py). The last line is JSON.

    PYTHONPATH=. python scripts/bench_torch_cpu.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _face_case() -> tuple[np.ndarray, Any]:
    from pipeline.frame.compose import FacePaste

    rng = np.random.default_rng(0)
    w, h, size = 1920, 1080, 1024
    frame = rng.random((h, w, 3), dtype=np.float32)
    face = rng.random((size, size, 3), dtype=np.float32)
    side = h / 3
    affine = np.array([[side / size, 0, w / 2 - side / 2], [0, side / size, h / 3]], np.float64)
    return frame, FacePaste(face, affine, seed=1)


def paste_and_project(repeats: int) -> dict[str, float]:
    import torch

    from pipeline.frame import compose as C
    from pipeline.frame.tensor_ops import as_tensor
    from tests.frame import numpy_reference as ref

    frame, paste = _face_case()
    out: dict[str, float] = {}
    tensor = as_tensor(frame, "cpu")
    out["paste_1080p_ms_torch"] = _ms(lambda: C.paste_face(tensor, paste), repeats)
    out["paste_1080p_ms_numpy"] = _ms(lambda: ref.paste_face(frame.copy(), paste), repeats)
    placed = ref.paste_face(frame.copy(), paste)
    assert placed is not None
    lr = frame[::2, ::2].astype(np.float64)  # footage the region must agree with (x2)
    region = C._face_region(placed, 2.0, lr.shape[:2], frame.shape[:2])
    assert region is not None
    args = (region.win, region.hr_mask, region.lr_weight > 0.25, 12, 50.0, 0.3, 30.0)
    (y0, y1), (x0, x1) = region.win.ly, region.win.lx
    (a0, a1), (b0, b1) = region.win.hy, region.win.hx
    src = torch.as_tensor(lr[y0:y1, x0:x1], dtype=torch.float32)
    from pipeline.frame.project import project_tensor

    out["project_1080p_ms_torch"] = _ms(lambda: project_tensor(tensor[a0:a1, b0:b1], src, *args), repeats)
    out["project_1080p_ms_numpy"] = _ms(lambda: ref.project_region(frame.copy(), lr, *args), repeats)
    return out


def compose(repeats: int) -> dict[str, float]:
    from pipeline.config import Config
    from pipeline.frame.compose import compose_frame
    from tests.frame import numpy_reference as ref
    from tests.frame.test_compose import _frame_and_placement

    frame, placements, _ = _frame_and_placement(128)
    cfg = Config()
    return {
        "compose_frame_ms_torch": _ms(lambda: compose_frame(frame, None, placements, True, cfg), repeats),  # type: ignore[arg-type]
        "compose_frame_ms_numpy": _ms(lambda: ref.compose_frame(frame, None, placements, True, cfg), repeats),  # type: ignore[arg-type]
    }


def sr(repeats: int) -> dict[str, float]:
    import torch

    from pipeline.frame.sr import LearnedUpscaler, import_spandrel, load_descriptor

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    frames = list(np.random.default_rng(0).integers(0, 256, (4, 180, 320, 3), dtype=np.uint8))
    out = {}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "compact.pth"
        torch.save(Compact(num_feat=32, num_conv=8, upscale=4).state_dict(), path)
        for batch in (1, 4):
            up = LearnedUpscaler(load_descriptor(path), scale=4, tile=256, overlap=16, batch=batch)
            out[f"sr_batch{batch}_fps"] = 4 / (_ms(lambda up=up: up.many(frames), repeats) / 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    record: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__}
    for part in (paste_and_project, compose, sr):
        record.update({k: round(v, 2) for k, v in part(args.repeats).items()})
    for key, value in record.items():
        print(f"{key:28s} {value}")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
