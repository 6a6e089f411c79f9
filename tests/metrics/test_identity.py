"""SFace identity embeddings: the same face gives the same embedding, from any thread."""

from __future__ import annotations

import threading

import numpy as np
from skimage import data

from pipeline.faces.detect import make_detector
from pipeline.metrics.identity import SAME_PERSON_COSINE, cosine, embed_face


def test_threads_sharing_the_recognizer_get_the_same_embedding() -> None:
    # A search actor measures identity for one unit while it reads the next (two calls at once);
    # OpenCV's dnn net breaks for good when two threads run it together, unless calls are serialised.
    image = data.astronaut()
    found = make_detector("yunet").detect_batch([image])[0]
    box, landmarks = found.boxes[0], found.landmarks[0]
    reference = embed_face(image, box, landmarks)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        for _ in range(10):
            try:
                results.append(embed_face(image, box, landmarks))
            except Exception as exc:  # cv2.error: the failure this test is about
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(results) == 30
    for r in results:
        np.testing.assert_allclose(r, reference, atol=1e-6)
    assert cosine(reference, results[0]) > SAME_PERSON_COSINE
