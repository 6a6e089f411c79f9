"""SFace identity: the same person scores above the threshold, degraded or not; other images do not;
the same face gives the same embedding, from any thread."""

from __future__ import annotations

import threading

import cv2
import numpy as np
from skimage import data

from pipeline.faces.detect import make_detector
from pipeline.metrics.identity import SAME_PERSON_COSINE, cosine, embed_face, identity_kept


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


def test_track_identity_of_true_and_wrong_restorations() -> None:
    from skimage.data import chelsea

    from pipeline.affine import rescale_affine
    from pipeline.faces.align import make_crop, warp_crop
    from pipeline.faces.synthetic import Placement, ShotSpec, render
    from pipeline.metrics.identity import track_identity
    from pipeline.types import FaceRestoration, TrackFrame

    shot = ShotSpec(3, (Placement(0, (300, 100), (330, 110), (1.3, 1.3)),), background_seed=4)
    clip = render([shot], factor=2, blur=0, grain=0, gray=False, contrast=1.0)
    res = 128
    crops, true_faces, wrong_faces, marks = [], [], [], {}
    cat = cv2.resize(chelsea()[:300, 100:400], (res, res)).astype(np.float32) / 255
    for f in range(3):
        _, box, lm = clip.truth[f][0]
        crop = make_crop(clip.frames[f], TrackFrame(0, f, box, lm, 1.0, False), gray=False)
        size = crop.image.shape[0]
        to_hr = rescale_affine(crop.crop_to_frame, src_scale=res / size, dst_scale=clip.factor)
        face = warp_crop(clip.hr_frames[f], to_hr, res).astype(np.float32) / 255
        crops.append(crop)
        marks[(0, f)] = lm
        true_faces.append(FaceRestoration(0, f, np.zeros((1, 1), np.float32), face, 30.0, True, 1))
        wrong_faces.append(FaceRestoration(0, f, np.zeros((1, 1), np.float32), cat, 30.0, True, 1))
    good = track_identity(crops, true_faces, marks)[0]
    bad = track_identity(crops, wrong_faces, marks)[0]
    assert good["kept"] == 1.0 and good["stability"] > 0.8
    assert bad["kept"] == 0.0 and bad["to_source"] < good["to_source"] - 0.3
