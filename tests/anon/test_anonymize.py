"""`reel anonymize` end to end on clips of real photographs: no face-frame leaks, no secret is kept.

A leak is a face-frame of the truth whose output still looks like the person to SFace (cosine to
the person's photograph >= 0.363) or whose region was left unchanged. The synthetic-face runs use a
seeded random generator: its "faces" are not faces, but the pipeline around it (tracks, bottleneck
search, masks, paste, audit) is the real one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.anon.evaluate import AnonClip, decode, measure
from pipeline.cli import main
from pipeline.config import load_config

FAST = [
    "run.executor=local",
    "io.preset=master-ffv1",
    "search.gaussian_samples=1000",
    "search.steps=8",
    "search.warm_steps=3",
    "scan.detect_size=320",
    "anon.max_face_ratio=8",
]


def _run(video: Path, out: Path, model: Path | None) -> Any:
    from pipeline.api import anonymize

    config = load_config(["anonymize"], FAST)
    if model is not None:
        config = replace(config, prior=replace(config.prior, model=str(model)))
    return anonymize(video, out, config)


def test_without_a_model_every_face_frame_is_masked(clip: AnonClip, clip_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "masked.mkv"
    report = _run(clip_video, out, None)
    figures = measure(decode(clip_video), decode(out), clip)
    assert figures["input_identity_cosine"] > 0.6  # the clip's faces are recognisable before
    assert figures["leaked_face_frames"] == 0
    assert figures["coverage"] == 1.0
    assert report.synthetic == 0 and report.masked == report.face_frames
    assert report.html_path is not None and report.html_path.is_file()  # the report page (pipeline.report)
    audit = json.loads(Path(f"{out}.anon.json").read_text())
    assert len(audit["tracks"]) == report.tracks
    assert all(t["masked_because"] == {"no model": t["masked"]} for t in audit["tracks"])
    # the frame where the detectors miss a face is covered by a bridged or extended track row
    assert sum(t["bridged"] + t["extended"] + t["interpolated"] for t in audit["tracks"]) > 0
    # every track belongs to one person; the page pictures each track from the output only
    people = audit["people"]
    assert sorted(t for p in people for t in p["tracks"]) == [t["track_id"] for t in audit["tracks"]]
    assert audit["undecided_people"] == [p["id"] for p in people if not p["decided"]]
    html = report.html_path.read_text()
    assert all(f'id="person-{p["id"]}"' in html for p in people)
    assert html.count('(output)"') == len(audit["tracks"]) and "footage crop" not in html


@pytest.fixture(scope="module")
def two_runs(
    clip_video: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[Path], list[Any], list[bytes], str]:
    """Two synthetic-face runs of the same clip; every random start they drew, and their logs."""
    import pipeline.anon.search as anon_search

    starts: list[Any] = []
    original = anon_search.secret_start

    def recording(G: Any) -> Any:
        state = original(G)
        starts.append(state)
        return state

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    anon_search.secret_start = recording  # type: ignore[assignment]
    try:
        outs = []
        for k in range(2):
            out = tmp_path_factory.mktemp(f"run{k}") / "anon.mkv"
            _run(clip_video, out, tiny_model)
            outs.append(out)
    finally:
        anon_search.secret_start = original  # type: ignore[assignment]
        root.removeHandler(handler)
        root.setLevel(old_level)
    # byte patterns of every start: latents and the first noise map, float32 and float16
    patterns = []
    for s in starts:
        for t in (s.latents, s.noise[0]):
            flat = t.detach().cpu().numpy().reshape(-1)
            for dtype in (np.float32, np.float16, np.float64):
                data = flat.astype(dtype).tobytes()
                patterns.append(data[: 4 * np.dtype(dtype).itemsize])
    return outs, starts, patterns, "\n".join(records)


def test_synthetic_faces_leak_nothing(clip: AnonClip, clip_video: Path, two_runs: Any) -> None:
    outs, starts, _, _ = two_runs
    figures = measure(decode(clip_video), decode(outs[0]), clip)
    assert figures["leaked_face_frames"] == 0
    assert figures["coverage"] == 1.0
    audit = json.loads(Path(f"{outs[0]}.anon.json").read_text())
    assert audit["synthetic"] > 0
    served = {t["track_id"] for t in audit["tracks"] if t["synthetic"] > 0}
    people = [p for p in audit["people"] if served & set(p["tracks"])]
    assert len(starts) == 2 * len(people)  # one secret start per person (not per track) and run


def test_random_starts_are_not_recoverable_from_anything_the_run_writes(two_runs: Any) -> None:
    outs, starts, patterns, logs = two_runs
    assert starts and patterns
    files = []
    for out in outs:
        mine = [p for p in out.parent.rglob("*") if p.is_file()]
        assert not any(
            "crops" in p.relative_to(out.parent).parts for p in mine
        )  # the original crops are gone
        files += mine
    assert any(p.name.endswith(".faces.npy") for p in files)
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".npz":  # compressed or not, look inside too
            with np.load(path) as arrays:
                assert not any(k.startswith("emb_") for k in arrays.files), f"{path}: SFace embeddings kept"
                data += b"".join(np.ascontiguousarray(arrays[k]).tobytes() for k in arrays.files)
        elif path.suffix == ".npy":
            data += np.ascontiguousarray(np.load(path)).tobytes()
        for p in patterns:
            assert p not in data, f"{path} holds a random start"
    for s in starts:
        first = [f"{v:.4f}" for v in s.latents.reshape(-1)[:3].tolist()]
        assert " ".join(first) not in logs and ", ".join(first) not in logs


def test_two_runs_give_different_synthetic_faces(two_runs: Any) -> None:
    outs, _, _, _ = two_runs
    faces = []
    for out in outs:
        paths = sorted(out.parent.rglob("*.faces.npy"), key=lambda p: p.name)
        stored = [np.load(p).astype(np.float32) for p in paths]
        faces.append(np.concatenate([f for f in stored if len(f)]))  # tracks with no servable frame: empty
    assert faces[0].shape == faces[1].shape
    per_face = np.abs(faces[0] - faces[1]).reshape(len(faces[0]), -1).mean(1)
    assert (per_face > 0.02).all()


def test_bad_input_fails_like_restore_and_keeps_the_old_output(
    tmp_path: Path, clip_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.mp4"
    noise = tmp_path / "noise.mov"
    noise.write_bytes(bytes(range(256)) * 97)
    out = tmp_path / "out" / "anon.mp4"
    out.parent.mkdir()
    for bad in (missing, noise):
        assert main(["restore", str(bad), "-o", str(out), "--executor", "local"]) == 2
        restore_line = capsys.readouterr().err.strip().splitlines()[-1]
        assert main(["anonymize", str(bad), "-o", str(out), "--executor", "local"]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line == restore_line and line.startswith("reel: error: ") and str(bad) in line
    assert list(out.parent.iterdir()) == []

    out.write_bytes(b"the previous, precious output")
    local = ["--executor", "local"]
    assert main(["anonymize", str(clip_video), "-o", str(out), *local]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["anonymize", str(noise), "-o", str(out), "--overwrite", *local]) == 2
    bad_setting = ["--overwrite", *local, "--set", "anon.fallback=x"]
    assert main(["anonymize", str(clip_video), "-o", str(out), *bad_setting]) == 2
    assert "anon.fallback" in capsys.readouterr().err
    assert out.read_bytes() == b"the previous, precious output"


def test_a_batch_item_can_be_anonymised(clip_video: Path, tmp_path: Path) -> None:
    from pipeline.api import batch

    manifest = tmp_path / "batch.yaml"
    manifest.write_text(
        "set: [run.executor=local, io.preset=master-ffv1]\n"
        f"items:\n  - input: {clip_video}\n    mode: anonymize\n"
    )
    report = batch(manifest)
    assert [r.status for r in report.items] == ["done"]
    out = Path(report.items[0].output)
    assert out.name == "people.anonymized.mkv" and out.is_file()
    audit = json.loads(Path(f"{out}.anon.json").read_text())
    assert audit["face_frames"] > 0 and audit["synthetic"] == 0


@pytest.mark.slow
def test_through_ray_with_a_model(clip: AnonClip, clip_video: Path, tiny_model: Path, tmp_path: Path) -> None:
    """The same plan on the Ray executor (embedded Ray, a search actor): no leaks, crops gone."""
    out = tmp_path / "ray.mkv"
    sets = [s for s in FAST if not s.startswith("run.executor")] + ["run.num_cpus=2", "run.progress=false"]
    args = ["anonymize", str(clip_video), "-o", str(out), "--model", str(tiny_model), "--executor", "ray"]
    assert main([*args, *(x for s in sets for x in ("--set", s))]) == 0
    figures = measure(decode(clip_video), decode(out), clip)
    assert figures["leaked_face_frames"] == 0 and figures["coverage"] == 1.0
    assert json.loads(Path(f"{out}.anon.json").read_text())["synthetic"] > 0
    assert not (tmp_path / "ray.mkv.work" / "crops").exists()


def test_anonymise_through_the_plans_own_entry_never_searches_the_real_face(
    clip_video: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The privacy rules are the mode's, not one entry point's: `pipeline.run.restore.restore` with
    the anonymise mode and chunking asked for still never runs the restoring search (which would
    paste restorations of the real face as the "synthetic" ones) and still forgets the crops."""
    import pipeline.search.units as units
    from pipeline.anon.mode import ANONYMIZE
    from pipeline.run.restore import restore

    restoring: list[str] = []

    def refuse(name: str) -> Any:
        def search(*args: Any, **kwargs: Any) -> Any:
            restoring.append(name)
            raise AssertionError(f"anonymise ran the restoring search ({name})")

        return search

    for name in ("search_tracks", "search_anchors", "search_chunk"):
        monkeypatch.setattr(units, name, refuse(name))
    # the audit's attack check (pipeline.anon.attack) runs restore's search on purpose, on the
    # written output's faces; it is off here so that any restoring search would be the plan's
    sets = ["search.chunk_len=3", "search.chunk_landing=1", "search.smooth_sigma=0", "anon.attack_faces=0"]
    config = load_config(["anonymize"], [*FAST, *sets])
    config = replace(config, prior=replace(config.prior, model=str(tiny_model)))
    out = tmp_path / "anon.mkv"
    restore(clip_video, out, config, mode=ANONYMIZE)
    assert restoring == []
    audit = json.loads(Path(f"{out}.anon.json").read_text())
    assert audit["synthetic"] > 0 and audit["config"]["search"]["chunk_len"] == 0
    assert not any("crops" in p.parts for p in tmp_path.rglob("*") if p.is_file())


def test_the_plan_refuses_chunks_for_a_mode_that_forbids_them(clip_video: Path, tmp_path: Path) -> None:
    from pipeline.anon.mode import ANONYMIZE
    from pipeline.errors import ConfigError
    from pipeline.faces.scan import ScanResult
    from pipeline.run.plan import build_plan
    from pipeline.run.restore import make_job
    from pipeline.types import Shot, Track, TrackFrame

    config = load_config(["anonymize"], FAST)
    job = make_job(clip_video, tmp_path / "anon.mkv", config, mode=ANONYMIZE)
    job = replace(
        job,
        model_key="k",
        config=replace(
            job.config, search=replace(job.config.search, chunk_len=2, chunk_landing=0, smooth_sigma=0.0)
        ),
    )
    box, marks = np.array([10, 10, 60, 60], np.float32), np.zeros((5, 2), np.float32)
    rows = tuple(TrackFrame(0, i, box, marks, 1.0, False) for i in range(5))
    scanned = ScanResult(0, 9, (Shot(0, 0, 5),), (Track(0, 0, rows),), 5, False)
    with pytest.raises(ConfigError, match="chunk_len"):
        build_plan(job, scanned)
