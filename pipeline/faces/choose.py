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
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError, InputError
from pipeline.faces.detect import make_detector
from pipeline.faces.people import Embeddings, Person, track_identity
from pipeline.metrics.identity import SAME_PERSON_COSINE, embed_face
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


def _photo_embedding(path: Path) -> np.ndarray:
    """SFace embedding of the largest face in one photo (any size)."""
    import cv2

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
    return embed_face(small, faces.boxes[i], faces.landmarks[i])


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
