"""`make demo`: restore faces in a generated newsreel-like clip, offline, in a minute or two.

1. Renders a short black-and-white clip with a real face photograph (scikit-image's astronaut, from
   the installed package) composited in: two faces panning, a cut, a zoom, then degraded like archive
   footage (×4 downscale, blur, grain, low contrast), with a sine-tone audio track.
2. Makes a tiny seeded random StyleGAN2 generator (no face model can be downloaded offline).
3. Runs `reel restore IN -o OUT --model TINY` (detection, tracking, alignment, warm-started latent
   search, paste-back, encode with audio and timestamps kept) and says where the results are.

With a random generator the pasted "faces" are not faces: the demo shows the pipeline working, not
what a face prior would invent. Give a real checkpoint with `reel restore --model PATH_OR_NAME`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("demo"), help="directory for the demo files")
    parser.add_argument(
        "--resolution", type=int, default=64, help="tiny generator resolution (px; the faces are ~40 px)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random generator")
    parser.add_argument("--steps", type=int, default=40, help="cold-start search steps per track")
    args = parser.parse_args(argv)

    from pipeline.cli import main as reel
    from pipeline.faces.synthetic import render, standard_shots, write_video
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.load import RANDOM_SOURCE_PREFIX
    from pipeline.prior.stylegan2 import make_random_generator

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    clip_path = out / "sample-newsreel.mkv"
    print(f"1/3 rendering a sample clip with a real face photograph -> {clip_path}")
    clip = render(standard_shots(), factor=4, seed=args.seed)
    write_video(clip.frames, clip_path)

    model = out / f"tiny-random-generator-{args.resolution}px.safetensors"
    print(f"2/3 making a tiny seeded RANDOM generator ({args.resolution} px, seed {args.seed}) -> {model}")
    G = make_random_generator(args.resolution, seed=args.seed)
    source = (
        f"{RANDOM_SOURCE_PREFIX}: seed {args.seed}, {args.resolution} px (demo generator, not a face model)"
    )
    save_generator(G, model, source=source)

    restored = out / "restored.mkv"
    print(f"3/3 reel restore {clip_path.name} -o {restored.name} --model {model.name}")
    sets = [
        f"search.steps={args.steps}",
        f"search.warm_steps={max(4, args.steps // 4)}",
        "search.gaussian_samples=20000",
        f"run.workdir={out / 'work'}",
    ]
    argv_reel = ["restore", str(clip_path), "-o", str(restored), "--model", str(model), "--overwrite"]
    argv_reel += ["--preset", "newsreel", *(x for s in sets for x in ("--set", s))]
    code = reel(argv_reel)
    if code != 0:
        return code
    print()
    print(f"Input:   {clip_path}")
    print(f"Output:  {restored}  (2x upscaled, faces pasted back, audio and timestamps kept)")
    print(f"Report:  {restored.with_name(restored.name + '.report.html')}  (open it in a browser)")
    print("         (.report.json beside it holds the same figures for machines)")
    print(f"Work:    {out / 'work'}  (tracks, crops, latents; a rerun reuses them)")
    print()
    print(
        "This demo used a seeded RANDOM generator: what it pasted is not a face, only a pattern that "
        "matches the footage when downscaled. With a real face checkpoint (--model ffhq-1024, see "
        "`reel models list`) the pasted faces are plausible faces whose detail is still invented."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
