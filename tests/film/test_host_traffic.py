"""Film cleaning on a torch `film.device` stays on the device: what crosses to the CPU per frame is the
handed-out frame and small things (the 64-px brightness copies, thumbnails, the flow inputs, scratch
columns, the packed speck mask and the patches around the blobs judged), never a whole working picture.

Counted two ways on the newsreel preset over a real photograph filmed by the simulated camera, with
flicker, specks, weave, a scratch and grain added (film.device="cpu": the torch path on the CPU):
every array leaving a tensor (`torch.Tensor.numpy`, which `np.asarray` of a tensor calls too) and what
`torch_ops.to_numpy` counted, the one way out. Stated bound, at SD (720 x 576, 6 frames): besides the
frame itself, at most 0.75 x one frame's bytes per frame (measured on the CPU: 0.54 with grain reduced,
0.66 with regrain: the flow input alone is 0.33, the packed mask 0.04, dust's patches 0.05; main before
this change: 26.2 and 30.3, the float pictures of dust's judging and the regrain measurement).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import cv2
import numpy as np
import pytest
import skimage.data

from pipeline.config import load_config
from pipeline.film import synthetic as S
from pipeline.film import torch_ops
from pipeline.film.clean import clean_frames

SIZE, FRAMES = (720, 576), 6  # SD: the flow runs at full size there (its input is a third of a frame)
BOUND = 0.75  # frames' bytes per frame, besides the handed-out frame


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def newsreel_clip() -> list[np.ndarray]:
    cat = cv2.resize(skimage.data.chelsea()[60:180, 120:300], (144, 96), interpolation=cv2.INTER_AREA)
    clip = S.camera_clip(skimage.data.astronaut(), SIZE, FRAMES, sprite=cat)
    bad, _ = S.add_flicker(clip, 0.1, 1)
    bad, _ = S.add_specks(bad, 6, 2)
    bad, _ = S.add_weave(S.add_scratches(bad, [SIZE[0] // 3]), 1.5, 3)
    return S.add_grain(bad, 5.0, 4)


@pytest.mark.parametrize("grain", ["reduce", "regrain"])
def test_only_small_pictures_leave_the_device(
    newsreel_clip: list[np.ndarray], grain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    crossed: list[int] = []
    numpy_of = torch.Tensor.numpy

    def counted(self: torch.Tensor, *args: object, **kw: object) -> np.ndarray:
        out = numpy_of(self, *args, **kw)  # type: ignore[arg-type]
        crossed.append(out.nbytes)
        return out

    monkeypatch.setattr(torch.Tensor, "numpy", counted)
    monkeypatch.setattr(torch_ops, "HOST_BYTES", {})
    film = replace(load_config(["newsreel"]).film, device="cpu", grain=grain)
    it = clean_frames(S.as_frames(newsreel_clip), film, start=0, end=FRAMES)
    frames = list(it)
    assert len(frames) == FRAMES and it.stats.specks_filled > 0  # dust judged blobs (patches crossed)
    counts = torch_ops.HOST_BYTES
    assert sum(crossed) == sum(counts.values())  # nothing left a tensor but through to_numpy
    frame_bytes = SIZE[0] * SIZE[1] * 3
    assert counts["frame"] == FRAMES * frame_bytes  # each cleaned frame once, as 8-bit
    besides = (sum(counts.values()) - counts["frame"]) / FRAMES / frame_bytes
    assert besides <= BOUND, counts
    assert counts.get("mask", 0) <= FRAMES * frame_bytes / 24 + FRAMES  # a bit a pixel
