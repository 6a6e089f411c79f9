"""Shared test fixtures. Tests never touch the network and make their own media and generators."""

from __future__ import annotations

import logging

import pytest


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
