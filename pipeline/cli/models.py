"""`reel models list|fetch|path|convert|init`: the generator model zoo and checkpoint tools."""

from __future__ import annotations

import argparse

from pipeline.errors import ConfigError, OutputError

HELP = "face prior models: list, fetch, path, convert a checkpoint, init a random generator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="models in the zoo and whether they are in the cache")
    p.set_defaults(_models_run=_list)

    p = sub.add_parser("fetch", help="download a zoo model into the cache (resume, verify, convert)")
    p.add_argument("name")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(_models_run=_fetch)

    p = sub.add_parser("path", help="print the cached file of a model (fails if not downloaded)")
    p.add_argument("name")
    p.set_defaults(_models_run=_path)

    p = sub.add_parser("convert", help="convert any supported checkpoint to our safetensors format")
    p.add_argument("input", help="NVIDIA .pkl (PyTorch or TensorFlow), rosinality .pt, or ours")
    p.add_argument("output", help="output .safetensors file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(_models_run=_convert)

    p = sub.add_parser("init", help="write a seeded random generator (not a face model: tests, demos)")
    p.add_argument("output", help="output .safetensors file")
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--w-dim", type=int, default=128)
    p.add_argument("--channel-base", type=int, default=None, help="default: max(2048, resolution)")
    p.add_argument("--channel-max", type=int, default=64)
    p.add_argument("--mapping-layers", type=int, default=8)
    p.add_argument("--noise-strength", type=float, default=0.3)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(_models_run=_init)


def run(args: argparse.Namespace) -> int:
    return int(args._models_run(args))


def _list(args: argparse.Namespace) -> int:
    from pipeline.prior.zoo import cache_dir, describe, load_zoo

    rows = [describe(e) for e in load_zoo().values()]
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['resolution']:>5} px  {r['format']:<10}  {r['state']}")
    print(f"cache: {cache_dir()}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from pipeline.prior.zoo import fetch_model

    print(fetch_model(args.name, progress=False if args.no_progress else None))
    return 0


def _path(args: argparse.Namespace) -> int:
    from pipeline.prior.zoo import resolve_model

    print(resolve_model(args.name))
    return 0


def _check_output(path: str, overwrite: bool) -> None:
    from pathlib import Path

    if Path(path).exists() and not overwrite:
        raise OutputError(path, "exists (use --overwrite to replace it)")


def _convert(args: argparse.Namespace) -> int:
    from pipeline.prior.checkpoint import convert_checkpoint

    _check_output(args.output, args.overwrite)
    G, kind = convert_checkpoint(args.input, args.output)
    cfg = G.cfg
    print(
        f"{args.output}: {kind} -> reel safetensors, {cfg.resolution} px, z {cfg.z_dim}, w {cfg.w_dim}, "
        f"{cfg.mapping_layers} mapping layers, channels base {cfg.channel_base} max {cfg.channel_max}"
    )
    return 0


def _init(args: argparse.Namespace) -> int:
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.stylegan2 import make_random_generator

    _check_output(args.output, args.overwrite)
    try:
        G = make_random_generator(
            args.resolution,
            args.seed,
            z_dim=args.z_dim,
            w_dim=args.w_dim,
            channel_base=args.channel_base,
            channel_max=args.channel_max,
            mapping_layers=args.mapping_layers,
            noise_strength=args.noise_strength,
        )
    except ValueError as exc:
        raise ConfigError(f"models init: {exc}") from exc
    save_generator(G, args.output, source=f"random:seed={args.seed}")
    print(f"{args.output}: random generator {args.resolution} px, seed {args.seed} (not a face model)")
    return 0
