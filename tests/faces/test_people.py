"""People across cuts: real photographs of four people over five shots, through the real scan and stitch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.faces import store
from pipeline.faces.people import Person, link_people, people_from_arrays, people_to_arrays
from pipeline.faces.people_clip import render, score_people, standard_shots
from pipeline.faces.synthetic import write_video
from pipeline.files import load_arrays
from pipeline.io.probe import probe
from pipeline.run.restore import RESTORE
from pipeline.run.steps import scan_segment, stitch_scan
from pipeline.types import Track, TrackFrame


def find_people(video: Path, workdir: Path) -> tuple[list[Person], list[Track]]:
    """The pipeline's own scan and stitch steps (restore mode) on a clip: (its people, its tracks)."""
    info = probe(video, exact=True)
    frames = int(info.video.frame_count or 0)
    cfg = Config()
    segment, stitched = workdir / "segment.npz", workdir / "scan-people.npz"
    scan_segment(str(video), info, cfg, 0, frames, frames, str(segment))
    stitch_scan(cfg, [str(segment)], str(stitched), RESTORE)
    arrays = load_arrays(str(stitched))
    tracks = list(store.scan_from_arrays(arrays).tracks)
    return people_from_arrays(arrays, tracks) or [], tracks


def test_each_person_is_one_person_across_cuts_and_a_tiny_face_is_undecided(tmp_path: Path) -> None:
    clip = render(standard_shots(), length=8)
    video = write_video(clip.frames, tmp_path / "people.mp4", audio=False)
    people, tracks = find_people(video, tmp_path)
    figures = score_people(people, tracks, clip)
    assert figures["true_people"] == 4
    assert figures["people_found_ratio"] == 1.0  # nobody split across people
    assert figures["wrong_merges"] == 0
    tiny = [p for p in people if not p.decided]
    assert len(tiny) == 1 and len(tiny[0].tracks) == 1  # the 16 px face stays its own person
    assert sum(p.frames for p in people) == sum(len(t.frames) for t in tracks)


def _track(tid: int, start: int, n: int) -> Track:
    rows = tuple(
        TrackFrame(
            tid,
            f,
            np.array([0, 0, 60, 60], np.float32),
            np.array([[20, 25], [40, 25], [30, 35], [22, 45], [38, 45]], np.float32),
            0.9,
            False,
        )
        for f in range(start, start + n)
    )
    return Track(tid, 0, rows)


def test_two_tracks_on_screen_together_are_never_one_person() -> None:
    same = np.ones(128, np.float32) / np.sqrt(128)
    tracks = [_track(0, 0, 5), _track(1, 3, 5)]  # overlap in frames 3-4, identical embeddings
    embeddings = {f: [(np.array([0, 0, 60, 60], np.float32), same)] for f in range(8)}
    people = link_people(tracks, embeddings)
    assert [p.tracks for p in people] == [(0,), (1,)]
    stored = people_from_arrays(people_to_arrays(people), tracks)
    assert stored == people and [(p.tracks, p.frames, p.decided) for p in people] == [
        ((0,), 5, True),
        ((1,), 5, True),
    ]
    assert [t.frame for p in people for t in p.thumbs] == [
        0,
        3,
    ]  # each track pictured at its first widest row
