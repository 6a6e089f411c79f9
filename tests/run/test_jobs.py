"""Job submission helpers and Ray auth settings that need no cluster (the cluster test sends real jobs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import JobError
from pipeline.run.jobs import UPLOAD_EXCLUDES, absolutize_paths, dashboard_address, runtime_env
from pipeline.run.ray_runtime import ray_env

REPO = Path(__file__).resolve().parents[2]


def test_paths_in_the_command_become_absolute_for_the_cluster(tmp_path: Path) -> None:
    (tmp_path / "in.mp4").write_bytes(b"x")
    (tmp_path / "out").mkdir()
    args = [
        "restore",
        "in.mp4",
        "-o",
        "out/x.mkv",
        "--set",
        "search.steps=5",
        "--workdir",
        "w.work",
        "--overwrite",
    ]
    assert absolutize_paths(args, cwd=tmp_path) == [
        "restore",
        str(tmp_path / "in.mp4"),
        "-o",
        str(tmp_path / "out" / "x.mkv"),
        "--set",
        "search.steps=5",  # not a path: a setting
        "--workdir",
        str(tmp_path / "w.work"),
        "--overwrite",
    ]


def test_the_upload_is_code_without_media_or_environments(tmp_path: Path) -> None:
    env = runtime_env(REPO, {"A": "1"})
    assert env["working_dir"] == str(REPO)
    assert env["env_vars"] == {"PYTHONUNBUFFERED": "1", "A": "1"}
    for pattern in (".venv", ".git", "*.work", "*.mp4", "*.mkv", "*.mov", "*.wav", "*.safetensors", "*.pkl"):
        assert pattern in UPLOAD_EXCLUDES
    with pytest.raises(JobError, match="not a reel checkout"):
        runtime_env(tmp_path)


def test_dashboard_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    assert dashboard_address(None) == "http://127.0.0.1:8265"
    assert dashboard_address("head:8265") == "http://head:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "https://ray.example.org")
    assert dashboard_address(None) == "https://ray.example.org"


def test_token_auth_is_made_explicit_when_a_token_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "auth_token"))
    assert "RAY_AUTH_MODE" not in ray_env()  # no token: Ray's own default
    (tmp_path / "auth_token").write_text("0123456789abcdef")
    assert ray_env()["RAY_AUTH_MODE"] == "token"
    assert ray_env({"RAY_AUTH_MODE": "disabled"})["RAY_AUTH_MODE"] == "disabled"  # the user's choice wins


def test_submit_without_a_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "--address", "http://127.0.0.1:9", "--"]) == 2
    assert "no reel command given" in capsys.readouterr().err
