"""Choose the people: reference photos say whom a run restores or hides (`--only-people DIR`,
`--except-people DIR`, the `people` settings).

A folder holds photos of any size. A photo directly in it is one person; a subfolder is one person
with all the photos in it. Each photo must show a face YuNet finds (the largest one is used); its
SFace embedding is taken, and a reference person is the unit mean of their photos' embeddings. All
of this is checked before any work starts: an empty folder, an unreadable image or a photo without
a face is a one-line error naming the file.

A person of the video (pipeline.faces.people) is recognised when the cosine of their identity (the
unit mean of their tracks' identities) to some reference person is at least SAME_PERSON_COSINE.
Under `only` the recognised people are chosen, under `except` the others. A person who cannot be
decided is never recognised; a mode that hides faces (anonymise) chooses them whatever the photos
say (the safe rule).

The choice is data (`PeopleChoice`, sent with the job); its `key` is a hash of the references'
embeddings and the rule, so a changed choice makes a new stitched scan and reruns what follows.

Reference photos for guided restoration (`--reference-photos DIR`, `References`) are read the same
way, with the same errors; a person of the video recognised as a reference person is `guide`d by
them (pipeline.search.guide inverts the photos, aligned by `reference_crop`, into latents).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError, InputError
from pipeline.faces.people import Embeddings, Person, track_identity
from pipeline.metrics.identity import SAME_PERSON_COSINE
from pipeline.types import Track

DETECT_PX = 640  # photos are reduced to this many px on their long side before detection


@dataclass(frozen=True)
class PeopleChoice:
    """Whom a run processes: `only` the reference people (True), or everyone `except` them (False)."""

    only: bool
    folder: str
    names: tuple[str, ...]  # one per reference person: the photo's or the subfolder's name
    embeddings: tuple[tuple[float, ...], ...]  # unit-mean SFace embedding [128] per reference person

    @property
    def rule(self) -> str:
        return "only" if self.only else "except"

    def key(self) -> str:
        """A hash of the rule and the references (rounded: the same photos give the same key)."""
        data = np.round(np.asarray(self.embeddings, np.float64), 4).tobytes()
        return hashlib.sha256(self.rule.encode() + data).hexdigest()[:16]


def _largest_face(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(the photo [H, W, 3] RGB, its detection copy, box, landmarks (on that copy), the copy's scale)
    of the largest face in one photo (any size)."""
    import cv2

    from pipeline.faces.detect import make_detector

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(path, "cannot read this file as an image (reference photo)")
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    scale = min(1.0, DETECT_PX / max(rgb.shape[:2]))
    small = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    faces = make_detector("yunet", 0.5).detect_batch([np.ascontiguousarray(small)])[0]
    if len(faces.scores) == 0:
        raise InputError(path, "no face found in this reference photo")
    widths = faces.boxes[:, 2] - faces.boxes[:, 0]
    i = int(np.argmax(widths))
    return rgb, np.ascontiguousarray(small), faces.boxes[i], faces.landmarks[i], scale


def _photo_embedding(path: Path) -> np.ndarray:
    """SFace embedding of the largest face in one photo (any size)."""
    from pipeline.metrics.identity import embed_face

    _, small, box, landmarks, _ = _largest_face(path)
    return embed_face(small, box, landmarks)


def reference_crop(path: str | Path) -> np.ndarray:
    """The largest face of a reference photo aligned as the scan aligns a track's faces
    (pipeline.faces.align), from the full-size photo, at its native size: [S, S, 3] float in [0, 1]."""
    from pipeline.faces.align import crop_to_frame_affine, native_size, warp_crop

    rgb, _, _, landmarks, scale = _largest_face(Path(path))
    full = np.asarray(landmarks, np.float64) / scale
    size = native_size(full)
    crop = warp_crop(rgb, crop_to_frame_affine(full, size), size).astype(np.float32) / 255.0
    return np.clip(crop, 0.0, 1.0)


def _photos(folder: Path) -> list[tuple[str, list[Path]]]:
    """(name, photos) per reference person of `folder` (hidden files are skipped)."""
    if not folder.is_dir():
        raise InputError(folder, "not a folder of reference photos")
    people: list[tuple[str, list[Path]]] = []
    for entry in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if entry.is_dir():
            photos = sorted(p for p in entry.iterdir() if p.is_file() and not p.name.startswith("."))
            if not photos:
                raise InputError(entry, "empty folder: no reference photos of this person")
            people.append((entry.name, photos))
        elif entry.is_file():
            people.append((entry.stem, [entry]))
    if not people:
        raise InputError(folder, "empty folder: no reference photos")
    return people


def load_choice(folder: str | Path, *, only: bool) -> PeopleChoice:
    """The reference people of `folder` (see the module docstring); raises InputError naming the
    first file that cannot be used."""
    folder = Path(folder)
    names, embeddings = [], []
    for name, photos in _photos(folder):
        found = np.stack([_photo_embedding(p) for p in photos])
        mean = found.mean(axis=0)
        names.append(name)
        embeddings.append(tuple(float(v) for v in mean / max(float(np.linalg.norm(mean)), 1e-12)))
    return PeopleChoice(only, str(folder), tuple(names), tuple(embeddings))


@dataclass(frozen=True)
class References:
    """Reference photos that guide the restoration of the people in them (`--reference-photos DIR`,
    pipeline.search.guide): per person their name, unit-mean SFace embedding and photos."""

    folder: str
    names: tuple[str, ...]
    embeddings: tuple[tuple[float, ...], ...]  # [128] per reference person
    photos: tuple[tuple[str, ...], ...]  # the photos' paths per reference person

    def key(self) -> str:
        """A hash of the references (rounded embeddings: the same photos give the same key)."""
        data = np.round(np.asarray(self.embeddings, np.float64), 4).tobytes()
        return hashlib.sha256(b"references" + data).hexdigest()[:16]

    def as_choice(self) -> PeopleChoice:
        """The same people as a choice (`recognised` matches a video's person to them)."""
        return PeopleChoice(True, self.folder, self.names, self.embeddings)


def load_references(folder: str | Path) -> References:
    """The reference people of `folder` (read as --only-people reads it, with the same one-line
    errors for an empty folder, an unreadable image or a photo without a face)."""
    choice = load_choice(folder, only=True)
    photos = tuple(tuple(str(p) for p in ps) for _, ps in _photos(Path(folder)))
    return References(choice.folder, choice.names, choice.embeddings, photos)


def guides(
    people: Sequence[Person], tracks: Sequence[Track], embeddings: Embeddings, refs: References
) -> list[Person]:
    """`people` with `guide` set: the reference person each decided person is recognised as (their
    tracks are searched towards that person's photos); undecided people are never guided."""
    from dataclasses import replace

    by_id = {t.track_id: t for t in tracks}
    choice = refs.as_choice()
    return [
        replace(p, guide=recognised(person_identity(p, by_id, embeddings), choice) if p.decided else None)
        for p in people
    ]


def choice_of(only: str | None, exclude: str | None) -> PeopleChoice | None:
    """The choice the `people` settings name (None: everyone); both at once is a settings error."""
    if only and exclude:
        raise ConfigError("--only-people and --except-people: give one of them, not both")
    if only:
        return load_choice(only, only=True)
    if exclude:
        return load_choice(exclude, only=False)
    return None


def recognised(identity: np.ndarray | None, choice: PeopleChoice) -> str | None:
    """The reference person `identity` is (the most similar at or above the threshold), or None."""
    if identity is None or not choice.embeddings:
        return None
    sims = np.asarray(choice.embeddings, np.float64) @ identity
    best = int(np.argmax(sims))
    return choice.names[best] if float(sims[best]) >= SAME_PERSON_COSINE else None


def person_identity(person: Person, tracks: Mapping[int, Track], embeddings: Embeddings) -> np.ndarray | None:
    """Unit mean of the identities of a person's tracks (None when none has one)."""
    found = [track_identity(tracks[t], embeddings) for t in person.tracks if t in tracks]
    ids = [v for v in found if v is not None]
    if not ids:
        return None
    mean = np.mean(ids, axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def choose(
    people: Sequence[Person],
    tracks: Sequence[Track],
    embeddings: Embeddings,
    choice: PeopleChoice,
    *,
    undecided_chosen: bool,
) -> list[Person]:
    """`people` with `chosen` (and `match`: the reference person recognised) set by `choice`."""
    from dataclasses import replace

    by_id = {t.track_id: t for t in tracks}
    out = []
    for p in people:
        match = recognised(person_identity(p, by_id, embeddings), choice) if p.decided else None
        chosen = (match is not None) == choice.only
        if not p.decided:
            chosen = undecided_chosen or not choice.only
        out.append(replace(p, chosen=chosen, match=match))
    return out
