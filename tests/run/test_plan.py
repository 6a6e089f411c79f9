"""The plan: built once as data; the scan runs per segment and is stitched into the tracks one scan
finds; a killed scan resumes where it stopped; a paste-back setting recomputes compose only."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Config, load_config
from pipeline.faces import store
from pipeline.files import load_arrays
from pipeline.run import steps
from pipeline.run.plan import build_plan, segments
from pipeline.run.restore import RESTORE, make_job, restore


def _config(model: Path | None, workdir: Path, *extra: str) -> Config:
    sets = [
        f"run.workdir={workdir}",
        "run.executor=local",
        "run.progress=false",
        "search.steps=8",
        "search.warm_steps=3",
        "search.gaussian_samples=2000",
        "run.device=cpu",
        "run.segment_frames=6",  # 16 frames: segments 0-6, 6-12, 12-16; tracks cross 6 and 12
        "io.preset=master-ffv1",
        "report.spread_k=0",  # no "where invented" re-searches: the plan's own steps only
        *extra,
    ]
    if model is not None:
        sets.append(f"prior.model={model}")
    return load_config(sets=sets)


def test_a_segmented_scan_stitches_into_the_tracks_of_one_scan(face_video: Path, tmp_path: Path) -> None:
    from pipeline.io.decode import frame_index
    from pipeline.io.probe import probe

    cfg = _config(None, tmp_path / "work")
    info = probe(face_video)
    total = len(frame_index(face_video)[1])
    parts = []
    for s, e in segments(total, cfg):
        parts.append(str(tmp_path / f"segment-{s}.npz"))
        steps.scan_segment(str(face_video), info, cfg, s, e, total, parts[-1])
    assert len(parts) == 3
    steps.stitch_scan(cfg, parts, str(tmp_path / "scan.npz"), RESTORE)
    stitched = store.scan_from_arrays(load_arrays(tmp_path / "scan.npz"))
    whole = steps.scan_whole(face_video, cfg)

    assert (stitched.start, stitched.end, stitched.gray) == (whole.start, whole.end, whole.gray)
    assert stitched.shots == whole.shots and len(whole.shots) == 2  # the cut at frame 8, inside a segment
    assert [(t.track_id, t.shot, t.start, t.end) for t in stitched.tracks] == [
        (t.track_id, t.shot, t.start, t.end) for t in whole.tracks
    ]
    for a, b in zip(stitched.tracks, whole.tracks, strict=True):
        assert np.array_equal(np.stack([f.box for f in a.frames]), np.stack([f.box for f in b.frames]))
        assert np.array_equal(
            np.stack([f.landmarks for f in a.frames]), np.stack([f.landmarks for f in b.frames])
        )
    # tracks crossing a segment edge (6 and 12) are one track each, as in one scan
    edges = {e for _, e in segments(total, cfg)[:-1]}
    crossing = [t for t in stitched.tracks if any(t.start < edge < t.end for edge in edges)]
    assert len(crossing) == len(stitched.tracks) == 3


def test_the_plan_is_data_with_keys_artifacts_and_dependencies(
    face_video: Path, tiny_model: Path, tmp_path: Path
) -> None:
    job = make_job(face_video, tmp_path / "out.mkv", _config(tiny_model, tmp_path / "work"))
    first = build_plan(job)
    assert not first.complete and list(first.steps) == [
        "scan/00000000",
        "scan/00000006",
        "scan/00000012",
        "stitch",
    ]
    assert first.steps["stitch"].deps == ("scan/00000000", "scan/00000006", "scan/00000012")
    assert not any(s.done() for s in first.steps.values())

    scanned = steps.scan_whole(face_video, job.config)
    plan = build_plan(job, scanned)
    assert plan.complete and plan == build_plan(job, scanned)  # a pure function of the job and the tracks
    kinds = [s.kind for s in plan.steps.values()]
    assert kinds == ["scan"] * 3 + ["stitch", "crops", "search"] + ["compose"] * 3 + ["join"]
    assert plan.steps["search/0000"].search and plan.steps["join"].driver
    # every segment shows a track: each compose waits for the search unit and its crops
    assert all(plan.steps[f"compose/{s:08d}"].deps == ("crops/0000", "search/0000") for s in (0, 6, 12))
    assert plan.steps["join"].deps == ("compose/00000000", "compose/00000006", "compose/00000012")
    # artifacts live under <workdir>/<stage>/<key>/
    for step in plan.steps.values():
        for path in step.artifacts:
            assert Path(path).parent.name == plan.keys[Path(path).parent.parent.name]

    # a paste-back setting changes the compose key only
    other = make_job(
        face_video, tmp_path / "out.mkv", _config(tiny_model, tmp_path / "work", "compose.grain_seed=7")
    )
    keys = build_plan(other, scanned).keys
    assert {k for k in keys if keys[k] != plan.keys[k]} == {"compose"}
    # so does the provenance matte: switching it on re-scans and re-cleans nothing
    matte = make_job(
        face_video, tmp_path / "out.mkv", _config(tiny_model, tmp_path / "work", "film.matte=on")
    )
    keys = build_plan(matte, scanned).keys
    assert {k for k in keys if keys[k] != plan.keys[k]} == {"compose"}


def test_a_run_killed_mid_scan_resumes_without_rescanning_finished_segments(
    face_video: Path,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = _config(tiny_model, tmp_path / "work")
    real = steps.scan_segment

    def killed_at_the_third(video: str, info: object, cfg: Config, start: int, *args: object) -> object:
        if start == 12:
            raise KeyboardInterrupt  # as Ctrl-C or a kill: no retry, nothing written
        return real(video, info, cfg, start, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(steps, "scan_segment", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        restore(face_video, tmp_path / "out.mkv", cfg)
    monkeypatch.undo()
    done = sorted((tmp_path / "work" / "scan").glob("*/segment-*.npz"))
    assert [p.name for p in done] == ["segment-00000000-00000006.npz", "segment-00000006-00000012.npz"]
    written = {p: p.stat().st_mtime_ns for p in done}

    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        report = restore(face_video, tmp_path / "out.mkv", cfg)
    assert report.searched == 24
    assert "scan of frames 0-6: done earlier, skipped" in caplog.text
    assert "scan of frames 6-12: done earlier, skipped" in caplog.text
    assert "scan 1 run / 2 skipped" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in done} == written  # never rewritten


def test_a_paste_back_setting_recomputes_compose_and_nothing_else(
    face_video: Path, tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    work = tmp_path / "work"
    restore(face_video, tmp_path / "a.mkv", _config(tiny_model, work))
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        restore(face_video, tmp_path / "b.mkv", _config(tiny_model, work, "compose.grain_seed=7"))
    text = caplog.text
    for kind in ("scan", "stitch", "crops", "search"):
        assert f"{kind} 0 run" in text, kind
    assert "compose 3 run / 0 skipped" in text
