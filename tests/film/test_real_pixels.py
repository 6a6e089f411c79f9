"""Film cleaning on real pixels: a real photograph filmed by a simulated camera (a pan with a sway at
sub-pixel positions, light changing slowly, an object crossing) must come out of the newsreel
preset's cleaning unharmed, and real defects added to the same clip must be reduced."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from pipeline.config import load_config
from pipeline.film import measure as M
from pipeline.film import synthetic as S
from pipeline.film.clean import CleanStats, clean_frames

SIZE, FRAMES = (256, 160), 30


@pytest.fixture(scope="module")
def street() -> list[np.ndarray]:
    import cv2

    cat = cv2.resize(skimage.data.chelsea()[60:180, 120:300], (64, 40), interpolation=cv2.INTER_AREA)
    return S.camera_clip(skimage.data.astronaut(), SIZE, FRAMES, sprite=cat)


def newsreel(images: list[np.ndarray]) -> tuple[list[np.ndarray], CleanStats]:
    it = clean_frames(S.as_frames(images), load_config(["newsreel"]), start=0, end=len(images))
    return [f.image for f in it], it.stats


def test_the_clip_has_what_cleaning_must_keep(street: list[np.ndarray]) -> None:
    moved = M.frame_shift(street[-1], street[0])
    means = [float(im.mean()) for im in street]
    assert moved > 20  # the camera pans ...
    assert max(means) / min(means) > 1.1  # ... and the light changes


def test_clean_real_footage_comes_out_unharmed(street: list[np.ndarray]) -> None:
    out, stats = newsreel(street)
    harm = M.harm(out, street)
    assert harm["shift_px"] <= 1.5
    assert harm["brightness"] <= 0.03
    assert harm["block_levels"] <= 20
    assert harm["psnr_min"] >= 30
    assert stats.weave_px_max < 0.5  # no jitter: the camera's path is left as it is
    assert stats.jitter_found == 0 and stats.flicker_found == 0  # ... and the report says none was found


@pytest.mark.parametrize("light", [{"light": 0.3}, {"light": 0.0, "switch": 0.3}], ids=["fade", "switch"])
def test_a_fade_and_a_light_switched_on_are_not_flicker(light: dict[str, float]) -> None:
    clip = S.camera_clip(skimage.data.astronaut(), SIZE, FRAMES, **light)
    out, _ = newsreel(clip)
    harm = M.harm(out, clip)
    assert harm["brightness"] <= 0.03 and harm["psnr_min"] >= 30


def test_real_defects_on_real_footage_are_reduced(street: list[np.ndarray]) -> None:
    shape = street[0].shape[:2]
    bad, _ = S.add_flicker(street, 0.12, seed=1)
    bad, specks = S.add_specks(bad, 15, seed=2)
    bad = S.add_scratches(bad, [70])
    out, stats = newsreel(bad)
    assert stats.flicker_found == FRAMES and stats.jitter_found == 0
    assert M.flicker_left(out, bad, street) <= 0.3
    assert M.error_left(out, bad, street, M.speck_masks(specks, shape, FRAMES)) <= 0.15
    assert M.error_left(out, bad, street, M.scratch_masks([70], shape, FRAMES)) <= 0.2
    assert M.psnr(np.stack(out), np.stack(street)) >= M.psnr(np.stack(bad), np.stack(street)) + 5
