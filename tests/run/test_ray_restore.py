"""The Ray executor on a real embedded Ray (2 CPUs): the same output as the in-process executor,
frame for frame, also when a search actor is killed mid-run or the driver is killed and rerun."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import Config, load_config
from pipeline.run.report import RestoreReport
from pipeline.run.restore import restore
from tests.media import make_clip, read_audio_packets, read_video_times

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("embedded_ray")


def run_local(source: Path, output: Path, config: Config) -> RestoreReport:
    return restore(source, output, replace(config, run=replace(config.run, executor="local")))


def run_ray(source: Path, output: Path, config: Config) -> RestoreReport:
    return restore(source, output, replace(config, run=replace(config.run, executor="ray")))


def _config(model: Path | None, workdir: Path, *extra: str, presets: tuple[str, ...] = ()) -> Config:
    sets = [
        f"run.workdir={workdir}",
        "search.steps=12",
        "search.warm_steps=4",
        "search.gaussian_samples=2000",
        "run.device=cpu",
        "run.segment_frames=6",  # 16 frames -> 3 segments, encoded in parallel
        "io.preset=master-ffv1",
        "report.spread_k=0",  # no "where invented" re-searches: the plan's own steps only
        *extra,
    ]
    if model is not None:
        sets.append(f"prior.model={model}")
    return load_config(list(presets), sets)


def _frames(path: Path) -> list[np.ndarray]:
    from pipeline.io.decode import open_video

    with open_video(path).reader() as reader:
        return [f.image for f in reader]


def _assert_same_video(out: Path, ref: Path) -> None:
    a, b = _frames(out), _frames(ref)
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert np.array_equal(x, y), f"frame {i} differs"
    assert read_video_times(out).pts == read_video_times(ref).pts
    assert read_audio_packets(out) == read_audio_packets(ref)


def _report(output: Path) -> dict[str, Any]:
    return dict(json.loads(output.with_name(output.name + ".report.json").read_text()))


def _assert_same_identity(report: dict[str, Any], expected: dict[str, Any]) -> None:
    """The same tracks with the same SFace identity figures (within float tolerance), all measured."""
    ids = [t["track_id"] for t in report["tracks"]]
    assert ids == [t["track_id"] for t in expected["tracks"]] == [0, 1, 2]
    for got, want in zip(report["tracks"], expected["tracks"], strict=True):
        assert {k: v for k, v in got.items() if k != "identity"} == {
            k: v for k, v in want.items() if k != "identity"
        }
        assert want["identity"] is not None and set(want["identity"]) == {"to_source", "stability", "kept"}
        assert got["identity"].keys() == want["identity"].keys()
        for name, value in want["identity"].items():
            assert got["identity"][name] == pytest.approx(value, abs=1e-4), (got["track_id"], name)


@dataclass
class Reference:
    output: Path  # the in-process executor's result
    ray_output: Path
    workdir: Path  # the Ray run's work directory


@pytest.fixture(scope="module")
def reference(face_video: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    d = tmp_path_factory.mktemp("reference")
    # CPU float results of a batched search depend on torch's intra-op thread count; every step runs
    # with one thread in both executors (`pipeline.run.frames.one_thread`), and both run the same plan
    # (same search units, faces composed as the work directory stores them): nothing else is needed.
    run_local(face_video, d / "local.mkv", _config(tiny_model, d / "local.work"))
    report = run_ray(face_video, d / "ray.mkv", _config(tiny_model, d / "ray.work"))
    assert (report.tracks, report.face_frames, report.searched) == (3, 24, 24)
    return Reference(d / "local.mkv", d / "ray.mkv", d / "ray.work")


def test_ray_equals_in_process_frame_for_frame(reference: Reference, face_video: Path) -> None:
    _assert_same_video(reference.ray_output, reference.output)
    assert len(read_video_times(reference.ray_output).pts) == len(read_video_times(face_video).pts)
    # the work went through Ray units: three tracks searched and kept; the encoded parts (as big as
    # the output) are removed once the output exists
    assert len(list((reference.workdir / "search").glob("*/track-*.npz"))) == 3
    assert not (reference.workdir / "compose").exists()

    # one report writer: the same fields (each names its executor) and the same figures, the
    # per-track identity measured in the Ray search worker included
    local_report, ray_report = _report(reference.output), _report(reference.ray_output)
    assert (ray_report.pop("executor"), local_report.pop("executor")) == ("ray", "local")
    assert local_report.keys() == ray_report.keys()
    assert ray_report["faces"] == local_report["faces"]
    assert {f["track_id"] for f in ray_report["faces"]} == {0, 1, 2}
    assert {"track_id", "frame", "psnr_db", "met_bound", "steps"} <= set(ray_report["faces"][0])
    _assert_same_identity(ray_report, local_report)
    # the frames each stage decoded, counted in the workers: the same in both executors; nothing is
    # film-cleaned without a film stage, and compose decodes exactly its segments' frames
    assert ray_report["decode"] == local_report["decode"]
    decode = ray_report["decode"]
    assert decode["frames"] == 16 and decode["cleaned"] == 0
    assert decode["by_stage"]["compose"]["decoded"] == 16 and "clean" not in decode["by_stage"]
    assert decode["decoded"] == sum(s["decoded"] for s in decode["by_stage"].values())


def test_newsreel_frames_are_decoded_and_cleaned_once_in_both_executors(
    face_video: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """With film cleaning on and a face model, each segment is decoded and cleaned once (its clean
    step) and scan, crops and compose read the stored frames: within the goal of 1.25 per frame, the
    same count in both executors, the same output, and the stored frames removed at the end."""
    reports, outputs = [], []
    for run in (run_local, run_ray):
        cfg = _config(
            tiny_model, tmp_path / f"{run.__name__}.work", "run.segment_frames=240", presets=("newsreel",)
        )
        outputs.append(run(face_video, tmp_path / f"{run.__name__}.mkv", cfg).output)
        reports.append(_report(outputs[-1]))
        assert not list((tmp_path / f"{run.__name__}.work").glob("clean/*/*")), "stored frames are removed"
    _assert_same_video(outputs[1], outputs[0])
    local, ray_ = (r["decode"] for r in reports)
    assert local == ray_
    assert local["frames"] == 16 and local["decoded"] == local["cleaned"] == 16  # one segment: each once
    assert local["decoded_per_frame"] <= 1.25 and local["cleaned_per_frame"] <= 1.25
    assert local["by_stage"]["clean"]["decoded"] == 16
    for stage in ("scan", "crops", "compose"):  # they read the clean segment, decoding nothing
        assert local["by_stage"][stage] == {"decoded": 0, "cleaned": 0}, stage
    assert reports[0]["totals"]["tracks"] == 3 and reports[0]["film"]["frames"] == 16


def test_segments_decode_only_the_cleaners_context_again(
    face_video: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Three segments: each clean step decodes its frames and the cleaner's context either side
    (clipped at the ends), and nothing else decodes. With `run.store_frames=false` every step decodes
    and cleans its own frames again (the fallback when the disk has no room): the same output."""
    from pipeline.film.clean import context

    film = ("film.weave=false", "film.deflicker=false")
    cfg = _config(tiny_model, tmp_path / "work", *film, presets=("newsreel",))
    report = _report(run_local(face_video, tmp_path / "out.mkv", cfg).output)
    before, after = context(cfg)
    assert before and after
    expected = sum(min(16, e + after) - max(0, s - before) for s, e in ((0, 6), (6, 12), (12, 16)))
    decode = report["decode"]
    assert decode["by_stage"]["clean"]["decoded"] == decode["decoded"] == decode["cleaned"] == expected

    unstored = _config(
        tiny_model, tmp_path / "unstored", *film, "run.store_frames=false", presets=("newsreel",)
    )
    out = run_local(face_video, tmp_path / "unstored.mkv", unstored).output
    _assert_same_video(tmp_path / "out.mkv", out)
    again = _report(out)["decode"]
    assert "clean" not in again["by_stage"] and again["decoded"] > decode["decoded"]
    for stage in ("scan", "crops", "compose"):
        assert again["by_stage"][stage]["decoded"] >= 16, stage


def test_without_a_model_segments_are_encoded_in_parallel_and_joined_seamlessly(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "src", size=(64, 48), frames=30, rate="30000/1001", audio=1, vfr=True)
    run_local(clip, tmp_path / "local.mkv", _config(None, tmp_path / "lw"))
    run_ray(clip, tmp_path / "ray.mkv", _config(None, tmp_path / "rw", "run.segment_frames=7"))
    _assert_same_video(tmp_path / "ray.mkv", tmp_path / "local.mkv")
    assert not (tmp_path / "rw").exists()  # nothing worth keeping without faces
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ray")) == [
        "ray.mkv",
        "ray.mkv.config.yaml",
        "ray.mkv.report.html",
        "ray.mkv.report.json",
    ]


def test_inverse_telecine_through_ray_gives_film_rate_as_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.io import mux
    from pipeline.io.probe import probe

    declared = []
    real_mux = mux.mux

    def recording_mux(*args: Any, **kwargs: Any) -> Path:
        declared.append(kwargs["frame_rate"])
        return real_mux(*args, **kwargs)

    monkeypatch.setattr(mux, "mux", recording_mux)
    clip = make_clip(tmp_path / "src", size=(64, 48), frames=30, rate="30000/1001", audio=1, telecine=True)
    ivtc = "io.inverse_telecine=true"
    run_local(clip, tmp_path / "local.mkv", _config(None, tmp_path / "lw", ivtc))
    run_ray(clip, tmp_path / "ray.mkv", _config(None, tmp_path / "rw", ivtc))
    # the final mux declares the decoded (decimated) stream's rate, not the telecined source's
    assert declared == [Fraction(24000, 1001)] * 2
    for out in ("local.mkv", "ray.mkv"):
        video = probe(tmp_path / out, exact=True).video
        assert (video.frame_count, video.frame_rate) == (24, Fraction(24000, 1001)), out
    _assert_same_video(tmp_path / "ray.mkv", tmp_path / "local.mkv")


def test_search_units_match_between_executors_and_survive_a_resume(
    face_video: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """More tracks than search.batch_size: both executors search tracks (0, 1) then (2,), and a resumed
    in-process run that lost track 1's result searches (0, 1) again, not track 1 alone."""

    def config(workdir: Path) -> Config:
        return _config(tiny_model, workdir, "search.batch_size=2")

    report = run_ray(face_video, tmp_path / "ray.mkv", config(tmp_path / "rw"))
    assert report.searched == 24
    assert len(list((tmp_path / "rw" / "search").glob("*/track-*.npz"))) == 3
    run_local(face_video, tmp_path / "local.mkv", config(tmp_path / "lw"))
    _assert_same_video(tmp_path / "local.mkv", tmp_path / "ray.mkv")
    (stored,) = (tmp_path / "lw" / "search").glob("*/track-000001.npz")
    stored.unlink()
    run_local(face_video, tmp_path / "resumed.mkv", config(tmp_path / "lw"))
    assert stored.exists()
    _assert_same_video(tmp_path / "resumed.mkv", tmp_path / "local.mkv")


def test_a_rerun_skips_finished_units_and_a_changed_setting_redoes_only_its_stage(
    reference: Reference, face_video: Path, tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        run_ray(face_video, tmp_path / "again.mkv", _config(tiny_model, reference.workdir))
    text = caplog.text
    assert "scan: done earlier, skipped" in text
    # three scan segments, the stitched scan, the crops and the search of the three tracks (one unit:
    # searched together in one batch); only the segments are encoded again (parts go after the mux)
    assert text.count("done earlier, skipped") == 3 + 1 + 1 + 1
    assert "search of track(s) 0, 1, 2 (frames 0-16): done earlier, skipped" in text
    assert "search 0 run / 1 skipped" in text
    _assert_same_video(tmp_path / "again.mkv", reference.output)
    # the identity figures were stored with the unit's results: the skipped unit still reports them
    _assert_same_identity(_report(tmp_path / "again.mkv"), _report(reference.ray_output))

    # a search setting redoes the search (and what follows), never the scan
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        run_ray(
            face_video, tmp_path / "other.mkv", _config(tiny_model, reference.workdir, "search.warm_steps=3")
        )
    assert "scan: done earlier, skipped" in caplog.text
    assert "search 1 run / 0 skipped" in caplog.text
    assert "scan 0 run" in caplog.text and "stitch 0 run" in caplog.text


def test_a_paste_back_setting_recomputes_only_compose_through_ray(
    reference: Reference, face_video: Path, tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        run_ray(
            face_video, tmp_path / "b.mkv", _config(tiny_model, reference.workdir, "compose.grain_seed=7")
        )
    for kind in ("scan", "stitch", "crops", "search"):
        assert f"{kind} 0 run" in caplog.text, kind
    assert "compose 3 run / 0 skipped" in caplog.text


def test_a_killed_search_actor_gives_the_same_output(
    reference: Reference, face_video: Path, tiny_model: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    killed: list[str] = []
    earlier = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}  # other runs'

    def kill_mid_run() -> None:
        # The three tracks are one search unit: it is sent to the actor once their crops exist. Kill
        # the actor at once then: its unit is on the way or under way (no pause that a fast machine
        # would spend finishing the search); a retried unit mid-search is test_actors' to check.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            actors = [
                a
                for a in ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith("reel-search-") and a["name"] not in earlier
            ]
            if actors and len(list(work.glob("crops/*/track-*.npz"))) == 3:
                actor = ray.get_actor(actors[0]["name"], namespace=actors[0]["namespace"])
                ray.kill(actor, no_restart=False)
                killed.append(actors[0]["name"])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_mid_run)
    killer.start()
    report = run_ray(face_video, tmp_path / "out.mkv", _config(tiny_model, work))
    killer.join()
    assert killed, "the search actor was never killed"
    assert report.searched == 24
    _assert_same_video(tmp_path / "out.mkv", reference.output)


_DRIVER = textwrap.dedent(
    """
    import logging, sys
    from pathlib import Path
    from pipeline.config import load_config
    from pipeline.run.restore import restore
    from pipeline.run.schedule import Schedule
    from pipeline.run.work import StepKind
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    source, output, held, *sets = sys.argv[1:]
    finish = Schedule.finish

    def finished(schedule, step, result=None):
        # Once the driver has the finished search unit (its artifacts are on disk: the actor
        # wrote them before it returned), say so and wait to be killed: no race with the run's end.
        if step.kind is StepKind.SEARCH and held and result is not None:
            Path(held).write_text(step.label)
            sys.stdin.read()
        finish(schedule, step, result)

    Schedule.finish = finished
    restore(source, output, load_config(sets=sets))
    """
)


def test_a_killed_driver_resumes_and_skips_finished_units(
    reference: Reference, face_video: Path, tiny_model: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    # Ray's unix socket paths must stay under ~107 characters: a short directory of our own.
    ray_tmp = Path(tempfile.mkdtemp(prefix="reel-rt-", dir="/tmp"))
    sets = [
        f"prior.model={tiny_model}",
        f"run.workdir={work}",
        f"run.temp_dir={ray_tmp}",
        "run.executor=ray",
        "run.num_cpus=2",
        "run.progress=false",
        "search.steps=12",
        "search.warm_steps=4",
        "search.gaussian_samples=2000",
        "run.device=cpu",
        "run.segment_frames=6",
        "io.preset=master-ffv1",
    ]
    out = tmp_path / "out.mkv"
    held = tmp_path / "held"
    cmd = [sys.executable, "-c", _DRIVER, str(face_video), str(out)]
    # The first run's log goes to a file: a pipe nobody reads while it runs could fill and stall it.
    # Its stdin is a pipe nobody writes to: the driver waits on it once the search unit is finished.
    first_log = tmp_path / "first.log"
    with first_log.open("wb") as sink:
        first = subprocess.Popen(
            [*cmd, str(held), *sets],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300  # only a guard against a hung run: the kill waits for `held`
        while not held.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not held.exists():
            output = first_log.read_text(errors="replace")
            raise AssertionError(f"the first run never finished its search unit:\n{output[-3000:]}")
        assert first.poll() is None, "the driver went on past its finished search unit"
        os.killpg(first.pid, signal.SIGKILL)  # the driver and everything it started in its session
        first.wait(timeout=30)
    finally:
        _kill_own_ray(ray_tmp)
    assert not out.exists()

    try:
        second = subprocess.run([*cmd, "", *sets], cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        _kill_own_ray(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert second.returncode == 0, second.stdout + second.stderr
    log = second.stdout + second.stderr
    assert "scan: done earlier, skipped" in log
    assert "search of track(s) 0, 1, 2 (frames 0-16): done earlier, skipped" in log
    _assert_same_video(out, reference.output)


def _kill_own_ray(temp_dir: Path) -> None:
    """Stop the Ray processes of the embedded instance under `temp_dir` (never anyone else's)."""
    mine = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(temp_dir).encode() in cmdline:
            mine.append(int(pid))
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_chunked_track_gives_the_same_output_through_ray_as_in_process(
    face_video: Path, tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tracks longer than search.chunk_len are searched as an anchor unit plus a unit per chunk (on any
    actors); both executors give the same output and report, every unit is stored, and a resumed run
    redoes only the chunk it lost."""

    def config(workdir: Path) -> Config:
        return _config(tiny_model, workdir, "search.chunk_len=3", "search.chunk_landing=1")

    report = run_ray(face_video, tmp_path / "ray.mkv", config(tmp_path / "rw"))
    assert (report.tracks, report.searched) == (3, 24)
    # three 8-frame tracks, each in chunks [0, 3) and [3, 8): anchors, two chunks, the joined track
    (key,) = (tmp_path / "rw" / "search").iterdir()
    assert len(list(key.glob("track-*.npz"))) == 3
    assert len(list(key.glob("chunked-*-anchors.npz"))) == 3
    assert len(list(key.glob("chunked-*-chunk-*.npz"))) == 6
    run_local(face_video, tmp_path / "local.mkv", config(tmp_path / "lw"))
    _assert_same_video(tmp_path / "ray.mkv", tmp_path / "local.mkv")
    local_report, ray_report = _report(tmp_path / "local.mkv"), _report(tmp_path / "ray.mkv")
    assert ray_report["faces"] == local_report["faces"]
    assert [f["frame"] for f in ray_report["faces"] if f["track_id"] == 0] == list(range(8))
    _assert_same_identity(ray_report, local_report)

    # a resumed run that lost one chunk (and so its track's result) redoes that chunk only
    (lost,) = key.glob("chunked-000001-chunk-0001.npz")
    lost.unlink()
    (key / "track-000001.npz").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        run_ray(face_video, tmp_path / "resumed.mkv", config(tmp_path / "rw"))
    # the lost chunk and its track's join; the two other tracks, its anchors and chunk 0 are reused
    assert "chunk 1 run" in caplog.text and "join_chunks 1 run" in caplog.text
    assert "anchors 0 run" in caplog.text
    assert "anchors of track 1 (2 chunks): done earlier, skipped" in caplog.text
    assert "search of track 1 chunk 0 (track frames 0-3): done earlier, skipped" in caplog.text
    assert "joining the chunks of track 0: done earlier, skipped" in caplog.text
    assert lost.exists()
    _assert_same_video(tmp_path / "resumed.mkv", tmp_path / "local.mkv")
