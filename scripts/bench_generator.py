#!/usr/bin/env python3
"""Benchmark one latent-search step per face: synthesis forward + backward to ws (generator frozen).

Random generators with the official config-f channel schedule (no weights needed). Needs only torch
(and this repository). Prints one row per setting: ms per face-step, measured GFLOP per face-step (by
torch's FLOP counter) and the achieved GFLOP/s.

    python scripts/bench_generator.py --device cpu --resolutions 256 --batch 1 4
    python scripts/bench_generator.py --device cuda --resolutions 256 1024 --batch 8 32 \\
        --dtype float32 bfloat16 --modconv scaled scaled_fir grouped --channels-last --compile
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from pipeline.prior.stylegan2 import Generator, GeneratorConfig


def config_f(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> GeneratorConfig:
    # FFHQ config-f: 512-d z and w, 8 mapping layers, channels min(32768 / res, 512).
    return GeneratorConfig(resolution=resolution, channel_base=channel_base, channel_max=channel_max)


def make_step(
    G: Generator, batch: int, device: torch.device, compile_mode: str | None
) -> tuple[Callable[[], None], torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    ws0 = (G.w_avg.float().cpu() + torch.randn(batch, G.num_ws, G.w_dim, generator=gen) * 0.5).to(device)
    target = torch.rand(batch, 3, G.img_resolution, G.img_resolution, generator=gen).to(device) * 2 - 1
    ws = ws0.clone().requires_grad_(True)
    synth = G.synthesis
    if compile_mode:
        synth = torch.compile(G.synthesis, mode=compile_mode, dynamic=False)  # type: ignore[assignment]

    def step() -> None:
        ws.grad = None
        img = synth(ws)
        loss = (img.float() - target).square().mean()
        loss.backward()

    return step, ws


def count_flops(step: Callable[[], None]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def bench_one(args: argparse.Namespace, res: int, batch: int, dtype: str, modconv: str) -> str:
    device = torch.device(args.device)
    G = Generator(config_f(res, args.channel_base, args.channel_max)).to(device)
    G.reset_parameters(seed=0, w_avg_samples=256, target_std=None)  # image scale does not affect timing
    G = G.to(dtype=getattr(torch, dtype)).eval().requires_grad_(False)
    G.set_execution(modconv, channels_last=args.channels_last)  # type: ignore[arg-type]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    note = ""
    try:
        step, _ = make_step(G, batch, device, args.compile_mode if args.compile else None)
        try:
            step()
        except Exception as exc:  # compile failures must not end the benchmark
            if not args.compile:
                raise
            note = f" (compile failed: {type(exc).__name__}; eager)"
            step, _ = make_step(G, batch, device, None)
            step()
        flops = count_flops(make_step(G, 1, device, None)[0]) if not args.no_flops else 0.0
        for _ in range(args.warmup):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        dt = (time.perf_counter() - t0) / args.steps
    except torch.OutOfMemoryError:
        return f"{res:>5} {batch:>5} {dtype:>9} {modconv:>10}   out of memory"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ms_face = dt * 1000 / batch
    gflop = flops / 1e9
    rate = gflop / (ms_face / 1000) if flops else 0.0
    if not flops:
        return f"{res:>5} {batch:>5} {dtype:>9} {modconv:>10} {ms_face:>12.2f} {'-':>11} {'-':>10}{note}"
    return f"{res:>5} {batch:>5} {dtype:>9} {modconv:>10} {ms_face:>12.2f} {gflop:>11.1f} {rate:>10.0f}{note}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[256])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    ap.add_argument(
        "--modconv", nargs="+", default=["auto"], choices=["auto", "grouped", "scaled", "scaled_fir"]
    )
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--channel-base", type=int, default=32768, help="config-f: 32768 (smaller: quick checks)")
    ap.add_argument("--channel-max", type=int, default=512, help="config-f: 512")
    ap.add_argument(
        "--compile", action="store_true", help="torch.compile the synthesis (falls back to eager)"
    )
    ap.add_argument(
        "--compile-mode",
        default="default",
        help="torch.compile mode: default, reduce-overhead (CUDA graphs) or max-autotune",
    )
    ap.add_argument("--no-tf32", action="store_true", help="disable TF32 for float32 matmul/conv on CUDA")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tf32 = not args.no_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    if args.device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(args.device))
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    print(
        f"# device: {name}; torch {torch.__version__}; tf32={tf32}; channels_last={args.channels_last}; "
        f"compile={args.compile and args.compile_mode}; step = synthesis forward + backward to ws",
        flush=True,
    )
    print(
        f"{'res':>5} {'batch':>5} {'dtype':>9} {'modconv':>10} {'ms/face-step':>12} "
        f"{'GFLOP/face':>11} {'GFLOP/s':>10}",
        flush=True,
    )
    for res, batch, dtype, modconv in itertools.product(
        args.resolutions, args.batch, args.dtype, args.modconv
    ):
        print(bench_one(args, res, batch, dtype, modconv), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
