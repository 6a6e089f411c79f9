#!/usr/bin/env python
"""The device record: one table and `benchmarks/gpu-latest.json`, on a machine with torch and OpenCV only.

Run by `scripts/device_check.sh` on a lent GPU (no Ray, PyAV or ffmpeg there; spandrel travels in the
ignored `device-deps/` folder, see that script). Each figure is measured here, on this machine, now:

  search_{warm,cold}_1024_faces_per_s, search_warm_256_faces_per_s, search_met_fraction
      `scripts/bench_search.py` (random config-f-sized generators, 32-px targets, batch 32, bf16,
      truncated synthesis); met = the fraction of face-frames whose full render meets the bound
  sr_compact_1080p_fps, sr_rrdb_720p_fps
      the pipeline's own `LearnedUpscaler` as compose runs it (`upscale.batch` frames per pass through
      `many`; on CUDA half precision where the model allows and tiles sized from free memory,
      `upscale.tile_memory`) around a Real-ESRGAN compact (64 features, 16 convs) and an RRDB
      (23 blocks) x4 network with random weights (speed only), on 1080p / 720p frames
  film_1080p_fps, film_numpy_1080p_fps
      `film.clean.clean_frames` with the newsreel preset's stages on a 1080p clip with flicker, specks,
      weave, a scratch and grain (24 frames): in torch on the device (`film.device`; the frames
      already there as 8-bit tensors, one warm-up run, the cleaned frames back on the host; phase
      correlation runs there too, the decisions, dust's blob judging (from the packed mask and
      patches) and optical flow (from the small flow input) on the CPU), and beside it numpy/OpenCV on
      the machine's CPU (all its threads; the first 8 frames)
  compose_ms_per_face
      `frame.compose.paste_face` (torch, on the device) of a 1024-px face into a 1080p frame (tone
      and grain matched)

A figure that cannot be measured here is null with the reason in "unmeasured" (never a guess).
`--quick` shrinks every size (a CPU smoke test: `--quick --device cpu`); its record says quick.

    python scripts/device_bench.py --device cuda [--out benchmarks/gpu-latest.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
try:
    import yaml  # noqa: F401
except ImportError:  # pipeline.config needs PyYAML only for presets; the device image may lack it
    import types

    sys.modules["yaml"] = types.ModuleType("yaml")

KEYS = (
    "search_warm_1024_faces_per_s",
    "search_cold_1024_faces_per_s",
    "search_warm_256_faces_per_s",
    "search_met_fraction",
    "sr_compact_1080p_fps",
    "sr_rrdb_720p_fps",
    "film_1080p_fps",
    "compose_ms_per_face",
)
GOALS = {  # the goals on one H100/H200 (higher is better, except compose)
    "search_warm_1024_faces_per_s": ">= 60",
    "search_cold_1024_faces_per_s": ">= 10",
    "search_warm_256_faces_per_s": ">= 200",
    "search_met_fraction": "1.0",
    "sr_compact_1080p_fps": ">= 30",
    "sr_rrdb_720p_fps": "-",
    "film_1080p_fps": ">= 200",
    "compose_ms_per_face": "-",
}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def search(device: str, quick: bool) -> dict[str, float]:
    """bench_search.py in a child process (its own memory), its last line parsed."""
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_search.py"), "--device", device]
    if quick:  # one tiny generator stands for both sizes
        cmd += ["--generators", "16", "--targets", "8", "--batch", "2", "--frames", "2", "--tiny"]
        cmd += ["--steps", "6", "--warm-steps", "4", "--profile-steps", "2"]
    else:
        cmd += ["--generators", "1024,256", "--targets", "32", "--batch", "32", "--frames", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420, check=True)
    rows = json.loads(proc.stdout.strip().splitlines()[-1])["rows"]
    big, small = (1024, 256) if not quick else (16, 16)

    def rate(gen: int, phase: str) -> float:
        return next(float(r["faces_per_s"]) for r in rows if r["generator"] == gen and r["phase"] == phase)

    met = [float(r["met"]) for r in rows if "met" in r]
    return {
        "search_warm_1024_faces_per_s": rate(big, "warm"),
        "search_cold_1024_faces_per_s": rate(big, "cold"),
        "search_warm_256_faces_per_s": rate(small, "warm"),
        "search_met_fraction": min(met) if met else float("nan"),
    }


def _timed(fn: Callable[[], Any], device: str, repeats: int) -> float:
    """Seconds per call of `fn`, after one warm-up call."""
    fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats


def sr(device: str, quick: bool) -> dict[str, float]:
    import torch

    from pipeline.config import UpscaleConfig
    from pipeline.frame.sr import LearnedUpscaler, import_spandrel, load_descriptor

    import_spandrel()
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    nets = {
        "sr_compact_1080p_fps": (Compact(num_feat=64, num_conv=16, upscale=4), (1920, 1080)),
        "sr_rrdb_720p_fps": (ESRGAN(num_filters=64, num_blocks=23, scale=4), (1280, 720)),
    }
    if quick:
        nets = {
            "sr_compact_1080p_fps": (Compact(num_feat=8, num_conv=2, upscale=4), (96, 54)),
            "sr_rrdb_720p_fps": (ESRGAN(num_filters=8, num_blocks=1, scale=4), (64, 36)),
        }
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        for key, (net, (w, h)) in nets.items():
            path = Path(d) / f"{key}.pth"
            torch.save(net.state_dict(), path)
            u = UpscaleConfig()  # the settings compose runs with
            up = LearnedUpscaler(
                load_descriptor(path), scale=4, device=device, tile=u.tile if not quick else 64,
                overlap=u.tile_overlap, batch=u.batch, tile_memory=u.tile_memory,
            )  # fmt: skip
            frames = list(np.random.default_rng(0).integers(0, 256, (u.batch, h, w, 3), dtype=np.uint8))
            seconds = _timed(lambda up=up, frames=frames: up.many(frames), device, 2 if not quick else 1)
            out[key] = len(frames) / seconds
    return out


# the newsreel preset's film section (configs/newsreel.yaml; PyYAML may be missing on the device image,
# so it is written out here and tests/test_device_bench.py checks it against the preset)
NEWSREEL_FILM = {
    "deflicker": True,
    "deflicker_radius": 6,
    "local_flicker": True,
    "weave": True,
    "weave_radius": 10,
    "dust": True,
    "scratches": True,
    "grain": "reduce",
}


def film_clip(w: int, h: int, n: int) -> list[np.ndarray]:
    """A slow pan over a soft random picture with flicker, specks, weave, a scratch and grain."""
    import cv2

    from pipeline.film import synthetic as S

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 6)
    base = cv2.normalize(base, None, 20, 235, cv2.NORM_MINMAX)
    frames = [np.roll(base, (i // 3, i), axis=(0, 1)) for i in range(n)]  # a slow pan
    frames, _ = S.add_flicker(frames, 0.08, 1)
    frames, _ = S.add_specks(frames, 10, 2)
    frames, _ = S.add_weave(frames, 1.5, 3)
    return S.add_grain(S.add_scratches(frames, [w // 3]), 6.0, 4)


def film(device: str, quick: bool, frames: int | None = None) -> dict[str, float]:
    """The newsreel clean in torch on `device` (`film.device`), the frames already there as 8-bit
    tensors, after one warm-up run of a few frames; the cleaned frames come back to the host (the
    encoder's input). Beside it the numpy/OpenCV clean of the first third of them on this machine's CPU."""
    import torch

    from pipeline.config import FilmConfig
    from pipeline.film import synthetic as S
    from pipeline.film.clean import clean_frames

    w, h, n = (1920, 1080, 24) if not quick else (128, 72, 12)
    n = frames or n
    clip = film_clip(w, h, n)
    cfg = FilmConfig(**NEWSREEL_FILM, device=device)  # type: ignore[arg-type]
    on_device = [replace(f, image=torch.from_numpy(f.image).to(device)) for f in S.as_frames(clip)]
    _sync(device)

    def clean(frames: list[Any], film: FilmConfig) -> float:
        t = time.perf_counter()
        count = sum(1 for _ in clean_frames(frames, film, start=0, end=len(frames)))
        _sync(device)
        return count / (time.perf_counter() - t)

    clean(on_device[:3], cfg)  # warm-up: kernels, cached resampling matrices
    fps = clean(on_device, cfg)
    # the first third of the frames: the numpy clean is slow, and device_check.sh's step has a time limit
    numpy_fps = clean(S.as_frames(clip[: max(4, n // 3)]), replace(cfg, device="numpy"))
    return {"film_1080p_fps": fps, "film_numpy_1080p_fps": numpy_fps}


def compose(device: str, quick: bool) -> dict[str, float]:
    from pipeline.frame.compose import FacePaste, paste_face
    from pipeline.frame.tensor_ops import as_tensor

    w, h, size = (1920, 1080, 1024) if not quick else (192, 108, 64)
    rng = np.random.default_rng(0)
    out = as_tensor(rng.random((h, w, 3), dtype=np.float32), device)  # the frame on the device
    face = rng.random((size, size, 3), dtype=np.float32)
    side = h / 3  # the face drawn a third of the frame high
    affine = np.array([[side / size, 0, w / 2 - side / 2], [0, side / size, h / 3]], np.float64)
    paste = FacePaste(face, affine, seed=1)
    seconds = _timed(lambda: paste_face(out, paste), device, 5 if not quick else 2)
    return {"compose_ms_per_face": 1000 * seconds}


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("REEL_COMMIT")  # a copied tree without .git: device_check.sh passes it


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script itself")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu-latest.json")
    ap.add_argument("--only", choices=("search", "sr", "film", "compose"), help="measure one part only")
    ap.add_argument("--film-frames", type=int, help="frames of the film clip (default 24, quick 12)")
    args = ap.parse_args(argv)
    import torch

    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    record: dict[str, Any] = {
        "card": card,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _commit(),
        "torch": torch.__version__,
        "quick": args.quick,
        **dict.fromkeys(KEYS),
        "unmeasured": {},
    }
    parts: list[tuple[str, Callable[[], dict[str, float]]]] = [
        ("search", lambda: search(args.device, args.quick)),
        ("sr", lambda: sr(args.device, args.quick)),
        ("film", lambda: film(args.device, args.quick, args.film_frames)),
        ("compose", lambda: compose(args.device, args.quick)),
    ]
    for name, part in parts:
        if args.only and name != args.only:
            continue
        try:
            record.update(part())
        except Exception as exc:  # a part that cannot run here says why; the others still run
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            for key in KEYS:
                if key.startswith(name) and record[key] is None:
                    record["unmeasured"][key] = reason[:200]
    print(f"device record: {card}, torch {torch.__version__}, commit {record['commit']}, quick {args.quick}")
    print(f"{'figure':32s} {'measured':>10s}  goal")
    for key in KEYS:
        value = record[key]
        shown = f"{value:10.2f}" if isinstance(value, float) else f"{'-':>10s}"
        note = f"  (unmeasured: {record['unmeasured'][key]})" if key in record["unmeasured"] else ""
        print(f"{key:32s} {shown}  {GOALS[key]}{note}")
    if isinstance(record.get("film_numpy_1080p_fps"), float):  # beside the goal: the CPU's numpy clean
        print(
            f"{'film_numpy_1080p_fps':32s} {record['film_numpy_1080p_fps']:10.2f}  (numpy/OpenCV, host CPU)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(args.out)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
