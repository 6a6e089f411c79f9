#!/usr/bin/env python
"""Benchmark the batched latent search: face-frames per second, cold vs warm, per setting.

Runs with only torch, numpy and safetensors (no av, ray or ffmpeg), on CPU or CUDA:

    python scripts/bench_search.py --device cuda --resolution 1024 --batch 32
    python scripts/bench_search.py --device cpu --resolution 32 --batch 4 --tiny     # smoke test

A random config-f-sized generator (official channel counts: channel_base 32768, channel_max 512, 512-d
latents) stands in for a face model; each of `batch` faces follows its own smooth synthetic latent path
and is downscaled to `--target` px. Frame 0 of every face is a cold search (all faces in one batch);
frames 1.. are warm starts. For each setting (truncated synthesis on/off, float32/TF32 vs bfloat16
autocast) it reports face-frames/s, mean steps, ms per face-step and the fraction meeting the bound.
The anchor to beat: eager PULSE, 100 cold steps at 10.6 ms per face-step = 0.94 face-frames/s.
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
    # (torch, numpy, safetensors, opencv) may not have it.
    import types

    sys.modules["yaml"] = types.ModuleType("yaml")

from pipeline.config import SearchConfig
from pipeline.prior.stylegan2 import make_random_generator
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.search import search
from pipeline.search.synthetic import SyntheticTrack, make_track
from pipeline.search.track import TrackInput, crop_to_tensor, restore_tracks_batched


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bench_setting(
    G: torch.nn.Module,
    space: GaussianizedW,
    tracks: list[SyntheticTrack],
    setting: str,
    args: argparse.Namespace,
    device: torch.device,
) -> list[dict[str, float | str]]:
    """Time one setting: the cold frame of every face in one batch, then the warm frames in lockstep."""
    rows: list[dict[str, float | str]] = []
    synth, precision = setting.split("-")
    settings = SearchConfig(
        steps=args.steps,
        warm_steps=args.warm_steps,
        batch_size=args.batch,
        truncate_factor=4.0 if synth == "trunc" else 0.0,
        autocast="bfloat16" if precision == "bf16" else "none",
    )
    targets = [crop_to_tensor(tr.crops[0], f"face {i}") for i, tr in enumerate(tracks)]
    # warm-up: kernel selection and allocator growth stay out of the timings
    search(G, targets, settings=replace(settings, steps=2), space=space, device=device)
    _sync(device)
    t0 = time.perf_counter()
    cold = search(G, targets, settings=settings, space=space, seeds=list(range(args.batch)), device=device)
    _sync(device)
    cold_s = time.perf_counter() - t0
    units = [
        TrackInput(i, tr.crops[1:], list(range(1, args.frames)), False, cold.state.select([i]))
        for i, tr in enumerate(tracks)
    ]
    t0 = time.perf_counter()
    warm = restore_tracks_batched(G, units, settings=settings, space=space, device=device)
    _sync(device)
    warm_s = time.perf_counter() - t0
    warm_out = [r for o in warm for r in o.restorations]
    for phase, n, secs, steps, met in (
        (
            "cold",
            args.batch,
            cold_s,
            float(cold.steps.float().mean()),
            float(cold.met_bound.float().mean()),
        ),
        (
            "warm",
            len(warm_out),
            warm_s,
            sum(r.steps for r in warm_out) / max(1, len(warm_out)),
            sum(r.met_bound for r in warm_out) / max(1, len(warm_out)),
        ),
    ):
        if n == 0:
            continue
        rate = n / secs
        ms = 1000 * secs / max(1.0, n * max(steps, 1e-9))
        rows.append(
            {
                "setting": setting,
                "phase": phase,
                "faces_per_s": rate,
                "steps": steps,
                "ms_per_face_step": ms,
                "met": met,
                "seconds": secs,
            }
        )
        print(
            f"{setting:12s} {phase:5s} {rate:8.2f} {steps:6.1f} {ms:12.2f} {met:5.2f} {secs:7.1f}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--resolution", type=int, default=1024, help="generator output size (px)")
    ap.add_argument("--target", type=int, default=32, help="low-resolution target size (px)")
    ap.add_argument("--batch", type=int, default=32, help="faces searched at once")
    ap.add_argument("--frames", type=int, default=4, help="frames per face: 1 cold + (frames - 1) warm")
    ap.add_argument("--steps", type=int, default=100, help="cold step budget")
    ap.add_argument("--warm-steps", type=int, default=25, help="warm step budget")
    ap.add_argument(
        "--settings",
        default="trunc-bf16,trunc-fp32,full-bf16,full-fp32",
        help="comma list of {trunc,full}-{fp32,bf16}: truncated/full synthesis, float32(+TF32)/bfloat16",
    )
    ap.add_argument("--tiny", action="store_true", help="a small generator (CPU smoke test)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last activations in the synthesis")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # "fp32" rows run TF32 tensor cores, as deployed
        torch.backends.cudnn.allow_tf32 = True

    if args.tiny:
        G = make_random_generator(
            args.resolution, args.seed, z_dim=32, w_dim=32, channel_max=32, mapping_layers=4
        )
    else:
        G = make_random_generator(
            args.resolution, args.seed, z_dim=512, w_dim=512, channel_base=32768, channel_max=512
        )
    G = G.to(device)
    if args.channels_last:
        G.synthesis.channels_last = True
    t0 = time.perf_counter()
    space = GaussianizedW.fit(G, n=20_000, seed=0, chunk=4096, device=device, use_cache=False)
    fit_s = time.perf_counter() - t0
    scale = args.resolution / args.target
    tracks = [
        make_track(G, frames=args.frames, scale=round(scale), seed=100 + i, motion=0.6)
        for i in range(args.batch)
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name}; generator {args.resolution} px (num_ws {G.num_ws}, w_dim {G.w_dim}); "
        f"targets {tracks[0].crops[0].shape[0]} px; batch {args.batch}; frames {args.frames}; "
        f"Gaussian fit {fit_s:.1f} s",
        flush=True,
    )
    head = ("faces/s", "steps", "ms/face-step", "met", "sec")
    print(f"{'setting':12s} {'phase':5s} " + " ".join(f"{h:>12s}" for h in head))
    rows = []
    for setting in [s.strip() for s in args.settings.split(",") if s.strip()]:
        try:
            rows += _bench_setting(G, space, tracks, setting, args, device)
        except torch.cuda.OutOfMemoryError:
            print(f"{setting:12s} out of GPU memory at batch {args.batch}; try a smaller --batch", flush=True)
            rows.append({"setting": setting, "phase": "oom"})
            torch.cuda.empty_cache()
    print(json.dumps({"device": name, "resolution": args.resolution, "batch": args.batch, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
