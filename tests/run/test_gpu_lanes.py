"""GPU scheduling in the default suite: the step kinds' table decides which steps ask for a GPU share,
GPU lanes hand steps to GPUs in turn, and on a node with two logical GPUs (Ray's `num_gpus`, the work
itself on the CPU) a learned upscale's compose steps run one on each GPU, seen from Ray's runtime
context inside each step, with the output the in-process executor's. The slow companion with faces
and search actors is tests/run/test_gpu_placement.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Config, load_config
from pipeline.faces.synthetic import write_video
from pipeline.io.decode import open_video
from pipeline.run.lanes import LaneCounts, lane_cpus, usable
from pipeline.run.restore import restore
from pipeline.run.work import KINDS, StepKind, gpu_share
from tests.upscalers import save_compact

torch = pytest.importorskip("torch")

CPU_KINDS = {StepKind.SCAN, StepKind.STITCH, StepKind.CROPS, StepKind.JOIN_CHUNKS, StepKind.JOIN}
SEARCH_KINDS = {StepKind.GUIDE, StepKind.SEARCH, StepKind.ANCHORS, StepKind.CHUNK, StepKind.SPREAD}


def _shares(*sets: str) -> dict[StepKind, float]:
    cfg = load_config(sets=["run.num_gpus_per_search=1", "run.num_gpus_per_upscale=0.5", *sets])
    return {kind: gpu_share(kind, cfg) for kind in KINDS}


def test_the_table_gives_gpu_shares_to_gpu_work_only() -> None:
    plain = _shares()
    assert {k for k, s in plain.items() if s > 0} == SEARCH_KINDS  # classical upscale, numpy film
    assert all(plain[k] == 1.0 for k in SEARCH_KINDS)
    learned = _shares("upscale.model=x.pth")
    assert {k for k, s in learned.items() if s > 0} == SEARCH_KINDS | {StepKind.COMPOSE}
    assert learned[StepKind.COMPOSE] == 0.5
    torch_film = _shares("film.weave=true", "film.device=cuda")
    assert {k for k, s in torch_film.items() if s > 0} == SEARCH_KINDS | {StepKind.COMPOSE, StepKind.CLEAN}
    # the device alone, with no cleaning stage on, cleans nothing in torch; compose runs there
    named = _shares("film.device=cuda")
    assert named[StepKind.CLEAN] == 0.0 and named[StepKind.COMPOSE] == 0.5
    assert _shares("run.device=cuda:1")[StepKind.COMPOSE] == 0.5
    torch_on_cpu = _shares("film.weave=true", "film.device=cpu")  # torch code on the worker's CPU
    assert torch_on_cpu[StepKind.CLEAN] == torch_on_cpu[StepKind.COMPOSE] == 0.0
    for shares in (plain, learned, torch_film):
        assert all(shares[k] == 0.0 for k in CPU_KINDS)  # decode, scan, stitch, mux: never a GPU


def test_lanes_take_turns_and_fill_evenly() -> None:
    counts = LaneCounts(2)
    assert [counts.take() for _ in range(4)] == [0, 1, 0, 1]  # concurrent steps: two per GPU
    for lane in (0, 1, 0, 1):
        counts.release(lane)
    assert [counts.take(), counts.take()] == [0, 1]
    counts.release(0)  # lane 0 is free again, lane 1 still busy: lane 0 next
    assert counts.take() == 0
    counts = LaneCounts(2)
    for _ in range(3):  # one step at a time still alternates: the fewest given breaks the tie
        lane = counts.take()
        counts.release(lane)
    assert counts.given == [2, 1]
    assert counts.take() == 1


def test_lanes_leave_a_cpu_to_the_cpu_steps() -> None:
    assert lane_cpus(2, 2) == 0.5
    assert lane_cpus(16, 2) == 1.0
    assert lane_cpus(1, 1) == 0.0
    assert usable(2, [1.0, 0.5]) and not usable(0.5, [0.5]) and not usable(2, [2.0])


ray = pytest.importorskip("ray")


def _config(upscaler: Path, workdir: Path, executor: str) -> Config:
    return load_config(
        sets=[
            f"upscale.model={upscaler}",
            f"run.workdir={workdir}",
            f"run.executor={executor}",
            f"run.timeline={workdir}.timeline.json",
            "run.device=cpu",  # the GPUs are logical: the work itself runs on the CPU
            "run.segment_frames=4",
            "run.progress=false",
            "io.preset=master-ffv1",
        ]
    )


def test_learned_upscale_segments_run_on_both_gpus_and_match_in_process(
    two_logical_gpus: None, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (24, 32, 3), np.uint8) for _ in range(8)]  # two 4-frame segments
    clip = write_video(frames, tmp_path / "clip.mkv")
    upscaler = save_compact(tmp_path / "compact.pth", num_feat=4, num_conv=1)
    out: dict[str, list[np.ndarray]] = {}
    for executor in ("local", "ray"):
        report = restore(clip, tmp_path / f"{executor}.mkv", _config(upscaler, tmp_path / executor, executor))
        with open_video(report.output).reader() as reader:
            out[executor] = [f.image for f in reader]
    assert len(out["ray"]) == len(out["local"]) == 8
    assert all(np.array_equal(a, b) for a, b in zip(out["ray"], out["local"], strict=True))
    steps = json.loads((tmp_path / "ray.timeline.json").read_text())["steps"]
    compose = sorted(tuple(s["gpus"]) for s in steps if s["kind"] == "compose")
    assert compose == [("0",), ("1",)]  # what each compose step saw: one GPU each, not both on GPU 0
    assert all(s["gpus"] == [] for s in steps if s["kind"] != "compose")  # the join: no GPU
