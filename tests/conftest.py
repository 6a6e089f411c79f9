"""Shared test fixtures. Tests never touch the network and make their own media and generators."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.faces.synthetic import larger_faces, render, standard_shots, write_video
from pipeline.prior.load import RANDOM_SOURCE_PREFIX


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_error_logs: the test expects ERROR log records")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    handler = _ErrorCollector()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        outcome = yield
    finally:
        root.removeHandler(handler)
    if handler.records and item.get_closest_marker("allow_error_logs") is None and outcome.excinfo is None:
        first = handler.records[0]
        pytest.fail(f"test logged an error: {first.name}: {first.getMessage()}", pytrace=False)


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _devices() -> list[str]:
    """The CPU always; CUDA too where torch sees it (or the device REEL_TEST_DEVICE names)."""
    import os

    asked = os.environ.get("REEL_TEST_DEVICE", "cpu")
    if asked != "cpu":
        return ["cpu", asked]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return ["cpu"]
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.fixture(params=_devices())
def device(request: pytest.FixtureRequest) -> str:
    """Every device test runs on the CPU, and on CUDA where present (kornia-style)."""
    return str(request.param)


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The end-to-end tests' clip (restore, Ray, report): 16 frames, 160×90, two shots with two and
    then one moving face (3 tracks), gray and grainy, with an audio track."""
    shots = larger_faces([replace(s, length=8) for s in standard_shots()[:2]])
    return write_video(render(shots, factor=8, seed=3).frames, tmp_path_factory.mktemp("faces") / "faces.mkv")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-px seeded random generator, labelled as a test generator (not a face model)."""
    from pipeline.prior.cache_format import save_generator
    from pipeline.prior.stylegan2 import make_random_generator

    G = make_random_generator(16, seed=0, z_dim=32, w_dim=32, channel_max=32, mapping_layers=2)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_generator(
        G, path, source=f"{RANDOM_SOURCE_PREFIX}: seed 0, 16 px (test generator, not a face model)"
    )


def _embedded(**resources: float) -> Iterator[None]:
    ray = pytest.importorskip("ray")
    from pipeline.run.ray_runtime import configure_auth

    configure_auth()
    ray.init(num_cpus=2, **resources, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def embedded_ray() -> Iterator[None]:
    """An embedded Ray of 2 CPUs for the module (use with `pytest.mark.usefixtures`)."""
    yield from _embedded()


@pytest.fixture(scope="module")
def two_logical_gpus() -> Iterator[None]:
    """An embedded Ray of 2 CPUs and 2 logical GPUs (Ray's resource only: placement is checked on the
    CPU, each step seeing the GPU ids Ray gave it)."""
    yield from _embedded(num_gpus=2)
