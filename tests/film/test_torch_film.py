"""Film cleaning in torch (`film.device` a torch device), stage by stage and as the newsreel preset,
against today's numpy/OpenCV cleaning on real photographs (skimage) filmed by the simulated camera,
on the CPU always and on CUDA where present (the device fixture).

Stated tolerances (CPU; CUDA the same unless said):
- every stage: each cleaned frame within one 8-bit level of numpy's, the same per-frame findings
  (flicker found, gains within 1e-5, scratches, weave shifts), the same filled pixels;
- the whole newsreel preset: PSNR >= 45 dB against numpy's result on every frame (measured > 80 dB),
  the same specks and scratches filled, and the do-no-harm figures of a clean clip unchanged (shift
  within 0.01 px, brightness within 1e-4, worst block within 0.05 levels, PSNR within 0.05 dB).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import cv2
import numpy as np
import pytest
import skimage.data

from pipeline.config import FilmConfig, load_config
from pipeline.film import measure as M
from pipeline.film import synthetic as S
from pipeline.film.clean import CleanStats, _chain, clean_frames
from pipeline.types import VideoFrame

SIZE, FRAMES = (128, 80), 12


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine two threads fight the other processes (speed only)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def street() -> list[np.ndarray]:
    cat = cv2.resize(skimage.data.chelsea()[60:180, 120:300], (32, 20), interpolation=cv2.INTER_AREA)
    return S.camera_clip(skimage.data.astronaut(), SIZE, FRAMES, sprite=cat)


def run(images: list[np.ndarray], film: FilmConfig) -> tuple[list[VideoFrame], CleanStats]:
    it = clean_frames(S.as_frames(images), film, start=0, end=len(images))
    return list(it), it.stats


def both(images: list[np.ndarray], film: FilmConfig, device: str) -> tuple[tuple, tuple]:
    return run(images, film), run(images, replace(film, device=device))


def within_a_level(got: list[VideoFrame], want: list[VideoFrame]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.image.dtype == w.image.dtype and g.index == w.index
        assert int(np.abs(g.image.astype(np.int32) - w.image.astype(np.int32)).max()) <= 1


def test_deflicker_and_local_flicker_on_the_device(street: list[np.ndarray], device: str) -> None:
    bad, _ = S.add_flicker(S.add_local_flicker(street, 0.06, seed=1), 0.1, seed=2)
    (want, ws), (got, gs) = both(bad, FilmConfig(deflicker=True, local_flicker=True), device)
    within_a_level(got, want)
    assert gs.flicker_found == ws.flicker_found == len(bad) and gs.deflickered == ws.deflickered > 0
    assert gs.local_flicker_found == ws.local_flicker_found > 0
    rows_g, rows_w = np.asarray(gs.by_frame), np.asarray(ws.by_frame)
    assert np.abs(rows_g - rows_w).max() < 1e-5  # the gains and cell gains per frame


def test_weave_and_scratches_on_the_device(street: list[np.ndarray], device: str) -> None:
    bad, _ = S.add_weave(S.add_scratches(street, [40, 90]), 1.5, seed=3)
    (want, ws), (got, gs) = both(bad, FilmConfig(weave=True, scratches=True), device)
    within_a_level(got, want)
    assert gs.scratches_found == ws.scratches_found >= len(bad)
    assert gs.weave_frames == ws.weave_frames > 0
    assert gs.weave_px_sum == pytest.approx(ws.weave_px_sum, abs=1e-3)
    for g, w in zip(got, want, strict=True):  # the same pixels filled (the provenance matte's)
        assert (g.filled is None) == (w.filled is None)
        if w.filled is not None:
            assert np.array_equal(g.filled, w.filled) and w.filled.any()


def test_grain_reduce_and_line_denoise_on_the_device(street: list[np.ndarray], device: str) -> None:
    grainy = S.add_grain(street, 6.0, seed=4)
    (want, ws), (got, gs) = both(grainy, FilmConfig(grain="reduce", line_denoise=6.0), device)
    within_a_level(got, want)
    assert gs.grain_frames == ws.grain_frames == len(grainy)
    assert gs.grain_sigma_sum == pytest.approx(ws.grain_sigma_sum, rel=1e-3)
    noisy = np.mean([float(np.std(g.astype(np.float32) - s)) for g, s in zip(grainy, street, strict=True)])
    left = np.mean([float(np.std(g.image.astype(np.float32) - s)) for g, s in zip(got, street, strict=True)])
    assert left < 0.8 * noisy  # it did reduce


def test_the_pictures_stay_on_the_device_through_the_stages(street: list[np.ndarray], device: str) -> None:
    import torch

    film = replace(load_config(["newsreel"]).film, device=device)
    works = list(_chain(S.as_frames(street[:6]), film))
    assert len(works) == 6
    for w in works:
        assert isinstance(w.image, torch.Tensor) and w.image.device.type == torch.device(device).type
        assert w.image.dtype == torch.float32 and tuple(w.image.shape) == (SIZE[1], SIZE[0], 3)


def test_the_newsreel_preset_on_the_device_matches_numpy(street: list[np.ndarray], device: str) -> None:
    bad, _ = S.add_flicker(street, 0.1, 1)
    bad, _ = S.add_specks(bad, 6, 2)
    bad, _ = S.add_weave(S.add_scratches(bad, [50]), 1.5, 3)
    bad = S.add_grain(bad, 5.0, 4)
    film = load_config(["newsreel"]).film
    (want, ws), (got, gs) = both(bad, film, device)
    assert min(M.psnr(g.image, w.image) for g, w in zip(got, want, strict=True)) >= 45.0
    assert gs.specks_filled == ws.specks_filled > 0 and gs.speck_pixels == ws.speck_pixels
    assert gs.scratches_found == ws.scratches_found > 0 and gs.deflickered == ws.deflickered > 0
    # do no harm: a clean clip comes out as numpy's does
    (clean_want, _), (clean_got, _) = both(street, film, device)
    h_want = M.harm([f.image for f in clean_want], street)
    h_got = M.harm([f.image for f in clean_got], street)
    assert h_got["shift_px"] == pytest.approx(h_want["shift_px"], abs=0.01)
    assert h_got["brightness"] == pytest.approx(h_want["brightness"], abs=1e-4)
    assert h_got["block_levels"] == pytest.approx(h_want["block_levels"], abs=0.05)
    assert h_got["psnr_min"] == pytest.approx(h_want["psnr_min"], abs=0.05)


def test_frames_already_on_the_device_clean_as_decoded_ones(street: list[np.ndarray], device: str) -> None:
    import torch

    film = FilmConfig(deflicker=True, weave=True, grain="reduce", device=device)
    bad, _ = S.add_flicker(street, 0.1, 5)
    decoded, _ = run(bad, film)
    frames = [replace(f, image=torch.from_numpy(f.image).to(device)) for f in S.as_frames(bad)]
    resident = list(clean_frames(frames, film, start=0, end=len(frames)))
    for a, b in zip(resident, decoded, strict=True):
        assert isinstance(a.image, np.ndarray) and a.image.dtype == np.uint8
        assert np.array_equal(a.image, b.image)


def test_specks_on_the_device_are_numpys(street: list[np.ndarray], device: str) -> None:
    """The same specks filled: each frame's filled pixels differ from numpy's by at most 8 (on edges,
    where the warps' weights differ: OpenCV rounds them to 1/32 px), the same count of specks."""
    bad, _ = S.add_specks(street, 6, seed=7)
    (want, ws), (got, gs) = both(bad, FilmConfig(dust=True), device)
    assert gs.specks_filled == ws.specks_filled > 3 * len(bad) and gs.objects_kept == ws.objects_kept
    for g, w in zip(got, want, strict=True):
        g_mask = np.zeros(w.image.shape[:2], bool) if g.filled is None else g.filled
        w_mask = np.zeros(w.image.shape[:2], bool) if w.filled is None else w.filled
        assert int((g_mask ^ w_mask).sum()) <= 8
        same = ~(g_mask ^ w_mask)
        assert int(np.abs(g.image.astype(np.int32) - w.image.astype(np.int32))[same].max()) <= 1


def test_speck_candidates_on_the_device_are_numpys(street: list[np.ndarray], device: str) -> None:
    import torch

    from pipeline.film.dust import speck_candidates

    bad, _ = S.add_specks(street, 6, seed=7)
    frames = [im.astype(np.float32) / 255 for im in (street[2], bad[3], street[4])]  # prev, frame, next
    inside = np.ones(frames[0].shape[:2], bool)
    want = speck_candidates(frames[1], frames[0], frames[2], inside, 0.1)
    t = [torch.tensor(f, device=device) for f in frames]
    got = speck_candidates(t[1], t[0], t[2], torch.tensor(inside, device=device), 0.1)
    cand_w, cand_g = want[0], got[0].cpu().numpy()
    assert cand_w.sum() > 50 and int((cand_w ^ cand_g).sum()) <= 2  # a threshold tie at most
    for g, w in zip(got[1:], want[1:], strict=True):
        assert float(np.abs(g.cpu().numpy() - w).max()) < 1e-5


def test_the_regrain_measurement_on_the_device_is_numpys(street: list[np.ndarray], device: str) -> None:
    """The grain measured for regrain from tensors (on their device: the band medians, the size, only
    numbers cross) is numpy's from the same pictures within 1e-6 (the medians are the same selections;
    the size's correlation differs in float64 rounding); a whole regrain run's measurements within 1e-3
    of numpy's (measured 2e-5: the pictures themselves differ in float rounding)."""
    import torch

    from pipeline.film.grain import measure_grain

    grainy = S.add_grain(street, 6.0, seed=4)
    y, near = (cv2.cvtColor(g.astype(np.float32) / 255, cv2.COLOR_RGB2GRAY) for g in grainy[3:5])
    residual = (y - cv2.blur(y, (3, 3))).astype(np.float32)
    difference = (y - near).astype(np.float32)
    want = measure_grain(y, residual, difference)
    got = measure_grain(*(torch.tensor(x, device=device) for x in (y, residual, difference)))
    assert float(np.abs(got - want).max()) < 1e-6 and want[1:9].min() > 0
    (want_run, _), (got_run, _) = both(grainy, FilmConfig(grain="regrain"), device)
    for g, w in zip(got_run, want_run, strict=True):
        assert g.grain is not None and w.grain is not None
        assert float(np.abs(g.grain - w.grain).max()) < 1e-3
