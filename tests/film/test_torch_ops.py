"""Film cleaning's torch operations (`film.device`): the same code on the CPU and on CUDA, checked
against the numpy/OpenCV stage on the astronaut photograph: weave's shift within 5e-5 of a [0, 1]
frame on the CPU (1e-3 on CUDA), and a whole weave-cleaning run within one 8-bit level, the same
shifts applied."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from pipeline.config import FilmConfig
from pipeline.errors import ConfigError
from pipeline.film import synthetic as S
from pipeline.film.clean import check_config, clean_frames
from pipeline.film.torch_ops import translate
from pipeline.film.weave import translate as numpy_translate


@pytest.mark.parametrize("d", [(1.3, -0.7), (0.02, 0.0), (-3.6, 2.25), (7.9, -7.9)])
def test_translate_is_weaves(device: str, d: tuple[float, float]) -> None:
    photo = cv2.resize(skimage.data.astronaut(), (160, 120), interpolation=cv2.INTER_AREA)
    image = photo.astype(np.float32) / 255
    want = numpy_translate(image, np.array(d))
    got = translate(image, np.array(d), device)
    assert got.dtype == np.float32 and got.shape == image.shape
    tol = 5e-5 if device == "cpu" else 1e-3
    assert float(np.abs(got - want).max()) < tol
    assert float(np.abs(got - image).max()) > (0.05 if max(map(abs, d)) >= 1 else 1e-3)  # it did move


def test_weave_run_on_the_device_matches_numpy(device: str) -> None:
    clip = S.pan_zoom(skimage.data.astronaut(), (128, 96), 16)
    bad, _ = S.add_weave(clip, 2.0, seed=2)
    runs = {}
    for name, film in (("numpy", FilmConfig(weave=True)), ("torch", FilmConfig(weave=True, device=device))):
        it = clean_frames(S.as_frames(bad), film, start=0, end=len(bad))
        runs[name] = ([f.image for f in it], it.stats)
    (want, want_stats), (got, got_stats) = runs["numpy"], runs["torch"]
    assert got_stats.weave_frames == want_stats.weave_frames > 0
    assert got_stats.weave_px_sum == pytest.approx(want_stats.weave_px_sum, abs=1e-9)
    for g, w in zip(got, want, strict=True):
        assert int(np.abs(g.astype(np.int32) - w.astype(np.int32)).max()) <= 1


def test_a_bad_film_device_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"film\.device"):
        check_config(FilmConfig(device="gpu"))
