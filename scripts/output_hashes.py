"""Hashes of every decoded output frame of a few small jobs, to show a restructure changes no output.

    PYTHONPATH=<tree> python scripts/output_hashes.py OUT.json [--work DIR]

Runs the test suite's kind of clips (a synthetic face clip with a seeded 16-px test generator) through
the tree on PYTHONPATH: restore with whole tracks, restore with tracks split into chunks (anchors,
chunks, joined chunks), restore with film cleaning stored per segment (clean steps) and anonymise
without a model (every face masked). It
writes, per job, the SHA-256 of every decoded output frame (raw pixels) and the artifacts the work
directory keeps (`<stage>/<key>/<name>`). The clip and the weights are made once in `--work` and
reused. Run it once per tree and compare the two files (`--compare A.json B.json`): equal
hashes mean bit-identical pictures, equal keys mean old work directories still resume.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

JOBS: dict[str, list[str]] = {
    "restore": [],
    "restore-chunked": ["search.chunk_len=4", "search.chunk_landing=2"],
    "restore-film-stored": ["film.deflicker=true", "run.store_frames=true", "run.segment_frames=6"],
    "anonymize-masked": [],  # without a model: with one, the synthetic faces are drawn from the OS's
    # randomness by design (pipeline.anon.search), so no two runs are alike
}
COMMON = [
    "run.executor=local",
    "run.device=cpu",
    "search.steps=6",
    "search.warm_steps=2",
    "search.gaussian_samples=1000",
    "compose.max_face_stretch=8",
    "io.preset=master-ffv1",
    "run.segment_frames=8",
]


def face_clip(path: Path) -> Path:
    """The end-to-end tests' clip: 16 frames, 160x90, two shots, larger faces, gray and grainy."""
    from pipeline.faces.synthetic import larger_faces, render, standard_shots, write_video

    shots = larger_faces([replace(s, length=8) for s in standard_shots()[:2]])
    return write_video(render(shots, factor=8, seed=3).frames, path)


def tiny_model(path: Path) -> Path:
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.load import RANDOM_SOURCE_PREFIX
    from pipeline.prior.stylegan2 import make_random_generator

    G = make_random_generator(16, seed=0, z_dim=32, w_dim=32, channel_max=32, mapping_layers=2)
    return save_generator(G, path, source=f"{RANDOM_SOURCE_PREFIX}: seed 0, 16 px (test generator)")


def frame_hashes(video: Path) -> list[str]:
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return [
            hashlib.sha256(frame.to_ndarray(format=frame.format.name).tobytes()).hexdigest()
            for frame in container.decode(stream)
        ]


def run_jobs(out: Path, work: Path, names: list[str]) -> dict[str, Any]:
    from pipeline.api import anonymize, restore
    from pipeline.config import load_config

    work.mkdir(parents=True, exist_ok=True)
    # made once: the trees compared read the same input and weights (their content keys)
    clip = work / "faces.mkv"
    if not clip.exists():
        face_clip(clip)
    model = work / "tiny.safetensors"
    if not model.exists():
        tiny_model(model)
    results: dict[str, Any] = {}
    for name in names:
        sets = JOBS[name]
        workdir = work / f"work-{name}"
        output = work / f"{name}.mkv"
        shutil.rmtree(workdir, ignore_errors=True)
        settings = [*COMMON, *sets, f"run.workdir={workdir}"]
        if name.startswith("anonymize"):
            anonymize(clip, output, load_config(["anonymize"], settings), overwrite=True)
        else:
            restore(clip, output, load_config(sets=[*settings, f"prior.model={model}"]), overwrite=True)
        keys = sorted(str(p.relative_to(workdir)) for p in workdir.glob("*/*/*") if p.is_file())
        results[name] = {"frames": frame_hashes(output), "keys": keys}
        print(f"{name}: {len(results[name]['frames'])} frames, {len(keys)} artifacts kept", flush=True)
    out.write_text(json.dumps(results, indent=1))
    return results


def compare(a: Path, b: Path) -> int:
    left, right = json.loads(a.read_text()), json.loads(b.read_text())
    bad = 0
    for name in sorted(set(left) | set(right)):
        x, y = left.get(name), right.get(name)
        if x is None or y is None:
            print(f"{name}: only in {'the first' if y is None else 'the second'}")
            bad += 1
            continue
        same_frames = x["frames"] == y["frames"]
        same_keys = x["keys"] == y["keys"]
        frames = len(x["frames"])
        frames_word = "identical" if same_frames else "DIFFER"
        print(f"{name}: {frames} frames {frames_word}, keys {'same' if same_keys else 'DIFFER'}")
        bad += (not same_frames) + (not same_keys)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--work", type=Path, default=Path("/tmp/output-hashes"))
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"))
    parser.add_argument("--jobs", nargs="+", choices=list(JOBS), default=list(JOBS))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("give OUT.json or --compare A B")
    run_jobs(args.out, args.work, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
