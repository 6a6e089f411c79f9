"""A real two-node Ray cluster on 127.0.0.1, and a restore sent to it with `reel submit`.

The head and the worker are `ray start --block` processes in their own sessions, with their own temp
directory and free ports, so this test stops exactly what it started (never `ray stop`, which would
stop every Ray on the machine). The worker node alone has a custom resource standing in for GPUs;
the search actors ask for it, so the job must use the second node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pipeline.faces.synthetic import larger_faces, render, standard_shots, write_video
from pipeline.run.ray_runtime import ray_env

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
RESOURCE = "reel_test_gpu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_ports() -> list[str]:
    """Every port a node listens on, chosen free, so parallel Ray instances never collide."""
    return [
        *("--node-manager-port", str(_free_port()), "--object-manager-port", str(_free_port())),
        *("--dashboard-agent-listen-port", str(_free_port())),
        *("--dashboard-agent-grpc-port", str(_free_port())),
        *("--runtime-env-agent-port", str(_free_port()), "--metrics-export-port", str(_free_port())),
    ]


@dataclass
class LocalCluster:
    gcs: str  # 127.0.0.1:PORT
    dashboard: str  # http://127.0.0.1:PORT
    worker_node_id: str
    env: dict[str, str]


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [RAY, "start", "--block", "--disable-usage-stats", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole, and only it
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):  # a node drains for up to 30 s; no need here
        proc.wait(timeout=2)
    with contextlib.suppress(ProcessLookupError):  # whatever of the group is left goes too
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("cluster")
    # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
    temp_dir = Path("/tmp") / f"reel-ray-{os.getpid()}"
    # Each node its own: two nodes on one host sharing a session directory also share the unpacked
    # job package, and one node's runtime-env agent re-extracts it while the other imports from it
    # (modules vanish mid-run: "No module named 'pipeline.run.steps'"). Real nodes never share it.
    worker_temp_dir = temp_dir.with_name(temp_dir.name + "-w")
    # The job's entry point runs `python`: the nodes get this virtualenv first on PATH, as a user's
    # activated environment would be.
    env = ray_env({"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"})
    env.pop("RAY_ADDRESS", None)
    gcs_port, dash_port = _free_port(), _free_port()
    head = _start(
        [
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs_port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash_port}",
            f"--ray-client-server-port={_free_port()}",
            "--num-cpus=1",
            f"--temp-dir={temp_dir}",
            *_node_ports(),
        ],
        root / "head.log",
        env,
    )
    worker = None
    try:
        worker = _start(
            [
                f"--address=127.0.0.1:{gcs_port}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=2",
                f"--resources={json.dumps({RESOURCE: 2})}",
                f"--temp-dir={worker_temp_dir}",
                *_node_ports(),
            ],
            root / "worker.log",
            env,
        )
        worker_node = _wait_for_nodes(f"127.0.0.1:{gcs_port}", env, root)
        yield LocalCluster(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dash_port}", worker_node, env)
    finally:
        for proc in (worker, head):
            if proc is not None:
                _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(worker_temp_dir, ignore_errors=True)


def _wait_for_nodes(address: str, env: dict[str, str], root: Path) -> str:
    """Block until both nodes are alive and the job server answers; returns the worker's node id."""
    probe = (
        f"import json, ray; ray.init(address={address!r}, logging_level='error'); "
        "print(json.dumps([n['NodeID'] for n in ray.nodes() "
        f"if n['Alive'] and {RESOURCE!r} in n['Resources']]))"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
        if out.returncode == 0:
            nodes = json.loads(out.stdout.strip().splitlines()[-1])
            if nodes:
                return str(nodes[0])
        time.sleep(1)
    logs = "\n".join(p.read_text()[-2000:] for p in root.glob("*.log"))
    raise AssertionError(f"the two-node cluster did not come up:\n{logs}")


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shot = larger_faces([replace(standard_shots()[1], length=6)])
    return write_video(render(shot, factor=8, seed=3).frames, tmp_path_factory.mktemp("media") / "clip.mkv")


def _reel(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_runs_a_restore_on_the_cluster_using_the_second_node(
    cluster: LocalCluster, face_video: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "restored.mkv"
    submit = _reel(
        [
            "submit",
            "--address",
            cluster.dashboard,
            "--search-resource",
            RESOURCE,
            "--wait",
            "--timeout",
            "240",
            "--",
            "restore",
            str(face_video),
            "-o",
            str(out),
            "--set",
            f"prior.model={tiny_model}",
            "--set",
            "search.steps=6",
            "--set",
            "search.warm_steps=2",
            "--set",
            "search.gaussian_samples=1000",
            "--set",
            "run.device=cpu",
            "--set",
            "run.segment_frames=3",
        ],
        cluster.env,
    )
    assert submit.returncode == 0, "JOB LOG:\n" + submit.stdout[-5000:]
    job_id = submit.stdout.splitlines()[0].strip()
    assert out.exists()
    from tests.media import read_video_times

    assert len(read_video_times(out).pts) == len(read_video_times(face_video).pts)
    # the search actors needed the worker node's resource: the job says where search ran
    assert f"search ran on node(s): {cluster.worker_node_id}" in submit.stdout
    # one progress display for the job, fed by the workers on both nodes
    assert "progress: frames scanned 6/6 | face-frames searched 6/6 | segments encoded 2/2" in submit.stdout

    status = _reel(["status", job_id, "--address", cluster.dashboard], cluster.env)
    assert status.returncode == 0 and status.stdout.strip() == "SUCCEEDED"
    logs = _reel(["logs", job_id, "--address", cluster.dashboard], cluster.env)
    assert "wrote " in logs.stdout and "face-frames restored" in logs.stdout
    stop = _reel(["stop", job_id, "--address", cluster.dashboard], cluster.env)
    assert stop.returncode == 0 and "already finished" in stop.stdout


def test_a_bad_job_fails_and_says_why(cluster: LocalCluster, tmp_path: Path) -> None:
    submit = _reel(
        [
            "submit",
            "--address",
            cluster.dashboard,
            "--wait",
            "--timeout",
            "120",
            "--",
            "restore",
            str(tmp_path / "missing.mkv"),
            "-o",
            str(tmp_path / "out.mkv"),
        ],
        cluster.env,
    )
    assert submit.returncode == 1
    assert "missing.mkv: no such file" in submit.stdout
    assert "FAILED" in submit.stderr


def test_restore_with_address_runs_on_the_running_cluster(
    cluster: LocalCluster, face_video: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.mkv"
    env = {**cluster.env, "RAY_ADDRESS": ""}  # only --address says where the cluster is
    run = _reel(
        [
            "-v",
            "restore",
            str(face_video),
            "-o",
            str(out),
            "--address",
            cluster.gcs,
            "--set",
            "run.segment_frames=2",
        ],
        env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Ray cluster {cluster.gcs}: 2 node(s)" in run.stderr
    from tests.media import read_video_times

    assert len(read_video_times(out).pts) == len(read_video_times(face_video).pts)
