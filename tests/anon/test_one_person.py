"""One synthetic person per person: every shot of a real person gets the same synthetic face.

A clip of real photographs (two people, each in both of two shots) is anonymised with the seeded
16-px test generator. Its "faces" are not faces, so SFace between two of them measures how alike two
synthetic images are, not whether they show one person: the promise tested is the machinery's (the
tracks of one person come out as alike across the cut as along a shot, those of two people do not),
and that the per-person secret is written nowhere.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.anon.evaluate import one_person_figures, synthetic_identities
from pipeline.config import load_config
from pipeline.faces.people_clip import Appearance, render
from pipeline.faces.synthetic import write_video
from pipeline.metrics.identity import SAME_PERSON_COSINE
from tests.anon.test_anonymize import FAST


@pytest.fixture(scope="module")
def one_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """Two shots, each with persons 0 and 1 (sizes and places change at the cut); anonymised once,
    recording every secret start the run drew."""
    import pipeline.anon.search as anon_search
    from pipeline.api import anonymize

    shots = [
        [Appearance(0, (0.28, 0.45), (0.04, 0.0), 60), Appearance(1, (0.72, 0.45), (-0.03, 0.0), 56)],
        [Appearance(1, (0.3, 0.5), (0.03, 0.0), 64), Appearance(0, (0.72, 0.45), (0.0, 0.03), 52)],
    ]
    root = tmp_path_factory.mktemp("one-person")
    video = write_video(render(shots, length=5, size=(256, 144)).frames, root / "two-shots.mkv")
    config = load_config(["anonymize"], FAST)
    config = replace(config, prior=replace(config.prior, model=str(tiny_model)))
    starts: list[Any] = []
    original = anon_search.secret_start

    def recording(G: Any) -> Any:
        starts.append(original(G))
        return starts[-1]

    anon_search.secret_start = recording  # type: ignore[assignment]
    try:
        out = root / "run" / "anon.mkv"
        out.parent.mkdir()
        anonymize(video, out, config)
    finally:
        anon_search.secret_start = original  # type: ignore[assignment]
    return out, starts


def test_every_shot_of_a_person_shows_one_synthetic_person(one_run: tuple[Path, list[Any]]) -> None:
    out, starts = one_run
    ids, person = synthetic_identities(Path(f"{out}.work"))
    tracks_of: dict[int, list[int]] = {}
    for tid in ids:
        tracks_of.setdefault(person[tid], []).append(tid)
    assert sorted(len(ts) for ts in tracks_of.values()) == [2, 2]  # both people found in both shots
    assert len(starts) == len(tracks_of)  # one secret per person, not per track
    figures = one_person_figures(ids, person)
    assert figures["same_person_pairs"] == 2
    assert figures["same_person"] >= SAME_PERSON_COSINE
    assert figures["same_person"] >= figures["within_track"] - 0.1  # as alike across the cut as along a shot
    assert figures["other_people"] <= figures["same_person"] - 0.2  # two people are two synthetic people


def test_the_per_person_secret_is_written_nowhere(one_run: tuple[Path, list[Any]]) -> None:
    out, starts = one_run
    patterns = [
        t.detach().cpu().numpy().reshape(-1).astype(dtype).tobytes()[: 4 * np.dtype(dtype).itemsize]
        for s in starts
        for t in (s.latents, s.noise[0])
        for dtype in (np.float32, np.float16, np.float64)
    ]
    files = [p for p in out.parent.rglob("*") if p.is_file()]
    assert patterns and any(p.suffix == ".npz" for p in files)
    for path in files:
        data = path.read_bytes()
        if path.suffix in (".npz", ".npy"):
            loaded = np.load(path)
            parts = [loaded[k] for k in loaded.files] if path.suffix == ".npz" else [loaded]
            data += b"".join(np.ascontiguousarray(a).tobytes() for a in parts)
        assert not any(p in data for p in patterns), f"{path} holds a person's secret start"


def test_a_persons_tracks_share_one_search_unit_whatever_the_batch() -> None:
    from pipeline.search.units import search_units

    persons = {0: 0, 4: 0, 1: 1, 2: 1, 3: 2}  # track 5 has no person: a person of its own
    for size in (1, 2, 3, 16):
        units = search_units([0, 1, 2, 3, 4, 5], size, persons)
        assert sorted(t for u in units for t in u) == [0, 1, 2, 3, 4, 5]
        for group in ({0, 4}, {1, 2}):
            assert sum(bool(group & set(u)) for u in units) == 1
        assert all(len(u) <= max(size, 2) for u in units)
    assert search_units([0, 1, 2, 3, 4, 5], 3, persons) == [(0, 4), (1, 2, 3), (5,)]
    assert search_units([0, 1, 2], 2) == [(0, 1), (2,)]  # without people: as before
