"""Tiny seeded generators for the search tests (16-32 px, few channels: CPU-fast, not faces)."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import SearchConfig
from pipeline.prior.stylegan2 import Generator, make_random_generator
from pipeline.search.latent_space import GaussianizedW


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # the test machine is shared; tiny convolutions gain nothing from more threads
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_G() -> Generator:
    return make_random_generator(32, 3, z_dim=32, w_dim=32, channel_max=32, mapping_layers=4)


@pytest.fixture(scope="session")
def tiny_space(tiny_G: Generator) -> GaussianizedW:
    return GaussianizedW.fit(tiny_G, n=8192, seed=0, chunk=2048, use_cache=False)


@pytest.fixture
def fast_settings() -> SearchConfig:
    return SearchConfig(steps=60, warm_steps=20, batch_size=8, truncate_factor=0.0)
