"""The SFace identity term of the guided search (search.identity_weight): real aligned crops are
recognised through the crop's known landmarks, gradients reach the latents, the term raises SFace's
similarity while every face meets the bound, and with the term off the search is exactly today's.

What this cannot show offline: an identity gain on real faces. The random generators here draw no
faces; SFace's similarity to a photo's embedding can still be optimised on their images (that is the
mechanics tested), but it says nothing about a real face model's restorations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import SearchConfig
from pipeline.metrics.identity import SAME_PERSON_COSINE, cosine
from pipeline.prior.stylegan2 import Generator
from pipeline.search.identity import embed_crops, identity_loss
from pipeline.search.latent_space import GaussianizedW
from pipeline.search.loop import synthesise
from pipeline.search.search import random_state
from pipeline.search.synthetic import make_track
from pipeline.search.track import restore_track


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """The astronaut's SFace embedding (OpenCV's SFace on skimage.data.astronaut)."""
    from skimage import data

    from pipeline.faces.detect import make_detector
    from pipeline.metrics.identity import embed_face

    photo = data.astronaut()
    found = make_detector("yunet").detect_batch([photo])[0]
    return torch.from_numpy(embed_face(photo, found.boxes[0], found.landmarks[0]))


def test_aligned_crops_of_real_photographs_are_recognised_from_the_crops_landmarks(tmp_path: Path) -> None:
    """A reference crop (aligned as the scan aligns faces) through embed_crops, at its native size
    and at 64 px: the same person as OpenCV's SFace on the photograph."""
    import cv2

    from pipeline.anon.evaluate import _photographs
    from pipeline.faces.choose import _photo_embedding, reference_crop

    for name, photo in _photographs():
        path = tmp_path / f"{name}.png"
        cv2.imwrite(str(path), np.ascontiguousarray(photo[:, :, ::-1]))
        crop, photo_id = reference_crop(path), _photo_embedding(path)
        small = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA)
        for image, least in ((crop, 0.9), (small, 0.75)):
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
            assert cosine(embed_crops(x)[0].numpy(), photo_id) > least, (name, image.shape)


def test_the_identity_term_has_a_gradient_on_the_latents(
    tiny_G: Generator, tiny_space: GaussianizedW, astronaut: torch.Tensor
) -> None:
    start = random_state(tiny_G, [3, 4])
    latents = start.latents.clone().requires_grad_(True)
    image = synthesise(tiny_G, tiny_space, latents, start.noise, max_res=None, autocast_mode="none")
    loss = identity_loss(image, astronaut.expand(2, -1))
    assert loss.shape == (2,) and bool(((loss >= 0) & (loss <= 2)).all())
    (grad,) = torch.autograd.grad(loss.sum(), latents)
    assert torch.isfinite(grad).all() and bool((grad.abs().sum((1, 2)) > 0).all())


def test_the_term_raises_sface_similarity_within_the_bound(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig, astronaut: torch.Tensor
) -> None:
    """One frame (4-px target): with the term the restored face meets the bound and SFace finds it
    far more like the astronaut than without; an overwhelming weight cannot break the bound (the
    face is searched again without the term)."""
    world = make_track(tiny_G, frames=1, scale=8, seed=11)
    guide = tiny_space.from_w(make_track(tiny_G, frames=1, scale=8, seed=12).ws)
    few = replace(fast_settings, steps=12)
    runs = {}
    for weight in (0.0, 1.0, 1e4):
        out, _ = restore_track(
            tiny_G, world.crops, settings=replace(few, identity_weight=weight), space=tiny_space,
            guide=guide, guide_embedding=astronaut,
        )  # fmt: skip
        assert all(o.met_bound for o in out), weight
        x = torch.from_numpy(np.stack([o.image for o in out])).permute(0, 3, 1, 2)
        runs[weight] = float(embed_crops(x)[0] @ astronaut)
    assert runs[0.0] < SAME_PERSON_COSINE and runs[1.0] > runs[0.0] + 0.2, runs


def test_with_the_term_off_the_search_is_exactly_todays(
    tiny_G: Generator, tiny_space: GaussianizedW, fast_settings: SearchConfig, astronaut: torch.Tensor
) -> None:
    world = make_track(tiny_G, frames=3, scale=4, seed=21, motion=0.3)
    guide = tiny_space.from_w(make_track(tiny_G, frames=1, scale=4, seed=22).ws)
    settings = replace(fast_settings, truncate_factor=2.0)  # today's truncation stays on with the term off
    today, _ = restore_track(tiny_G, world.crops, settings=settings, space=tiny_space, guide=guide)
    off, _ = restore_track(
        tiny_G, world.crops, settings=settings, space=tiny_space, guide=guide, guide_embedding=astronaut
    )
    for a, b in zip(today, off, strict=True):
        assert np.array_equal(a.latents, b.latents) and np.array_equal(a.image, b.image)
        assert a.steps == b.steps
