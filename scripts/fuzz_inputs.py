"""Feed `reel probe` and `reel restore` bad and unusual inputs; count clean errors and tracebacks.

The corpus is built here, in a temporary directory, from ffmpeg's lavfi sources: truncations at
several points, corruption in headers and in the middle of streams, zero-byte and zero-frame files,
odd sizes, RGB and deep formats (FFV1 gbrp/bgr0/gbrp16, ProRes 4444, 10-bit 4:2:2 with PCM), image
sequences in and out (DPX, TIFF, PNG; gaps, empty and garbage frames), outputs that cannot be
written, settings that cannot work (--scale 100, malformed --set), bad and hostile checkpoints, a
small full filesystem (a tmpfs mount where permitted, else a file-size limit), two runs on one
output at once, and a killed run resumed.

Each case runs `python -m pipeline ...` (in-process executor; `--executor ray` for Ray) and is judged:
- clean error: non-zero exit, no traceback, the last stderr line is one `reel: error: ...` line that
  names the user's file and no temporary part;
- restored ok: exit 0 and the output reads back with the frames expected;
- outputs intact: an existing output given to a failing run (with --overwrite) is unchanged;
- stale files: hidden temporaries left beside the output after the case (0 is the goal).
The last line printed is JSON: cases, clean_errors, tracebacks, outputs_intact, stale_files,
restored_ok (and how many were expected of each).

    .venv/bin/python scripts/fuzz_inputs.py [--only NAME ...] [--keep DIR] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
_TEMP = re.compile(r"\.partial|\.part\d|\.tmp-|\.video\.mov|\.work/")
# How restores run: in-process by default; `--executor ray` sends every restore through Ray (slow to start).
EXECUTOR = ["--executor", "local"]
NOISY_FRAMES = 30  # frames of the noisy clip (noise compresses badly: it fills small disks)
MARK = "REEL_FUZZ_CASE"  # set in every case's environment: finds the processes a case left running
CASE_ID = [""]
SENTINEL = b"an older output that a failed run must leave as it is\n"


@dataclass
class Case:
    name: str
    args: list[str]  # reel arguments (after `python -m pipeline`)
    expect: str  # "ok", "error" or "either"
    names: tuple[str, ...] = ()  # file names the error line must mention (one of them)
    output: Path | None = None  # restore output (for frame counts, sentinels and stale files)
    frames: int | None = None  # frames the output must hold when it succeeds
    sentinel: bool = False  # pre-create the output and pass --overwrite: it must survive a failure
    fsize: int | None = None  # RLIMIT_FSIZE for the run (a simulated full disk)
    run: Callable[[Case], Result] | None = None  # a case that drives several processes itself
    quick: bool = False  # part of the fast subset (tests/robust)
    forbid: tuple[str, ...] = ()  # text the error line must not contain (advice that would be wrong)


@dataclass
class Result:
    name: str
    expect: str
    rc: int
    last_line: str
    traceback: bool
    clean_error: bool
    restored_ok: bool
    intact: bool | None
    stale: list[str] = field(default_factory=list)
    seconds: float = 0.0
    leftover: list[str] = field(default_factory=list)  # processes of the case still alive after it

    @property
    def as_expected(self) -> bool:
        if self.traceback or self.leftover:
            return False
        if self.expect == "ok":
            return self.restored_ok
        if self.expect == "error":
            return self.clean_error
        return self.restored_ok or self.clean_error


# ---------------------------------------------------------------------- corpus


def ffmpeg(*args: str) -> None:
    proc = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)}: {proc.stderr[-800:]}")


def clip(
    path: Path,
    *,
    size: str = "160x120",
    rate: str = "25",
    seconds: float = 2.0,
    vcodec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: str | None = None,
    extra: tuple[str, ...] = (),
    source: str = "testsrc2",
) -> Path:
    if path.exists():
        return path
    args = ["-f", "lavfi", "-i", f"{source}=s={size}:r={rate}:d={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=f=440:d={seconds}", "-c:a", audio]
    args += ["-c:v", vcodec, "-pix_fmt", pix_fmt, *extra, "-shortest", str(path)]
    ffmpeg(*args)
    return path


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: max(1, int(len(data) * fraction))])
    return dst


def corrupt(src: Path, dst: Path, start: float, length: float, seed: int = 0) -> Path:
    import random

    data = bytearray(src.read_bytes())
    rng = random.Random(seed)
    a = int(len(data) * start)
    b = min(len(data), a + max(16, int(len(data) * length)))
    for i in range(a, b):
        data[i] = rng.randrange(256)
    dst.write_bytes(bytes(data))
    return dst


def sequence(directory: Path, suffix: str, pix_fmt: str, frames: int = 12, size: str = "96x72") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    pattern = directory / f"scan_%06d{suffix}"
    if not any(directory.iterdir()):
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s={size}:r=24",
            "-frames:v",
            str(frames),
            "-pix_fmt",
            pix_fmt,
            "-start_number",
            "0",
            str(pattern),
        )
    return pattern


def build_corpus(d: Path, quick: bool = False) -> dict[str, Path]:
    """Every input file the cases use, made once in `d`."""
    d.mkdir(parents=True, exist_ok=True)
    c: dict[str, Path] = {}
    c["mkv"] = clip(d / "good.mkv", extra=("-g", "10"))
    c["mp4"] = clip(d / "good.mp4", audio="aac", extra=("-g", "10"))
    c["odd"] = clip(d / "odd.mkv", size="63x47")
    c["prores422"] = clip(
        d / "prores422.mov", vcodec="prores_ks", pix_fmt="yuv422p10le", audio="pcm_s16le", seconds=1.0
    )
    c["prores4444"] = clip(
        d / "prores4444.mov",
        vcodec="prores_ks",
        pix_fmt="yuv444p10le",
        seconds=1.0,
        extra=("-profile:v", "4"),
    )
    c["gbrp"] = clip(d / "gbrp.mkv", vcodec="ffv1", pix_fmt="gbrp", seconds=1.0)  # stored as bgr0
    c["gbrp16"] = clip(d / "gbrp16.mkv", vcodec="ffv1", pix_fmt="gbrp16le", seconds=1.0)
    c["gbrp10"] = clip(d / "gbrp10.mkv", vcodec="ffv1", pix_fmt="gbrp10le", seconds=1.0)
    c["big"] = clip(d / "big.mkv", size="640x360", seconds=0.4)
    c["noisy"] = clip(d / "noisy.mkv", size="320x240", seconds=1.2, extra=("-vf", "noise=alls=80:allf=t"))
    c["vfr"] = d / "vfr.mkv"  # 25 fps for 1 s, then 10 fps for 1 s: 35 frames, two audio streams
    if not c["vfr"].exists():
        ffmpeg(
            *["-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=1"],
            *["-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1"],
            *["-f", "lavfi", "-i", "sine=d=2", "-f", "lavfi", "-i", "sine=f=300:d=2"],
            *["-filter_complex", "[0:v]settb=1/1000[a];[1:v]settb=1/1000[b];[a][b]concat=n=2:v=1:a=0[v]"],
            *["-map", "[v]", "-map", "2:a", "-map", "3:a", "-c:v", "libx264", "-fps_mode", "passthrough"],
            str(c["vfr"]),
        )
    if not quick:  # long enough to interrupt while it runs
        c["long"] = clip(d / "long.mkv", size="320x240", seconds=20.0)
    c["audio_only"] = d / "audio_only.m4a"
    if not c["audio_only"].exists():
        ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(c["audio_only"]))
    c["zero_frames"] = d / "zero_frames.mkv"
    if not c["zero_frames"].exists():
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=64x48:r=25:d=1",
            "-frames:v",
            "0",
            "-c:v",
            "libx264",
            str(c["zero_frames"]),
        )
    c["png"] = d / "still.png"
    if not c["png"].exists():
        ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=s=80x60", "-frames:v", "1", "-pix_fmt", "rgb48be", str(c["png"])
        )
    c["empty"] = d / "empty.mp4"
    c["empty"].write_bytes(b"")
    c["text"] = d / "notes.mp4"
    c["text"].write_text("this is not a video\n" * 50)
    for f in (0.01, 0.1, 0.5, 0.9):
        c[f"mkv_cut{int(f * 100)}"] = cut(c["mkv"], d / f"cut{int(f * 100)}.mkv", f)
        c[f"mp4_cut{int(f * 100)}"] = cut(c["mp4"], d / f"cut{int(f * 100)}.mp4", f)
    c["mkv_header"] = corrupt(c["mkv"], d / "header.mkv", 0.0, 0.02)
    c["mp4_header"] = corrupt(c["mp4"], d / "header.mp4", 0.0, 0.02)
    c["mkv_middle"] = corrupt(c["mkv"], d / "middle.mkv", 0.45, 0.05)
    c["mp4_middle"] = corrupt(c["mp4"], d / "middle.mp4", 0.45, 0.05)
    c["mkv_spots"] = corrupt(
        corrupt(c["mkv"], d / "spots.mkv", 0.3, 0.005, 1), d / "spots.mkv", 0.7, 0.005, 2
    )
    c["dpx"] = sequence(d / "dpx", ".dpx", "rgb48le")
    c["tiff_dir"] = sequence(d / "tiff", ".tiff", "rgb48le").parent
    c["png_seq"] = sequence(d / "png", ".png", "rgb24")
    c["exr_seq"] = sequence(d / "exr", ".exr", "gbrpf32le")  # float scans (VFX plates)
    gap = d / "gap"
    if not gap.exists():
        shutil.copytree(d / "dpx", gap)
        (gap / "scan_000005.dpx").unlink()
    c["seq_gap"] = gap / "scan_%06d.dpx"
    hole = d / "emptyframe"
    if not hole.exists():
        shutil.copytree(d / "dpx", hole)
        (hole / "scan_000003.dpx").write_bytes(b"")
    c["seq_empty_frame"] = hole / "scan_%06d.dpx"
    junk = d / "junkframe"
    if not junk.exists():
        shutil.copytree(d / "dpx", junk)
        (junk / "scan_000004.dpx").write_bytes(os.urandom(4000))
    c["seq_junk_frame"] = junk / "scan_%06d.dpx"
    c["no_images"] = d / "no_images"
    c["no_images"].mkdir(exist_ok=True)
    (c["no_images"] / "readme.txt").write_text("no scans here")
    # checkpoints: a tiny random generator and damaged or hostile ones
    c["model"] = d / "tiny.safetensors"
    c["model_cut"] = d / "tiny_cut.safetensors"
    if not quick and not c["model"].exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "models",
                "init",
                str(c["model"]),
                "--resolution",
                "32",
                "--seed",
                "0",
            ],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
    if c["model"].exists():
        cut(c["model"], c["model_cut"], 0.6)
    c["model_junk"] = d / "junk.pkl"
    c["model_junk"].write_bytes(b"\x80\x04" + os.urandom(300))
    c["model_evil"] = d / "evil.pkl"
    c["model_evil"].write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueR.")
    return c


# ---------------------------------------------------------------------- cases


# Damaged copies of the good clips (truncated at 1, 10, 50, 90 %, a broken header, a broken middle):
# (case and corpus name, what must happen, in the quick subset).
_DAMAGED = (
    ("mkv-cut10", "error", True),
    ("mkv-cut1", "error", False),
    ("mkv-cut50", "either", False),
    ("mp4-cut10", "error", False),
    ("mp4-cut50", "error", False),
    ("mp4-cut90", "error", False),
    ("mkv-header", "error", False),
    ("mp4-header", "error", True),
    ("mkv-middle", "either", False),
    ("mp4-middle", "either", False),
)


def cases(c: dict[str, Path], out: Path) -> list[Case]:

    def o(name: str, suffix: str = ".mkv") -> Path:
        directory = out / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"restored{suffix}"

    def restore(
        name: str,
        src: Path,
        expect: str,
        suffix: str = ".mkv",
        *extra: str,
        frames: int | None = None,
        sentinel: bool | None = None,
        quick: bool = False,
        names: tuple[str, ...] = (),
    ) -> Case:
        output = o(name, suffix)
        sent = expect == "error" if sentinel is None else sentinel
        args = ["restore", str(src), "-o", str(output), *EXECUTOR, "--scale", "1", *extra]
        # a file problem names the file; a setting problem names the setting
        names = names or (src.name, output.name, src.parent.name)
        return Case(name, args, expect, names, output, frames, sent, quick=quick)

    def stored_as(
        name: str, src: Path, suffix: str, preset: str, *extra: str, frames: int, quick: bool = False
    ) -> Case:
        """A restore that must work, stored with `--set io.preset=PRESET`."""
        return restore(
            name, src, "ok", suffix, "--set", f"io.preset={preset}", *extra, frames=frames, quick=quick
        )

    def probe(name: str, src: Path, expect: str, *extra: str, quick: bool = False) -> Case:

        return Case(name, ["probe", str(src), *extra], expect, (src.name, src.parent.name), quick=quick)

    L: list[Case] = [
        # inputs that must work
        restore("h264-mp4", c["mp4"], "ok", ".mp4", frames=50),
        restore("odd-size", c["odd"], "ok", frames=50),
        restore("prores422-pcm-to-mov", c["prores422"], "ok", ".mov", frames=25, quick=True),
        restore("prores4444-master", c["prores4444"], "ok", ".mkv", "--preset", "master", frames=25),
        restore("ffv1-bgr0-to-mp4", c["gbrp"], "ok", ".mp4", frames=25, quick=True),
        stored_as("ffv1-gbrp16-master-rgb", c["gbrp16"], ".mkv", "master-rgb", frames=25, quick=True),
        restore("ffv1-gbrp10-master", c["gbrp10"], "ok", ".mkv", "--preset", "master", frames=25),
        stored_as(
            "ffv1-gbrp16-to-tiff-seq", c["gbrp16"], "_%06d.tiff", "sequence-tiff", frames=25, quick=True
        ),
        restore("png-still", c["png"], "either", ".mkv", "--preset", "master", frames=1),
        restore("dpx-seq-master", c["dpx"], "ok", ".mkv", "--preset", "master", frames=12, quick=True),
        stored_as(
            "tiff-dir-to-dpx-seq",
            c["tiff_dir"],
            "_%06d.dpx",
            "sequence-dpx",
            "--set",
            "io.sequence_rate=25",
            frames=12,
        ),
        stored_as("png-seq-to-png-seq", c["png_seq"], "_%04d.png", "sequence-png", frames=12),
        restore("exr-seq-master-rgb", c["exr_seq"], "ok", ".mkv", "--preset", "master-rgb", frames=12),
        restore("mkv-cut90", c["mkv_cut90"], "ok", frames=None),
        restore("mkv-spots", c["mkv_spots"], "either"),
        # inputs that must fail cleanly
        # (damaged files: each case is named after its corpus file)
        *(restore(name, c[name.replace("-", "_")], expect, quick=quick) for name, expect, quick in _DAMAGED),
        restore("empty-file", c["empty"], "error"),
        restore("text-as-mp4", c["text"], "error"),
        restore("audio-only", c["audio_only"], "error"),
        restore("zero-frames", c["zero_frames"], "error", quick=True),
        restore("missing-file", c["mkv"].with_name("nope.mkv"), "error"),
        restore("dir-without-images", c["no_images"], "error"),
        restore("seq-gap", c["seq_gap"], "error", quick=True),
        restore("seq-empty-frame", c["seq_empty_frame"], "error"),
        restore("seq-junk-frame", c["seq_junk_frame"], "either"),
        # outputs and settings that cannot work
        restore("pcm-into-mp4", c["prores422"], "error", ".mp4", quick=True),
        restore("scale-100", c["big"], "error", ".mkv", "--scale", "100", quick=True),
        restore(
            "malformed-set", c["mkv"], "error", ".mkv", "--set", "io.crf=[1", quick=True, names=("io.crf",)
        ),
        restore("unknown-key", c["mkv"], "error", ".mkv", "--set", "io.nonsense=1", names=("nonsense",)),
        restore("unknown-preset", c["mkv"], "error", ".mkv", "--preset", "nonesuch", names=("nonesuch",)),
        restore(
            "bad-rgb-matrix",
            c["gbrp"],
            "error",
            ".mp4",
            "--set",
            "io.rgb_matrix=xyz",
            names=("io.rgb_matrix",),
        ),
        restore("seq-out-picks-its-preset", c["mkv"], "ok", "_%06d.dpx", frames=50),
        restore("model-missing", c["mkv"], "error", ".mkv", "--model", str(c["model"].with_name("no.pt"))),
        restore("model-truncated", c["mkv"], "error", ".mkv", "--model", str(c["model_cut"])),
        restore(
            "model-junk",
            c["model_junk"].with_name("good.mkv"),
            "error",
            ".mkv",
            "--model",
            str(c["model_junk"]),
        ),
        restore("model-evil", c["mkv"], "error", ".mkv", "--model", str(c["model_evil"]), quick=True),
        restore("model-damaged-mp4", c["mp4_middle"], "either", ".mp4", "--model", str(c["model"])),
        restore("model-spots-mkv", c["mkv_spots"], "either", ".mkv", "--model", str(c["model"])),
        # probe
        probe("probe-good", c["mkv"], "ok"),
        probe("probe-dpx", c["dpx"], "ok", "--rate", "24000/1001", quick=True),
        probe("probe-cut1", c["mkv_cut1"], "error"),
        probe("probe-text", c["text"], "error"),
        probe("probe-empty", c["empty"], "error", quick=True),
        probe("probe-gap", c["seq_gap"], "error"),
        probe("probe-exact-middle", c["mp4_middle"], "either", "--exact"),
        Case("probe-bad-rate", ["probe", str(c["dpx"]), "--rate", "fast"], "error", ("--rate",)),
    ]

    # issue 22: what a new user typed or had (one line each, with "did you mean" where it helps)
    def usage(name: str, args: list[str], names: tuple[str, ...], forbid: tuple[str, ...] = ()) -> Case:
        return Case(name, args, "error", names, quick=True, forbid=forbid)

    good = str(c["mkv"])
    L += [
        restore("vfr-mkv-two-audio", c["vfr"], "ok", ".mkv", frames=35, quick=True),
        usage("scale-fraction", ["restore", good, "-o", str(o("frac")), "--scale", "1.5"], ("--scale",)),
        usage("scale-zero", ["restore", good, "-o", str(o("zero")), "--scale", "0"], ("--scale",)),
        usage("output-option-missing", ["restore", good], ("-o", "--output")),
        usage("command-typo", ["restor", good, "-o", str(o("typo"))], ("did you mean", "restore")),
        usage("preset-typo", ["restore", good, "-o", str(o("pt")), "--preset", "newsreal"], ("newsreel",)),
        usage("set-key-typo", ["restore", good, "-o", str(o("kt")), "--set", "io.crff=18"], ("io.crf",)),
        usage(
            "output-is-input-no-overwrite",
            ["restore", good, "-o", good, *EXECUTOR],
            (c["mkv"].name,),
            forbid=("--overwrite",),
        ),
    ]
    L.append(Case("ctrl-c-under-ray", [], "error", run=_interrupt_case(c, out)))
    # unwritable outputs
    existing = o("exists")
    existing.write_bytes(SENTINEL)
    L.append(
        Case(
            "output-exists",
            ["restore", str(c["mkv"]), "-o", str(existing), *EXECUTOR],
            "error",
            (existing.name,),
            existing,
            quick=True,
        )
    )
    missing_dir = out / "no-such-dir" / "restored.mkv"
    L.append(
        Case(
            "output-dir-missing",
            ["restore", str(c["mkv"]), "-o", str(missing_dir), *EXECUTOR],
            "error",
            (missing_dir.name, "no-such-dir"),
        )
    )
    not_dir = out / "a-file"
    not_dir.write_text("x")
    L.append(
        Case(
            "output-parent-is-file",
            ["restore", str(c["mkv"]), "-o", str(not_dir / "r.mkv"), *EXECUTOR],
            "error",
            ("r.mkv", "a-file"),
        )
    )
    L.append(
        Case(
            "output-is-input",
            ["restore", str(c["mkv"]), "-o", str(c["mkv"]), *EXECUTOR, "--overwrite"],
            "error",
            (c["mkv"].name,),
        )
    )
    L.append(Case("output-readonly", [], "error", run=_readonly_case(c, out)))
    L.append(
        Case(
            "full-disk-up-front",
            [],
            "error",
            run=_full_disk_case(c, out, "512k", "too full", 1, 300_000),
            quick=True,
        )
    )
    L.append(
        Case("full-disk-mid-run", [], "error", run=_full_disk_case(c, out, "6m", "is full", 2, 2_000_000))
    )
    L.append(Case("two-runs-one-output", [], "error", run=_concurrent_case(c, out), quick=True))
    L.append(Case("killed-then-resumed", [], "ok", run=_killed_case(c, out)))
    L.append(Case("damaged-part-redone", [], "ok", run=_killed_case(c, out, damage=True)))
    return L


# ---------------------------------------------------------------------- running and judging


def reel(args: list[str], *, fsize: int | None = None, timeout: float = 300) -> tuple[int, str]:
    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1", MARK: CASE_ID[0]}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        return 124, f"timed out after {timeout:.0f} s: {exc}"
    return proc.returncode, proc.stderr


def leftover_processes(mark: str, grace: float = 10.0) -> list[str]:
    """Processes started by a case that outlived it (found by the marker in their environment, which
    Ray's workers and agents inherit); a few seconds are given to processes that are shutting down."""
    deadline = time.monotonic() + grace
    while True:
        alive = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if f"{MARK}={mark}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    alive.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:80])
            except OSError:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def output_frames(output: Path) -> int | None:
    sys.path.insert(0, str(ROOT))
    from pipeline.io.sequence import existing_outputs, is_sequence_output
    from pipeline.io.verify import count_video_packets

    try:
        if is_sequence_output(output):
            return len(existing_outputs(output)) or None
        return count_video_packets(output)
    except Exception:
        return None


def stale_files(output: Path | None) -> list[str]:
    """Hidden temporaries beside the output, and temporaries inside its work directory."""
    if output is None or not output.parent.is_dir():
        return []
    found = [p.name for p in output.parent.iterdir() if p.name.startswith(".") and _TEMP.search(p.name + "/")]
    work = output.with_name(output.name + ".work")
    if work.is_dir():
        found += [str(p.relative_to(output.parent)) for p in work.rglob("*") if _TEMP.search(p.name)]
    return found


def judge(case: Case, rc: int, stderr: str, seconds: float, intact: bool | None = None) -> Result:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    traceback = "Traceback (most recent call last)" in stderr
    errors = [ln for ln in lines if ln.startswith("reel: error:")]
    names = case.names or ()
    clean = (
        rc != 0
        and not traceback
        and len(errors) == 1
        and last == errors[0]
        and (not names or any(n and n in last for n in names))
        and not _TEMP.search(last)
        and not any(f in last for f in case.forbid)
    )
    ok = rc == 0 and not traceback
    if ok and case.output is not None:
        frames = output_frames(case.output)
        ok = frames is not None and frames > 0 and (case.frames is None or frames == case.frames)
    if intact is None and case.sentinel and case.output is not None:
        intact = case.output.is_file() and case.output.read_bytes() == SENTINEL
    return Result(
        case.name,
        case.expect,
        rc,
        last[:300],
        traceback,
        clean,
        ok,
        intact,
        stale_files(case.output),
        seconds,
    )


def run_case(case: Case) -> Result:
    CASE_ID[0] = f"{case.name}-{os.getpid()}-{time.monotonic_ns()}"
    result = _run_case(case)
    result.leftover = leftover_processes(CASE_ID[0])
    return result


def _run_case(case: Case) -> Result:
    if case.run is not None:
        return case.run(case)
    args = list(case.args)
    if case.sentinel and case.output is not None:
        case.output.write_bytes(SENTINEL)
        args.append("--overwrite")
    t = time.perf_counter()
    rc, stderr = reel(args, fsize=case.fsize)
    return judge(case, rc, stderr, time.perf_counter() - t)


def _readonly_case(c: dict[str, Path], out: Path) -> Callable[[Case], Result]:
    def run(case: Case) -> Result:
        d = out / "readonly"
        _fresh(d)
        target = d / "restored.mkv"
        case.output, case.names = target, ("restored.mkv", "readonly")
        mounted = _mount(d, "ro", size="1m")
        if not mounted:
            d.chmod(0o555)  # works for non-root users; root writes anyway (then the case is a success)
        t = time.perf_counter()
        rc, stderr = reel(["restore", str(c["mkv"]), "-o", str(target), *EXECUTOR])
        result = judge(case, rc, stderr, time.perf_counter() - t)
        if mounted:
            _umount(d)
        else:
            d.chmod(0o755)
            if rc == 0:  # root: the directory was writable after all; nothing to judge
                result.expect = "either"
        return result

    return run


def _fresh(d: Path) -> None:
    """An empty directory `d` (a kept corpus directory may hold an earlier run's outputs)."""
    if d.is_dir():
        _umount(d)
        shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)


def _mount(d: Path, opts: str, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount") or os.environ.get("REEL_FUZZ_NO_MOUNT"):
        return False
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},{opts}", "tmpfs", str(d)], capture_output=True
    )
    return proc.returncode == 0


def _umount(d: Path) -> None:
    subprocess.run(["umount", str(d)], capture_output=True)


def _full_disk_case(
    c: dict[str, Path], out: Path, size: str, says: str, scale: int, fsize: int
) -> Callable[[Case], Result]:
    """A small filesystem (tmpfs of `size`): too small for the estimate (refused up front) or filling
    up mid-run. After it grows, the rerun must succeed and reuse nothing partial. Without mount
    rights, a file-size limit stands in for the full disk."""

    def run(case: Case) -> Result:
        d = out / f"fulldisk-{size}"
        _fresh(d)
        target = d / "restored.mkv"
        case.output, case.names, case.frames = target, ("restored.mkv", d.name), NOISY_FRAMES
        mounted = _mount(d, "rw", size=size)
        args = ["restore", str(c["noisy"]), "-o", str(target), *EXECUTOR, "--scale", str(scale)]
        t = time.perf_counter()
        rc, stderr = reel(args, fsize=None if mounted else fsize)
        result = judge(case, rc, stderr, time.perf_counter() - t)
        line = result.last_line
        said_full = (says in line) if mounted else ("full" in line or "file size limit" in line)
        result.clean_error = result.clean_error and said_full
        # then there is room: the rerun must finish, whatever the failed run left
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=256m", str(d)], capture_output=True)
        rc2, stderr2 = reel(args)
        again = judge(Case("", [], "ok", output=target, frames=NOISY_FRAMES), rc2, stderr2, 0.0)
        if not again.restored_ok:
            result.clean_error = False
            result.last_line += f" | rerun after freeing space: {again.last_line}"
        result.stale = again.stale
        if mounted:
            _umount(d)
        return result

    return run


def _concurrent_case(c: dict[str, Path], out: Path) -> Callable[[Case], Result]:
    def run(case: Case) -> Result:
        d = out / "concurrent"
        _fresh(d)
        target = d / "restored.mkv"
        case.output, case.names = target, ("restored.mkv",)
        args = ["restore", str(c["noisy"]), "-o", str(target), *EXECUTOR, "--scale", "2"]
        env = {**os.environ, "TQDM_DISABLE": "1", MARK: CASE_ID[0]}
        first = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        held = _wait_for_lock(target, first)  # the first run is past its preflight and holds the lock
        # Paused while the second run tries: a fast machine would otherwise finish the first run
        # before the second has started (and the second would then rightly overwrite it).
        if held:
            os.kill(first.pid, signal.SIGSTOP)
        try:
            t = time.perf_counter()
            rc, stderr = reel([*args, "--overwrite"])
        finally:
            if held:
                os.kill(first.pid, signal.SIGCONT)
        result = judge(case, rc, stderr, time.perf_counter() - t)
        result.clean_error = result.clean_error and held and "another reel run" in result.last_line
        if not held:
            result.last_line += " | the first run never held the lock"
        _, err1 = first.communicate(timeout=300)
        if first.returncode != 0 or output_frames(target) != NOISY_FRAMES:
            result.clean_error = False
            result.last_line += f" | first run: {err1.strip().splitlines()[-1:]}"
        result.stale = stale_files(target)
        return result

    return run


def _wait_for_lock(output: Path, proc: subprocess.Popen[str], timeout: float = 300) -> bool:
    """Whether `proc` came to hold the lock on `output` (False: it ended first, or the time ran out)."""
    sys.path.insert(0, str(ROOT))
    from pipeline.run.lock import _lock_file

    file = _lock_file(output.resolve())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            if file.read_text().split()[:1] == [str(proc.pid)]:
                return True
        time.sleep(0.05)
    return False


def _killed_case(c: dict[str, Path], out: Path, damage: bool = False) -> Callable[[Case], Result]:
    """A run killed (SIGKILL) once it has stored its first encoded part; the rerun must finish with
    every frame. With `damage`, the stored part is then cut in half under its final name (what a
    full disk or a copy cut short leaves): the rerun must notice, redo it, and say so."""

    def run(case: Case) -> Result:
        d = out / ("damaged-part" if damage else "killed")
        _fresh(d)
        target = d / "restored.mkv"
        case.output, case.frames = target, NOISY_FRAMES
        args = ["restore", str(c["noisy"]), "-o", str(target), *EXECUTOR, "--scale", "2"]
        args += ["--set", "run.segment_frames=8"]  # several parts: some stored, some not yet
        env = {**os.environ, "TQDM_DISABLE": "1"}
        first = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        work = target.with_name(target.name + ".work")
        deadline = time.monotonic() + 120
        parts: list[Path] = []
        while time.monotonic() < deadline and first.poll() is None and not parts:
            parts = sorted(work.glob("compose/*/part-*.mov"))
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        if damage and parts:
            data = parts[0].read_bytes()
            parts[0].write_bytes(data[: len(data) // 2])
        t = time.perf_counter()
        rc, stderr = reel(args)
        result = judge(case, rc, stderr, time.perf_counter() - t)
        if damage and not parts:
            result.last_line = "no part was stored before the run finished; nothing to damage"
            result.restored_ok = False
        elif damage and "removed and redone" not in stderr:
            result.restored_ok = False
            result.last_line = "the damaged part was not reported as redone: " + result.last_line
        return result

    return run


def _interrupt_case(c: dict[str, Path], out: Path) -> Callable[[Case], Result]:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) once the embedded Ray has started
    and work is under way: exit 130, one line, no output, no partial, no Ray process left."""

    def run(case: Case) -> Result:
        d = out / "interrupted"
        _fresh(d)
        target = d / "restored.mkv"
        case.output = target
        args = ["restore", str(c["long"]), "-o", str(target), "--executor", "ray", "--scale", "2"]
        args += ["--set", "run.num_cpus=2", "--set", "run.segment_frames=50"]
        env = {**os.environ, "TQDM_DISABLE": "1", MARK: CASE_ID[0]}
        t = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        work = target.with_name(target.name + ".work")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not any(work.glob("*/*/*")):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
        result = judge(case, proc.returncode, stderr, time.perf_counter() - t)
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        result.last_line = lines[-1][:300] if lines else ""
        result.clean_error = (
            proc.returncode == 130
            and not result.traceback
            and result.last_line.startswith("reel: interrupted")
            and sum(ln.startswith(("reel: interrupted", "reel: error")) for ln in lines) == 1
            and not target.exists()
        )
        return result

    return run


def summarize(results: list[Result]) -> dict[str, object]:
    errors = [r for r in results if r.expect == "error"]
    oks = [r for r in results if r.expect == "ok"]
    sentinels = [r for r in results if r.intact is not None]
    return {
        "cases": len(results),
        "as_expected": sum(r.as_expected for r in results),
        "clean_errors": sum(r.clean_error for r in results),
        "errors_expected": len(errors),
        "errors_clean": sum(r.clean_error for r in errors),
        "tracebacks": sum(r.traceback for r in results),
        "outputs_intact": sum(bool(r.intact) for r in sentinels),
        "outputs_checked": len(sentinels),
        "stale_files": sum(len(r.stale) for r in results),
        "processes_left": sum(len(r.leftover) for r in results),
        "restored_ok": sum(r.restored_ok for r in oks),
        "restores_expected": len(oks),
        "seconds": round(sum(r.seconds for r in results), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="case names to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="only the fast representative subset")
    parser.add_argument(
        "--keep", type=Path, default=None, help="build the corpus and outputs here and keep them"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--executor", choices=("local", "ray"), default="local", help="how restores run")
    args = parser.parse_args(argv)
    EXECUTOR[:] = ["--executor", args.executor] + (
        ["--set", "run.num_cpus=2"] if args.executor == "ray" else []
    )
    root = args.keep or Path(tempfile.mkdtemp(prefix="reel-fuzz-"))
    try:
        corpus = build_corpus(root / "corpus", quick=args.quick)
        all_cases = cases(corpus, root / "out")
        chosen = [
            k for k in all_cases if (args.only is None or k.name in args.only) and (k.quick or not args.quick)
        ]
        if args.list:
            print("\n".join(f"{k.name:28s} {k.expect}" for k in chosen))
            return 0
        results = []
        for case in chosen:
            r = run_case(case)
            results.append(r)
            mark = "ok " if r.as_expected else "BAD"
            extra = f" stale={r.stale}" if r.stale else ""
            extra += "" if r.intact is None else f" intact={r.intact}"
            extra += f" left running: {r.leftover}" if r.leftover else ""
            print(
                f"{mark} {r.name:28s} expect={r.expect:6s} rc={r.rc:<3d} {r.seconds:5.1f}s "
                f"{r.last_line}{extra}",
                flush=True,
            )
        print(json.dumps(summarize(results)))
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
