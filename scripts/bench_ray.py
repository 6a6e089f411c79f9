#!/usr/bin/env python3
"""Benchmark the Ray executor: scaling, per-unit scheduling overhead, and search through an actor.

    python scripts/bench_ray.py pipeline [--seconds 10 --long 4 --segment 50]          # the plan with faces
    python scripts/bench_ray.py scaling  [--frames 240 --size 640x360 --segment 24]   # needs ffmpeg, av, ray
    python scripts/bench_ray.py overhead [--units 200]                                # needs ray
    python scripts/bench_ray.py search --device cuda [--resolution 256 --faces 64]    # torch; ray optional

pipeline: a restore with faces (a clip of moving, cut, degraded faces at 640x360 and a seeded 16-px
  generator) in-process and with an embedded Ray of 1 and of 2 CPUs, each run in its own process: wall
  time, Ray vs in-process, scale-out efficiency T1 / (2 T2) with one thread per task, the serial fraction
  (share of the wall time during which at most one step runs, from `run.timeline`), and the peak memory
  (PSS of the whole process tree, Ray's processes included) at two clip lengths.
scaling: the same restore (decode -> upscale -> encode in segments, no faces) with an embedded Ray of
  1 and of 2 worker CPUs, and the in-process executor; reports wall times, scale-out efficiency
  T1 / (2 T2) and Ray's overhead (T_ray,1 - T_local) / T_local.
overhead: per-unit cost of scheduling through Ray (WorkQueue, ray.wait backpressure) vs a plain call,
  for an empty unit and for a 10 ms unit.
search: warm-started track search throughput (face-frames/s) called directly, and through a
  ModelActor when Ray is installed (the GPU box may have only torch, numpy and safetensors).
Every mode prints one JSON object (machine, settings, numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


# ---------------------------------------------------------------------- scaling


def _make_clip(path: Path, frames: int, size: str) -> Path:
    import subprocess

    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=s={size}:r=25",
        "-frames:v",
        str(frames),
    ]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", str(path)]
    subprocess.run(cmd, check=True)
    return path


def bench_scaling(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.config import load_config
    from pipeline.run.restore import restore

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    clip = _make_clip(tmp / "clip.mkv", args.frames, args.size)
    sets = [
        f"run.segment_frames={args.segment}",
        "run.progress=false",
        f"upscale.scale={args.scale}",
        f"io.preset={args.preset}",
    ]
    times: dict[str, list[float]] = {"local": [], "ray_1cpu": [], "ray_2cpu": []}
    starts: dict[str, list[float]] = {k: [] for k in times}  # embedded Ray start-up, part of `times`
    for rep in range(args.repeats):
        for name, extra in (
            ("local", ["run.executor=local"]),
            ("ray_1cpu", ["run.num_cpus=1"]),
            ("ray_2cpu", ["run.num_cpus=2"]),
        ):
            out = tmp / f"{name}-{rep}.mkv"
            config = load_config(sets=[*sets, *extra, f"run.workdir={tmp / (name + str(rep))}.work"])
            start = time.perf_counter()
            startup = restore(clip, out, config).seconds.get("ray_start", 0.0)
            times[name].append(time.perf_counter() - start)
            starts[name].append(startup)
    best = {k: min(v) for k, v in times.items()}
    # The work itself, without starting the embedded Ray (a batch or a cluster job pays that once).
    work = {k: min(t - s for t, s in zip(times[k], starts[k], strict=True)) for k in times}
    return {
        "mode": "scaling",
        "machine": _machine(),
        "settings": vars(args),
        "load_average": os.getloadavg(),
        "seconds": times,
        "ray_start_seconds": starts,
        "best_seconds": best,
        "best_seconds_without_ray_start": work,
        "scale_out_efficiency": best["ray_1cpu"] / (2 * best["ray_2cpu"]),
        "scale_out_efficiency_without_ray_start": work["ray_1cpu"] / (2 * work["ray_2cpu"]),
        "ray_overhead_vs_local": (best["ray_1cpu"] - best["local"]) / best["local"],
        "ray_overhead_vs_local_without_ray_start": (work["ray_1cpu"] - work["local"]) / work["local"],
    }


# ---------------------------------------------------------------------- pipeline (faces)


def _face_clip(path: Path, seconds: float) -> Path:
    """A 640x360 clip of three shots of moving, degraded faces (pipeline.faces.synthetic), looped to
    `seconds` at 25 frames/s (each loop starts with a cut)."""
    import subprocess

    from pipeline.faces.synthetic import render, standard_shots, write_video

    base = path.with_name("base.mkv")
    if not base.exists():
        write_video(render(standard_shots(), size=(1280, 720), factor=2, seed=0).frames, base)
    frames = round(seconds * 25)
    cmd = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(base), "-frames:v", str(frames)]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-an", str(path)]
    subprocess.run(cmd, check=True)
    return path


def _tree_pss(root: int) -> int:
    """Proportional set size (bytes) of `root` and all its descendants (shared memory counted once)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def _sampled(cmd: list[str]) -> tuple[float, int, str]:
    """Run `cmd`; returns (wall seconds, peak PSS of its process tree, stdout)."""
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_pss(proc.pid))
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return wall, peak, out


def _serial_fraction(timeline: dict[str, Any]) -> dict[str, float]:
    """Shares of the run's wall time with no step running, and with exactly one."""
    edges = sorted([(s["start"], 1) for s in timeline["steps"]] + [(s["end"], -1) for s in timeline["steps"]])
    t0, t1 = timeline["started"], timeline["ended"]
    running, last = 0, t0
    spans = {0: 0.0, 1: 0.0}
    for t, delta in edges:
        t = min(max(t, t0), t1)
        if running in spans:
            spans[running] += t - last
        running, last = running + delta, t
    if running in spans:
        spans[running] += t1 - last
    wall = max(t1 - t0, 1e-9)
    return {"idle": spans[0] / wall, "one_step": spans[1] / wall, "serial": (spans[0] + spans[1]) / wall}


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One restore in this process (the `pipeline` mode runs each in its own process)."""
    from pipeline.config import load_config
    from pipeline.run.restore import restore

    sets = [
        f"prior.model={args.model}",
        f"run.executor={args.executor}",
        f"run.segment_frames={args.segment}",
        f"run.workdir={args.workdir}",
        f"run.timeline={args.timeline}",
        "run.progress=false",
        "run.device=cpu",
        "search.steps=6",
        "search.warm_steps=2",
        "search.gaussian_samples=2000",
        "compose.max_face_stretch=8",
        # the plan's scaling is measured, not the faces' projection (seconds per frame on a CPU)
        f"compose.project={str(args.project).lower()}",
        "report.spread_k=0",
        "io.preset=master-ffv1",
    ]
    if args.executor == "ray":
        # one search actor per CPU: without GPUs the default is a single actor
        sets += [f"run.num_cpus={args.cpus}", f"run.search_actors={args.cpus}"]
    report = restore(args.clip, args.out, load_config(sets=sets))
    return {"seconds": report.seconds, "faces": report.searched, "tracks": report.tracks}


def bench_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.load import RANDOM_SOURCE_PREFIX
    from pipeline.prior.stylegan2 import make_random_generator

    tmp = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    model = tmp / "tiny.safetensors"
    G = make_random_generator(16, seed=0, z_dim=32, w_dim=32, channel_max=32, mapping_layers=2)
    save_generator(G, model, source=f"{RANDOM_SOURCE_PREFIX}: seed 0, 16 px (benchmark, not a face model)")
    short = _face_clip(tmp / "short.mkv", args.seconds)
    runs: dict[str, Any] = {}

    def one(name: str, clip: Path, executor: str, cpus: int) -> dict[str, Any]:
        timeline = tmp / f"{name}.timeline.json"
        cmd = [sys.executable, __file__, "run-one", "--clip", str(clip), "--out", str(tmp / f"{name}.mkv")]
        cmd += [
            "--model",
            str(model),
            "--executor",
            executor,
            "--cpus",
            str(cpus),
            "--segment",
            str(args.segment),
        ]
        cmd += ["--workdir", str(tmp / f"{name}.work"), "--timeline", str(timeline)]
        cmd += ["--project"] if args.project else []
        wall, peak, out = _sampled(cmd)
        result = json.loads(out)
        line = json.loads(timeline.read_text())
        runs[name] = {
            "wall_s": wall,
            "restore_s": result["seconds"]["total"],
            "ray_start_s": result["seconds"].get("ray_start", 0.0),
            "peak_pss_mb": peak / 2**20,
            "steps": len(line["steps"]),
            **_serial_fraction(line),
            "faces": result["faces"],
        }
        print(name, json.dumps(runs[name]), file=sys.stderr)
        return runs[name]

    local = one("local", short, "local", 1)
    ray1 = one("ray_1cpu", short, "ray", 1)
    ray2 = one("ray_2cpu", short, "ray", 2)
    out: dict[str, Any] = {
        "mode": "pipeline",
        "machine": _machine(),
        "settings": vars(args),
        "load_average": os.getloadavg(),
        "runs": runs,
        "ray_vs_in_process": ray1["restore_s"] / local["restore_s"] - 1,
        "ray_vs_in_process_without_ray_start": (ray1["restore_s"] - ray1["ray_start_s"]) / local["restore_s"]
        - 1,
        "scale_out_efficiency": ray1["restore_s"] / (2 * ray2["restore_s"]),
        "scale_out_efficiency_without_ray_start": (ray1["restore_s"] - ray1["ray_start_s"])
        / (2 * (ray2["restore_s"] - ray2["ray_start_s"])),
    }
    if args.long > 1:
        long = _face_clip(tmp / "long.mkv", args.seconds * args.long)
        local_long = one("local_long", long, "local", 1)
        ray_long = one("ray_2cpu_long", long, "ray", 2)
        out["peak_memory_mb"] = {
            "in_process": {
                f"{args.seconds:g}s": local["peak_pss_mb"],
                f"{args.seconds * args.long:g}s": local_long["peak_pss_mb"],
            },
            "ray_2cpu": {
                f"{args.seconds:g}s": ray2["peak_pss_mb"],
                f"{args.seconds * args.long:g}s": ray_long["peak_pss_mb"],
            },
        }
    return out


# ---------------------------------------------------------------------- overhead


def _sleep_unit(seconds: float) -> float:
    if seconds:
        time.sleep(seconds)
    return seconds


def bench_overhead(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from pipeline.run.actors import WorkQueue
    from pipeline.run.ray_runtime import configure_auth

    configure_auth()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error", log_to_driver=False)
    results: dict[str, Any] = {}
    try:
        remote = ray.remote(num_cpus=1)(_sleep_unit)
        ray.get([remote.remote(0.0) for _ in range(4)])  # start the workers before timing
        for unit in (0.0, 0.01):
            start = time.perf_counter()
            for _ in range(args.units):
                _sleep_unit(unit)
            direct = (time.perf_counter() - start) / args.units
            queue = WorkQueue(max_in_flight=1)  # one at a time: the pure per-unit round trip
            start = time.perf_counter()
            for _ in range(args.units):
                queue.submit("unit", remote, unit)
            queue.drain()
            serial = (time.perf_counter() - start) / args.units
            results[f"unit_{unit * 1000:.0f}ms"] = {
                "direct_ms": direct * 1000,
                "ray_serial_ms": serial * 1000,
                "overhead_ms": (serial - direct) * 1000,
            }
    finally:
        ray.shutdown()
    return {"mode": "overhead", "machine": _machine(), "settings": vars(args), "per_unit": results}


# ---------------------------------------------------------------------- search


def _search_model(resolution: int, device: str, samples: int) -> Any:
    import torch

    from pipeline.prior.stylegan2 import make_random_generator
    from pipeline.search.latent_space import GaussianizedW

    torch.manual_seed(0)
    G = make_random_generator(resolution, seed=0).to(device).eval().requires_grad_(False)
    space = GaussianizedW.fit(G, n=samples, device=device, use_cache=False)
    return G, space


def _load_for_actor(resolution: int, device: str, samples: int, threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return _search_model(resolution, device, samples)


def _run_tracks(model: Any, tracks: list[Any], settings: Any, device: str) -> int:
    from pipeline.search.track import restore_tracks_batched

    G, space = model
    out = restore_tracks_batched(G, tracks, settings=settings, space=space, device=device)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return len(out)


def bench_search(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import yaml  # noqa: F401
    except ImportError:
        # pipeline.config imports PyYAML for loading presets only; this mode never loads one, and the
        # GPU box may not have it.
        sys.modules["yaml"] = types.ModuleType("yaml")
    import numpy as np

    from pipeline.config import SearchConfig
    from pipeline.search.track import TrackInput

    settings = SearchConfig(steps=args.steps, warm_steps=args.warm_steps, batch_size=args.batch)
    rng = np.random.default_rng(0)
    side = max(8, args.resolution // 8)
    tracks = [
        TrackInput(
            t,
            [rng.random((side, side, 3), dtype=np.float32) for _ in range(args.frames)],
            list(range(args.frames)),
        )
        for t in range(args.faces // args.frames)
    ]
    face_frames = len(tracks) * args.frames
    import torch

    # The same intra-op threads on both sides (a Ray actor with one CPU gets one by default; on a busy
    # machine more threads than free cores make small CPU ops far slower).
    torch.set_num_threads(args.threads)
    model = _search_model(args.resolution, args.device, args.samples)
    _run_tracks(model, tracks[:1], settings, args.device)  # warm-up (kernels, allocator)
    direct = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        _run_tracks(model, tracks, settings, args.device)
        direct.append(time.perf_counter() - start)
    result: dict[str, Any] = {
        "mode": "search",
        "machine": _machine(),
        "settings": vars(args),
        "face_frames": face_frames,
        "direct_seconds": direct,
        "direct_face_frames_per_s": face_frames / min(direct),
    }
    try:
        import ray
    except ImportError:
        result["ray"] = "not installed on this machine: only the direct number was measured"
        return result
    from pipeline.run.actors import ModelActor
    from pipeline.run.ray_runtime import configure_auth

    configure_auth()
    gpus = 1 if args.device.startswith("cuda") else 0
    ray.init(num_cpus=2, num_gpus=gpus, include_dashboard=False, logging_level="error", log_to_driver=False)
    try:
        actor = (
            ray.remote(ModelActor)
            .options(num_gpus=gpus, num_cpus=1)
            .remote(
                _load_for_actor, args.resolution, "cuda" if gpus else args.device, args.samples, args.threads
            )
        )
        ray.get(actor.run.remote(_run_tracks, tracks[:1], settings, "cuda" if gpus else args.device))
        via_ray = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ray.get(actor.run.remote(_run_tracks, tracks, settings, "cuda" if gpus else args.device))
            via_ray.append(time.perf_counter() - start)
    finally:
        ray.shutdown()
    result["ray_seconds"] = via_ray
    result["ray_face_frames_per_s"] = face_frames / min(via_ray)
    result["ray_overhead"] = min(via_ray) / min(direct) - 1
    result["ray_median_overhead"] = statistics.median(via_ray) / statistics.median(direct) - 1
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("pipeline")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length (25 frames/s, 640x360)")
    p.add_argument("--long", type=float, default=4.0, help="the memory run's clip is this many times longer")
    p.add_argument("--segment", type=int, default=50, help="run.segment_frames")
    p.add_argument(
        "--project", action="store_true", help="the faces' consistency projection on (slow on CPU)"
    )
    r = sub.add_parser("run-one")
    for name in ("--clip", "--out", "--model", "--executor", "--workdir", "--timeline"):
        r.add_argument(name, required=True)
    r.add_argument("--cpus", type=int, default=1)
    r.add_argument("--project", action="store_true", help="the faces' consistency projection on")
    r.add_argument("--segment", type=int, default=50)
    s = sub.add_parser("scaling")
    s.add_argument("--frames", type=int, default=240)
    s.add_argument("--size", default="640x360")
    s.add_argument("--segment", type=int, default=24)
    s.add_argument("--scale", type=int, default=2)
    s.add_argument("--repeats", type=int, default=1)
    s.add_argument(
        "--preset", default="master-ffv1", help="encoder preset (FFV1 encodes on one thread: a fair 1-vs-2)"
    )
    o = sub.add_parser("overhead")
    o.add_argument("--units", type=int, default=200)
    g = sub.add_parser("search")
    g.add_argument("--device", default="cpu")
    g.add_argument("--resolution", type=int, default=64)
    g.add_argument("--faces", type=int, default=32, help="face-frames in all (tracks x frames)")
    g.add_argument("--frames", type=int, default=8, help="frames per track")
    g.add_argument("--batch", type=int, default=16)
    g.add_argument("--steps", type=int, default=20)
    g.add_argument("--warm-steps", type=int, default=5)
    g.add_argument("--samples", type=int, default=10_000, help="latents for the Gaussianised-W fit")
    g.add_argument("--repeats", type=int, default=3)
    g.add_argument("--threads", type=int, default=1, help="torch intra-op threads, direct and in the actor")
    args = parser.parse_args()
    modes = {"pipeline": bench_pipeline, "run-one": run_one, "scaling": bench_scaling}
    run = {**modes, "overhead": bench_overhead, "search": bench_search}[args.mode]
    print(json.dumps(run(args), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
