"""Remote jobs: send a `reel` command to a Ray cluster through Ray's JobSubmissionClient.

The working directory (this project's code and configs, never media, virtual environments or work
directories) is uploaded as the job's `working_dir`; the entry point runs `python -m pipeline ...` in
it, so the cluster runs exactly the code the user has. Inputs, outputs and models must be on storage
the cluster sees (shared filesystem or object store mounts): paths are passed through, made absolute
when they exist here. Search actors inside the job ask for GPUs themselves
(`run.num_gpus_per_search`, `run.search_resource`); the driver asks for none unless told.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import JobError
from pipeline.run.ray_runtime import configure_auth

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient


log = logging.getLogger(__name__)

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
_EXCLUDED_EXTENSIONS = (
    *("mp4", "mkv", "mov", "avi", "mxf", "webm", "m4v", "mpg", "mpeg", "ts", "m2ts", "vob", "dv", "y4m"),
    *("nut", "ogv", "flv", "wmv", "3gp", "wav", "flac", "mp3", "aac", "m4a", "ac3", "opus", "ogg"),
    *("png", "jpg", "jpeg", "tif", "tiff", "exr", "dpx", "bmp"),
    *("pt", "pth", "pkl", "ckpt", "safetensors", "onnx", "npz"),
)
# Never uploaded: media, model weights, environments, caches and work directories (gitignore syntax).
UPLOAD_EXCLUDES: tuple[str, ...] = (
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "*.work",
    "*.egg-info",
    "demo",
    *(f"*.{ext}" for ext in _EXCLUDED_EXTENSIONS),
)
# Options of `reel` commands whose value is a path (made absolute so the job finds them).
_PATH_OPTIONS = frozenset({"-o", "--output", "--workdir", "--model", "--summary"})


def dashboard_address(address: str | None) -> str:
    """The job server's URL: the argument, else RAY_API_SERVER_ADDRESS, else the local default."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or DEFAULT_DASHBOARD
    if "://" not in address:
        address = f"http://{address}"
    return address


def job_client(address: str | None) -> JobSubmissionClient:
    """A JobSubmissionClient for `address` (token auth configured consistently with `ray start`)."""
    configure_auth()
    from ray.job_submission import JobSubmissionClient

    url = dashboard_address(address)
    try:
        return JobSubmissionClient(url)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise JobError(f"Ray job server at {url}: cannot connect: {exc}") from exc


def absolutize_paths(args: Sequence[str], cwd: Path | None = None) -> list[str]:
    """Make path arguments absolute: existing files, and values of path options whose folder exists."""
    cwd = cwd or Path.cwd()
    out: list[str] = []
    previous = ""
    for arg in args:
        value = arg
        if not arg.startswith("-") and ("/" in arg or "." in arg):
            path = cwd / arg
            if path.exists() or (previous in _PATH_OPTIONS and path.parent.is_dir()):
                value = str(path.resolve())
        out.append(value)
        previous = arg
    return out


def runtime_env(working_dir: Path, env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """The job's runtime environment: the uploaded code, and variables every process sees."""
    if not (working_dir / "pipeline").is_dir():
        raise JobError(f"{working_dir}: not a reel checkout (no pipeline/ package to upload)")
    return {
        "working_dir": str(working_dir),
        "excludes": list(UPLOAD_EXCLUDES),
        "env_vars": {"PYTHONUNBUFFERED": "1", **(env_vars or {})},
    }


@dataclass(frozen=True)
class Submission:
    job_id: str
    address: str  # job server URL
    entrypoint: str


def submit(
    reel_args: Sequence[str],
    *,
    address: str | None = None,
    working_dir: Path | None = None,
    python: str = "python",
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    env_vars: dict[str, str] | None = None,
    job_id: str | None = None,
) -> Submission:
    """Submit `reel <reel_args>` as a Ray job; returns at once with the job's id."""
    if not reel_args:
        raise JobError("submit: no reel command given (e.g. reel submit -- restore IN -o OUT)")
    working_dir = (working_dir or Path.cwd()).resolve()
    entrypoint = shlex.join([python, "-m", "pipeline", *absolutize_paths(reel_args)])
    client = job_client(address)
    try:
        submitted = client.submit_job(
            entrypoint=entrypoint,
            runtime_env=runtime_env(working_dir, env_vars),
            submission_id=job_id,
            entrypoint_num_cpus=num_cpus,
            entrypoint_num_gpus=num_gpus,
            entrypoint_resources=resources or None,
            metadata={"tool": "reel"},
        )
    except RuntimeError as exc:
        raise JobError(f"Ray job server at {dashboard_address(address)}: submission failed: {exc}") from exc
    log.info("submitted job %s: %s", submitted, entrypoint)
    return Submission(job_id=str(submitted), address=dashboard_address(address), entrypoint=entrypoint)


def status(job_id: str, *, address: str | None = None) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    try:
        return str(job_client(address).get_job_status(job_id).value)
    except RuntimeError as exc:
        raise JobError(f"job {job_id}: {exc}") from exc


def logs(job_id: str, *, address: str | None = None) -> str:
    try:
        return str(job_client(address).get_job_logs(job_id))
    except RuntimeError as exc:
        raise JobError(f"job {job_id}: {exc}") from exc


def stop(job_id: str, *, address: str | None = None) -> bool:
    """Ask the cluster to stop the job; False when it had already finished."""
    try:
        return bool(job_client(address).stop_job(job_id))
    except RuntimeError as exc:
        raise JobError(f"job {job_id}: {exc}") from exc


def follow(
    job_id: str, *, address: str | None = None, poll: float = 1.0, timeout: float | None = None
) -> Iterator[str]:
    """Yield new log text as the job runs; ends when the job reaches a terminal state."""
    client = job_client(address)
    seen = 0
    start = time.monotonic()
    while True:
        state = client.get_job_status(job_id)
        text = str(client.get_job_logs(job_id))
        if len(text) > seen:
            yield text[seen:]
            seen = len(text)
        if state.is_terminal():
            return
        if timeout is not None and time.monotonic() - start > timeout:
            raise JobError(f"job {job_id}: still {state.value} after {timeout:.0f} s")
        time.sleep(poll)
