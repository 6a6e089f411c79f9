#!/usr/bin/env python
"""Benchmark the batched latent search: face-frames per second, cold and warm, and where the time goes.

Runs with only torch and numpy (no av, ray, ffmpeg, PyYAML or safetensors needed), on CPU or CUDA:

    python scripts/bench_search.py --device cuda                                  # the table below
    python scripts/bench_search.py --device cuda --compile reduce-overhead        # CUDA graphs
    python scripts/bench_search.py --device cpu --generators 32 --targets 8 --batch 4 --tiny   # smoke test

For each generator size (default 1024 and 256 px: random config-f-sized generators, official channel
counts, 512-d latents) and target size (default 32 and 64 px), `batch` faces each follow their own smooth
synthetic latent path, downscaled to the target. Frame 0 of every face is a cold search (all faces in
one batch); frames 1.. are warm starts, advanced in lockstep as a search worker does. One table row per
(generator, target, setting, phase):

  faces/s   face-frames per second (wall, device synchronised)
  met       fraction of face-frames whose full-resolution image meets the bound
  steps     mean optimiser steps per face-frame
  ms/fstep  ms per face-step (wall ÷ face-frames ÷ steps)
  kernels   fraction of a profiled run's wall time spent in device kernels (CPU: in torch ops)
  syncs/it  host synchronisations per loop iteration (.item(), bool(t), nonzero) in that profile
  ops/it    torch ops dispatched per loop iteration;  py ms/it: host time between them per iteration

The profiled run is a shorter repeat (cold: --profile-steps steps; warm: one frame), so the profiler's
own cost stays out of the rates. The anchor: eager PULSE, 100 cold steps at 10.6 ms per face-step =
0.94 face-frames/s; the goal: >= 60 warm face-frames/s at 1024 px and >= 200 at 256 px on one H200.
The last line is a JSON object with every row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
try:
    import yaml  # noqa: F401
except ImportError:
    # pipeline.config needs PyYAML only to load presets, which this script never does; a bare GPU box
    # (torch and OpenCV) may not have it.
    import types

    sys.modules["yaml"] = types.ModuleType("yaml")

from pipeline.config import SearchConfig
from pipeline.prior.stylegan2 import Generator, make_random_generator
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.profiling import TraceSummary, profile_call
from pipeline.search.search import search
from pipeline.search.synthetic import SyntheticTrack, make_track
from pipeline.search.track import TrackInput, crop_to_tensor, restore_tracks_batched

Row = dict[str, float | str | int]
COLUMNS = ("faces/s", "met", "steps", "ms/fstep", "kernels", "syncs/it", "ops/it", "py ms/it")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _settings(setting: str, args: argparse.Namespace) -> SearchConfig:
    synth, precision = setting.split("-")
    return SearchConfig(
        steps=args.steps,
        warm_steps=args.warm_steps,
        batch_size=args.batch,
        truncate_factor=4.0 if synth == "trunc" else 0.0,
        truncate_refresh=args.refresh,
        autocast="bfloat16" if precision == "bf16" else "none",
        stop_check_every=args.check_every,
        compact=not args.no_compact,
        compile=args.compile,
    )


def _bench(
    G: torch.nn.Module,
    space: GaussianizedW,
    tracks: list[SyntheticTrack],
    settings: SearchConfig,
    args: argparse.Namespace,
    device: torch.device,
) -> list[tuple[str, float, int, float, float, TraceSummary]]:
    """(phase, seconds, face-frames, mean steps, fraction meeting the bound, trace) for cold and warm."""
    n = len(tracks)
    targets = [crop_to_tensor(tr.crops[0], f"face {i}") for i, tr in enumerate(tracks)]
    seeds = list(range(n))
    # warm-up (and, with --compile, compiling): kernel selection and allocator growth stay out
    warm_up = search(G, targets, settings=replace(settings, steps=4), space=space, seeds=seeds, device=device)
    restore_tracks_batched(
        G,
        [TrackInput(i, tr.crops[1:2], [1], False, warm_up.state.select([i])) for i, tr in enumerate(tracks)],
        settings=replace(settings, warm_steps=4),
        space=space,
        device=device,
    )
    _sync(device)
    t0 = time.perf_counter()
    cold = search(G, targets, settings=settings, space=space, seeds=seeds, device=device)
    _sync(device)
    cold_s = time.perf_counter() - t0
    units = [
        TrackInput(i, tr.crops[1:], list(range(1, len(tr.crops))), False, cold.state.select([i]))
        for i, tr in enumerate(tracks)
    ]
    t0 = time.perf_counter()
    warm = restore_tracks_batched(G, units, settings=settings, space=space, device=device)
    _sync(device)
    warm_s = time.perf_counter() - t0
    warm_out = [r for o in warm for r in o.restorations]

    # profiled repeats, short: the profiler's bookkeeping costs more than the search on small models
    short = replace(settings, steps=min(settings.steps, args.profile_steps))
    _, cold_trace = profile_call(
        lambda: search(G, targets, settings=short, space=space, seeds=seeds, device=device), device
    )
    one = [TrackInput(u.track_id, u.crops[:1], u.frame_indices[:1], False, u.prev_state) for u in units]
    _, warm_trace = profile_call(
        lambda: restore_tracks_batched(G, one, settings=settings, space=space, device=device), device
    )
    return [
        (
            "cold",
            cold_s,
            n,
            float(cold.steps.float().mean()),
            float(cold.met_bound.float().mean()),
            cold_trace,
        ),
        (
            "warm",
            warm_s,
            len(warm_out),
            sum(r.steps for r in warm_out) / max(1, len(warm_out)),
            sum(r.met_bound for r in warm_out) / max(1, len(warm_out)),
            warm_trace,
        ),
    ]


def _generator(resolution: int, args: argparse.Namespace, device: torch.device) -> Generator:
    if args.tiny:
        G = make_random_generator(resolution, args.seed, z_dim=32, w_dim=32, channel_max=32, mapping_layers=4)
    else:
        G = make_random_generator(
            resolution, args.seed, z_dim=512, w_dim=512, channel_base=32768, channel_max=512
        )
    return G.to(device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--generators", default="1024,256", help="comma list of generator output sizes (px)")
    ap.add_argument("--targets", default="32,64", help="comma list of low-resolution target sizes (px)")
    ap.add_argument("--batch", type=int, default=32, help="faces searched at once")
    ap.add_argument("--frames", type=int, default=4, help="frames per face: 1 cold + (frames - 1) warm")
    ap.add_argument("--steps", type=int, default=100, help="cold step budget")
    ap.add_argument("--warm-steps", type=int, default=25, help="warm step budget")
    ap.add_argument(
        "--settings",
        default="trunc-bf16",
        help="comma list of {trunc,full}-{fp32,bf16}: truncated/full synthesis, float32(+TF32)/bfloat16",
    )
    ap.add_argument(
        "--refresh", type=int, default=SearchConfig.truncate_refresh, help="search.truncate_refresh"
    )
    ap.add_argument("--check-every", type=int, default=0, help="search.stop_check_every (0 = auto)")
    ap.add_argument("--no-compact", action="store_true", help="search.compact = false")
    ap.add_argument("--compile", default="off", help="search.compile: off, default, reduce-overhead, ...")
    ap.add_argument("--profile-steps", type=int, default=12, help="cold step budget of the profiled repeat")
    ap.add_argument("--tiny", action="store_true", help="small generators (CPU smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # "fp32" rows run TF32 tensor cores, as deployed
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name}; torch {torch.__version__}; batch {args.batch}; frames {args.frames}; "
        f"compile {args.compile}; refresh {args.refresh}; check every {args.check_every or 'auto'}; "
        f"compact {not args.no_compact}",
        flush=True,
    )
    print(f"{'gen':>5s} {'tgt':>4s} {'setting':11s} {'phase':5s} " + " ".join(f"{c:>9s}" for c in COLUMNS))
    rows: list[Row] = []
    for resolution in [int(r) for r in args.generators.split(",") if r.strip()]:
        G = _generator(resolution, args, device)
        space = GaussianizedW.fit(G, n=20_000, seed=0, chunk=4096, device=device, use_cache=False)
        for target in [int(t) for t in args.targets.split(",") if t.strip()]:
            tracks = [
                make_track(
                    G, frames=args.frames, scale=max(1, round(resolution / target)), seed=100 + i, motion=0.6
                )
                for i in range(args.batch)
            ]
            for setting in [s.strip() for s in args.settings.split(",") if s.strip()]:
                key = {
                    "generator": resolution,
                    "target": int(tracks[0].crops[0].shape[0]),
                    "setting": setting,
                }
                try:
                    results = _bench(G, space, tracks, _settings(setting, args), args, device)
                except torch.cuda.OutOfMemoryError:
                    print(
                        f"{resolution:5d} {target:4d} {setting:11s} out of GPU memory at batch {args.batch}"
                    )
                    rows.append({**key, "phase": "oom"})
                    torch.cuda.empty_cache()
                    continue
                for phase, secs, n, steps, met, tr in results:
                    row: Row = {
                        **key,
                        "phase": phase,
                        "faces_per_s": n / secs,
                        "met": met,
                        "steps": steps,
                        "ms_per_face_step": 1000 * secs / max(1.0, n * max(steps, 1e-9)),
                        "kernel_fraction": tr.kernel_fraction,
                        "syncs_per_iteration": tr.step_syncs / max(1, tr.steps),
                        "ops_per_iteration": tr.step_ops / max(1, tr.steps),
                        "python_ms_per_iteration": tr.step_python_ms,
                        "iteration_ms": tr.step_ms,
                        "seconds": secs,
                    }
                    rows.append(row)
                    values = (
                        f"{row['faces_per_s']:9.2f} {met:9.2f} {steps:9.1f} {row['ms_per_face_step']:9.2f} "
                        f"{tr.kernel_fraction:9.2f} {row['syncs_per_iteration']:9.2f} "
                        f"{row['ops_per_iteration']:9.0f} {tr.step_python_ms:9.2f}"
                    )
                    print(f"{resolution:5d} {key['target']:4d} {setting:11s} {phase:5s} {values}", flush=True)
                    print(f"      trace ({phase}, profiled repeat): {tr.line()}", flush=True)
        del G
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(json.dumps({"device": name, "batch": args.batch, "compile": args.compile, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
