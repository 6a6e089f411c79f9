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


@pytest.fixture
def device() -> str:
    """Tests run on the CPU by default; set REEL_TEST_DEVICE=cuda on a GPU machine."""
    import os

    return os.environ.get("REEL_TEST_DEVICE", "cpu")
