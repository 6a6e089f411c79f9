"""What the report costs: time to write it against the run's time, and its size.

Restores a synthetic SD clip with moving faces (640x480, 25 fps; `--seconds`) in process with a tiny
seeded generator, then reports the run's stage times, the report's own time (JSON + HTML, with the
"where is this invented?" spread and without it, i.e. `reel report`), and the sizes of both files.
A real generator makes the search far slower (which only lowers the report's share) but its
restorations larger (which raises the report's reading cost): `--probe-resolution` times reading
and measuring one track of restorations at a real generator's size, per face-frame.

    .venv/bin/python scripts/bench_report.py --seconds 12 --probe-resolution 1024
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.files import save_arrays


def make_clip(path: Path, seconds: float, rate: int = 25) -> Path:
    """SD (640x480) clip of shots of ~2 s with one or two moving faces, streamed to ffmpeg shot by shot."""
    from pipeline.faces.synthetic import render, standard_shots

    frames_total = round(seconds * rate)
    cmd = [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", "640x480", "-framerate", str(rate), "-i", "pipe:0", "-c:v", "libx264", "-crf", "12"]
    cmd += ["-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    done, i = 0, 0
    base = standard_shots()
    while done < frames_total:
        spec = base[i % len(base)]
        n = min(2 * rate + 7 * (i % 3), frames_total - done)
        shot = replace(spec, length=n, background_seed=spec.background_seed + 10 * i)
        for frame in render([shot], size=(1280, 960), factor=2, seed=i).frames:
            proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        done, i = done + n, i + 1
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("ffmpeg failed")
    return path


def probe_reading(resolution: int, frames: int = 50) -> float:
    """Seconds per face-frame to read one stored track of restorations at `resolution` (the plan's
    format: rows in an npz, faces in a memory-mapped .faces.npy) and measure it, as the report does."""
    from pipeline.config import ReportConfig
    from pipeline.faces.store import crops_to_arrays
    from pipeline.report.build import collect
    from pipeline.report.model import ReportArtifacts
    from pipeline.run.steps import save_track
    from pipeline.types import FaceCrop, FaceRestoration

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        image = rng.random((resolution, resolution, 3), np.float32)
        faces = [
            FaceRestoration(0, t, np.zeros((18, 512), np.float32), np.roll(image, t, axis=1), 25.0, False, 20)
            for t in range(frames)
        ]
        crops = [
            FaceCrop(0, t, rng.random((40, 40, 3), np.float32), np.eye(2, 3), False) for t in range(frames)
        ]
        save_track(root / "track-000000.npz", root / "track-000000.faces.npy", faces, None)
        save_arrays(root / "c.npz", **crops_to_arrays(crops))
        del faces
        rows = [
            {"track_id": 0, "frame": t, "psnr_db": 25.0, "met_bound": False, "steps": 20}
            for t in range(frames)
        ]
        t0 = time.perf_counter()
        collect(ReportArtifacts(root, [root / "c.npz"], [root / "track-000000.npz"]), rows, ReportConfig())
        return (time.perf_counter() - t0) / frames


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="clip length (25 fps)")
    parser.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temporary dir)")
    parser.add_argument(
        "--probe-resolution", type=int, default=0, help="also time reading restorations at this size"
    )
    args = parser.parse_args()

    from pipeline.config import load_config
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.stylegan2 import make_random_generator
    from pipeline.report.build import rerender

    root = args.out or Path(tempfile.mkdtemp(prefix="bench-report-"))
    root.mkdir(parents=True, exist_ok=True)
    video = root / "sd.mp4"
    if not video.exists():
        make_clip(video, args.seconds)
    model = root / "tiny.safetensors"
    if not model.exists():
        G = make_random_generator(16, seed=0, z_dim=32, w_dim=32, channel_max=32, mapping_layers=2)
        save_generator(G, model, source="random: seed 0, 16 px (test generator, not a face model)")
    cfg = load_config(
        sets=[
            f"prior.model={model}",
            f"run.workdir={root / 'work'}",
            "run.executor=local",
            "run.device=cpu",
            "run.progress=false",
            "search.steps=8",
            "search.warm_steps=3",
            "search.gaussian_samples=2000",
        ]
    )
    from pipeline.run.restore import restore

    out = root / "out.mkv"
    report = restore(video, out, cfg, overwrite=True)
    body = json.loads(out.with_name(out.name + ".report.json").read_text())
    html = out.with_name(out.name + ".report.html")
    t0 = time.perf_counter()
    rerender(out)
    redraw = time.perf_counter() - t0
    seconds = body["seconds"]
    # seconds["total"] is the time up to the join (mux and report run after it is taken)
    run_total = seconds["total"] + seconds.get("mux", 0.0) + seconds["report"]
    result = {
        "frames": report.frames,
        "shots": len(body["shots"]),
        "tracks": report.tracks,
        "face_frames": report.face_frames,
        "run_seconds": seconds,
        "run_total_seconds": round(run_total, 3),
        # the spread is a step of the plan (seconds["spread"]); the report step reads and draws
        "report_seconds": seconds["report"],
        "report_seconds_with_spread": round(seconds["report"] + seconds.get("spread", 0.0), 3),
        "report_seconds_redraw": round(redraw, 3),
        "report_share_of_run": round((seconds["report"] + seconds.get("spread", 0.0)) / run_total, 4),
        "redraw_share_of_run": round(redraw / run_total, 4),
        "html_bytes": html.stat().st_size,
        "json_bytes": out.with_name(out.name + ".report.json").stat().st_size,
    }
    if args.probe_resolution:
        result["read_seconds_per_face_frame_at_probe_resolution"] = round(
            probe_reading(args.probe_resolution), 5
        )
        result["probe_resolution"] = args.probe_resolution
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
