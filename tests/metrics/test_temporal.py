from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics.temporal import boundary_ratio, flicker, frame_changes, psnr, relative_change


def test_psnr() -> None:
    a = np.zeros((4, 4, 3))
    assert psnr(a, a) == 100.0
    assert psnr(a, a + 0.1) == pytest.approx(20.0)


def test_changes_and_flicker() -> None:
    rng = np.random.default_rng(0)
    truth = np.cumsum(rng.normal(size=(6, 4, 4, 3)) * 0.01, axis=0)
    assert frame_changes(truth).shape == (5,)
    assert np.allclose(flicker(truth + 0.3, truth), 0)  # a constant error does not flicker
    assert relative_change(truth, truth) == pytest.approx(1.0)
    noisy = truth + rng.normal(size=truth.shape) * 0.05
    assert flicker(noisy, truth).mean() > 0.05 and relative_change(noisy, truth) > 2


def test_boundary_ratio() -> None:
    changes = np.array([1.0, 1.0, 3.0, 1.0, 1.0])
    assert boundary_ratio(changes, [2]) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        boundary_ratio(changes, [])
