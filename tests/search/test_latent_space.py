from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.config import SearchConfig
from pipeline.errors import SearchError
from pipeline.prior.stylegan2 import Generator, make_random_generator
from pipeline.search import latent_space
from pipeline.search.latent_space import GaussianizedW, fitted_space, model_hash


def test_to_w_and_from_w_are_inverse(tiny_G: Generator, tiny_space: GaussianizedW) -> None:
    w = tiny_G.mapping(torch.randn(64, tiny_G.z_dim))  # [64, num_ws, w_dim]
    assert torch.allclose(tiny_space.to_w(tiny_space.from_w(w)), w, atol=1e-4)
    v = torch.randn(4, tiny_G.num_ws, tiny_G.w_dim)
    assert torch.allclose(tiny_space.from_w(tiny_space.to_w(v)), v, atol=1e-4)


def test_fit_gaussianises_fresh_mapping_outputs(tiny_G: Generator, tiny_space: GaussianizedW) -> None:
    z = torch.randn(4096, tiny_G.z_dim, generator=torch.Generator().manual_seed(99))
    v = tiny_space.from_w(tiny_G.mapping(z)[:, 0])  # [4096, w_dim], unseen samples
    assert v.mean(0).abs().max() < 0.1
    assert ((v.std(0) - 1).abs().max()) < 0.1
    # a random v maps to a typical w: same spread as the mapping's own outputs
    w_rand = tiny_space.to_w(torch.randn(4096, tiny_G.w_dim))
    w_true = tiny_G.mapping(z)[:, 0]
    assert abs(float(w_rand.std(0).mean() / w_true.std(0).mean()) - 1) < 0.1


def test_fit_is_seeded_and_independent_of_chunk_size(tiny_G: Generator) -> None:
    a = GaussianizedW.fit(tiny_G, n=3000, seed=5, chunk=3000, use_cache=False)
    b = GaussianizedW.fit(tiny_G, n=3000, seed=5, chunk=700, use_cache=False)
    c = GaussianizedW.fit(tiny_G, n=3000, seed=6, chunk=700, use_cache=False)
    assert torch.allclose(a.mean, b.mean, atol=1e-5) and torch.allclose(a.std, b.std, atol=1e-5)
    assert not torch.allclose(a.mean, c.mean, atol=1e-5)


def test_fit_is_cached_per_model(tiny_G: Generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = GaussianizedW.fit(tiny_G, n=1000, seed=0, cache_dir=tmp_path)
    assert len(list((tmp_path / "gaussian_fit").glob("*.safetensors"))) == 1

    fits: list[object] = []
    real = latent_space._fit_stats

    def counted(*args: Any, **kwargs: Any) -> Any:
        fits.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(latent_space, "_fit_stats", counted)
    again = GaussianizedW.fit(tiny_G, n=1000, seed=0, cache_dir=tmp_path)
    assert fits == []  # the cached fit was used
    assert torch.equal(first.mean, again.mean) and torch.equal(first.std, again.std)
    other = make_random_generator(32, 4, z_dim=32, w_dim=32, channel_max=32, mapping_layers=4)
    assert model_hash(other) != model_hash(tiny_G)
    theirs = GaussianizedW.fit(other, n=1000, seed=0, cache_dir=tmp_path)
    assert len(fits) == 1  # another model: fitted, not given the first model's statistics
    assert theirs.mean.shape == first.mean.shape and not torch.allclose(theirs.mean, first.mean)
    assert len(list((tmp_path / "gaussian_fit").glob("*.safetensors"))) == 2


def test_corrupt_cache_is_refitted(
    tiny_G: Generator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    GaussianizedW.fit(tiny_G, n=500, seed=0, cache_dir=tmp_path)
    (path,) = (tmp_path / "gaussian_fit").glob("*.safetensors")
    path.write_bytes(b"not a tensor file")
    space = GaussianizedW.fit(tiny_G, n=500, seed=0, cache_dir=tmp_path)
    assert space.mean.shape == (tiny_G.w_dim,)
    assert "refitting" in caplog.text


def test_bad_statistics_raise() -> None:
    with pytest.raises(SearchError):
        GaussianizedW(torch.zeros(4), torch.zeros(4))
    with pytest.raises(SearchError):
        GaussianizedW(torch.zeros(4), torch.ones(5))


def test_fitted_space_follows_the_settings(tiny_G: Generator, tmp_path: Path) -> None:
    settings = SearchConfig(gaussian_samples=1500, seed=3)
    space = fitted_space(tiny_G, settings, cache_dir=tmp_path)
    direct = GaussianizedW.fit(tiny_G, n=1500, seed=3, use_cache=False)
    assert torch.allclose(space.mean, direct.mean) and torch.allclose(space.std, direct.std)
    assert (tmp_path / "gaussian_fit").is_dir()
