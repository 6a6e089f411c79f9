"""The search scripts run end to end on a tiny CPU setup (the GPU runs use the same code paths)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_search_runs_on_cpu_at_tiny_size() -> None:
    out = _run(
        "bench_search.py",
        "--device",
        "cpu",
        "--generators",
        "16",
        "--targets",
        "4",
        "--batch",
        "2",
        "--frames",
        "2",
        "--tiny",
        "--threads",
        "1",
        "--settings",
        "trunc-fp32,full-bf16",
        "--steps",
        "12",
        "--profile-steps",
        "4",
    )
    assert out["device"] == "cpu" and len(out["rows"]) == 4
    assert {(r["generator"], r["target"], r["setting"], r["phase"]) for r in out["rows"]} == {
        (16, 4, s, p) for s in ("trunc-fp32", "full-bf16") for p in ("cold", "warm")
    }
    for r in out["rows"]:
        assert r["faces_per_s"] > 0 and 0 <= r["met"] <= 1 and 0 < r["kernel_fraction"] <= 1
        # the loop's host syncs: its stop check (every iteration on a CPU) and one per compaction
        assert 0 < r["syncs_per_iteration"] <= 1.5 and r["ops_per_iteration"] > 0


@pytest.mark.slow
def test_evaluate_search_quick_reports_the_goals() -> None:
    out = _run("evaluate_search.py", "--quick")
    for key in ("frames_meeting_bound", "cold_steps", "warm_steps", "steadiness_gain", "boundary_ratio"):
        assert key in out
    assert out["frames_meeting_bound"] == 1.0
    assert out["warm_steps"] <= out["cold_steps"] / 4
    assert out["steadiness_gain"] >= 3


@pytest.mark.slow
def test_evaluate_search_reference_quick_guided_beats_unguided() -> None:
    out = _run("evaluate_search.py", "--reference", "--quick")
    assert out["guided_meeting_bound"] == 1.0
    assert out["guided_latent_error"] < 0.95 * out["unguided_latent_error"]
    assert out["guided_identity"] > out["unguided_identity"]
    assert out["seconds"] < 180


@pytest.mark.slow
def test_evaluate_search_reference_chunked_guided_tracks_are_pulled() -> None:
    out = _run("evaluate_search.py", "--reference", "--quick", "--chunked")
    assert out["guided_meeting_bound"] == 1.0
    assert out["guided_latent_error"] < 0.95 * out["unguided_latent_error"]
    assert out["guided_to_reference"] < 0.5 * out["unguided_to_reference"]
