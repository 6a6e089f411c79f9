"""Placement on a cluster with GPUs, checked on the CPU with Ray's logical GPU resource (a node
started with `num_gpus=2`): two search actors, one per GPU, both searching; the learned upscale's
compose tasks on both GPUs; the other steps on CPUs only; the output equal to the in-process
executor's. (The default suite's guard is tests/run/test_gpu_lanes.py.)"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Config, load_config
from pipeline.io.decode import open_video
from pipeline.run.restore import restore
from tests.upscalers import save_compact

# two restores with faces and a Ray start: ~30 s on the shared 2-core CPU
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_logical_gpus")]

ray = pytest.importorskip("ray")
torch = pytest.importorskip("torch")


def _config(model: Path, upscaler: Path, workdir: Path, executor: str) -> Config:
    return load_config(
        sets=[
            f"prior.model={model}",
            f"upscale.model={upscaler}",
            f"run.workdir={workdir}",
            f"run.executor={executor}",
            f"run.timeline={workdir}.timeline.json",
            "run.device=cpu",  # the GPU is logical: the work itself runs on the CPU
            "run.segment_frames=8",
            "run.progress=false",
            "search.steps=8",
            "search.warm_steps=3",
            "search.gaussian_samples=2000",
            "search.batch_size=1",  # a search unit per track (3): work for both search actors
            "report.spread_k=0",
            "io.preset=master-ffv1",
            "compose.max_face_stretch=8",  # the 16-px test generator's faces are pasted
        ]
    )


def _frames(path: Path) -> list[np.ndarray]:
    with open_video(path).reader() as reader:
        return [f.image for f in reader]


def test_search_and_learned_upscale_use_both_gpus_and_match_in_process(
    face_video: Path, tiny_model: Path, tmp_path: Path
) -> None:
    upscaler = save_compact(tmp_path / "compact.pth", num_feat=8, num_conv=2)
    outputs = {}
    for executor in ("local", "ray"):
        cfg = _config(tiny_model, upscaler, tmp_path / executor, executor)
        report = restore(face_video, tmp_path / f"{executor}.mkv", cfg)
        assert report.searched == 24
        outputs[executor] = _frames(report.output)
    assert len(outputs["ray"]) == len(outputs["local"]) == 16
    for a, b in zip(outputs["ray"], outputs["local"], strict=True):
        assert np.array_equal(a, b)

    steps = json.loads((tmp_path / "ray.timeline.json").read_text())["steps"]
    gpus: dict[str, set[tuple[str, ...]]] = {}
    for step in steps:
        gpus.setdefault(step["kind"], set()).add(tuple(step["gpus"]))
    assert gpus["search"] == {("0",), ("1",)}  # two search actors, one per GPU, both given units
    assert gpus["compose"] == {("0",), ("1",)}  # the learned upscale's segments alternate GPU lanes
    for kind in ("scan", "stitch", "crops", "join"):
        assert gpus[kind] == {()}, kind  # CPU steps (and the driver's join) take no GPU
    local = json.loads((tmp_path / "local.timeline.json").read_text())["steps"]
    assert {tuple(s["gpus"]) for s in local} == {()}  # in-process: no Ray, no GPU ids


def test_without_a_learned_upscaler_compose_takes_no_gpu(face_video: Path, tmp_path: Path) -> None:
    cfg = load_config(
        sets=[
            f"run.workdir={tmp_path / 'w'}",
            "run.executor=ray",
            f"run.timeline={tmp_path / 't.json'}",
            "run.segment_frames=8",
            "run.progress=false",
        ]
    )
    restore(face_video, tmp_path / "out.mkv", replace(cfg))
    steps = json.loads((tmp_path / "t.json").read_text())["steps"]
    assert {tuple(s["gpus"]) for s in steps if s["kind"] == "compose"} == {()}
