"""SFace identity: the same person scores above the threshold, degraded or not; other images do not."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.faces.detect import make_detector
from pipeline.metrics.identity import SAME_PERSON_COSINE, cosine, embed_face, identity_kept


def _face(image: np.ndarray) -> np.ndarray:
    faces = make_detector("yunet").detect_batch([image])[0]
    assert len(faces.scores) == 1
    return embed_face(image, faces.boxes[0], faces.landmarks[0])


def test_same_person_survives_degradation_and_other_images_do_not() -> None:
    from skimage.data import astronaut, chelsea

    photo = astronaut()
    ref = _face(photo)
    soft = cv2.resize(cv2.resize(photo, (128, 128), interpolation=cv2.INTER_AREA), (512, 512))
    gray = np.repeat(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    kept = [_face(soft), _face(gray), _face(np.ascontiguousarray(photo[:, ::-1]))]
    mean, fraction = identity_kept(ref, kept)
    assert fraction == 1.0 and mean > 0.6
    assert cosine(ref, ref) > 0.999
    # A cat's face, forced through the same alignment, is not the astronaut.
    cat = chelsea()
    box = np.array([140, 20, 340, 220], np.float32)
    marks = np.array([[190, 90], [280, 90], [235, 140], [200, 175], [270, 175]], np.float32)
    assert cosine(ref, embed_face(cat, box, marks)) < SAME_PERSON_COSINE
