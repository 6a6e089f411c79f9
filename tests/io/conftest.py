"""Session-cached generated clips for the I/O tests."""

from __future__ import annotations

import pytest

from tests.media import MediaCache


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache.for_session(tmp_path_factory)
