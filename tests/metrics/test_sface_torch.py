"""SFace in torch (onnx2torch): the same embeddings as OpenCV's SFace on real photographs, gradients
that reach the pixels, and a graph whose names could reach torch.fx's generated code is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.anon.evaluate import _photographs
from pipeline.errors import ModelNotAvailableError
from pipeline.faces.detect import make_detector
from pipeline.metrics.identity import SAME_PERSON_COSINE, cosine, embed_face
from pipeline.metrics.sface_torch import _checked, embed


def _photos() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, photo, box, landmarks) of every real photograph the tests use, reduced as they are."""
    import cv2

    out = []
    for name, photo in _photographs():
        scale = 640 / max(photo.shape[:2])
        small = np.ascontiguousarray(
            cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        found = make_detector("yunet").detect_batch([small])[0]
        if len(found.scores):
            out.append((name, small, found.boxes[0], found.landmarks[0]))
    return out


def test_torch_sface_matches_opencv_on_real_photographs(device: str) -> None:
    photos = _photos()
    assert len(photos) >= 2  # the astronaut and the cameraman at least (skimage.data)
    for name, photo, box, marks in photos:
        image = torch.from_numpy(photo).permute(2, 0, 1)[None].float().to(device) / 255.0
        ours = embed(image, marks)[0].cpu().numpy()
        assert cosine(ours, embed_face(photo, box, marks)) >= 0.999, name


def test_gradients_reach_the_pixels_and_raise_the_similarity() -> None:
    """The identity term's premise: a gradient step on the pixels of a face moves its embedding
    towards a reference's (here the cameraman's, from the astronaut's face)."""
    (_, a, _, am), (_, b, bb, bm) = _photos()[:2]
    target = torch.from_numpy(embed_face(b, bb, bm))[None]
    image = (torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0).requires_grad_(True)
    before = float((embed(image.detach(), am) * target).sum())
    for _ in range(3):
        sim = (embed(image, am) * target).sum()
        (grad,) = torch.autograd.grad(sim, image)
        assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0
        with torch.no_grad():
            image += (2 / 255) * grad.sign()  # 2 grey levels a step
    after = float((embed(image.detach(), am) * target).sum())
    assert before < SAME_PERSON_COSINE and after > before + 0.1, (before, after)


def test_a_graph_with_code_in_a_node_name_or_an_unknown_operator_is_refused() -> None:
    from onnx import helper

    def graph(name: str, op: str = "Mul") -> object:
        node = helper.make_node(op, ["x", "x"], ["y"], name=name)
        return helper.make_model(helper.make_graph([node], "g", [], []))

    assert _checked(graph("mul_1"), "f.onnx") is not None
    with pytest.raises(ModelNotAvailableError, match="not a plain identifier"):
        _checked(graph('m"); __import__("os").system("true"); ("'), "f.onnx")
    with pytest.raises(ModelNotAvailableError, match="unexpected operator"):
        _checked(graph("loop_1", "Loop"), "f.onnx")
