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
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
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


def _free_ports(n: int) -> list[int]:
    """`n` distinct ports nobody listens on, below the kernel's ephemeral range (and above Ray's worker
    ports, 10002-19999), so no outgoing connection is given one before its node binds it.

    All are held bound at once while they are chosen: two asking in turn for "any free port" may be
    given the same one (the kernel picks at random), and then the second node cannot start.
    """
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    candidates = list(range(20000, low)) if low > 20000 + 4 * n else []
    random.SystemRandom().shuffle(candidates)
    held: list[socket.socket] = []
    try:
        for port in [*candidates, *([0] * n)]:  # port 0 (any) only where the range is too small
            if len(held) == n:
                break
            s = socket.socket()
            try:
                s.bind(("", port))  # every address: a port free on 0.0.0.0 is free on 127.0.0.1
            except OSError:
                s.close()
                continue
            held.append(s)
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


_PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def _node_ports(ports: Iterator[int]) -> list[str]:
    """Every port a node listens on, chosen free, so parallel Ray instances never collide."""
    return [arg for flag in _PORT_FLAGS for arg in (flag, str(next(ports)))]


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
    ports = iter(_free_ports(3 + 2 * len(_PORT_FLAGS)))
    gcs_port, dash_port, client_port = next(ports), next(ports), next(ports)
    head = _start(
        [
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs_port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash_port}",
            f"--ray-client-server-port={client_port}",
            "--num-cpus=1",
            f"--temp-dir={temp_dir}",
            *_node_ports(ports),
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
                *_node_ports(ports),
            ],
            root / "worker.log",
            env,
        )
        gcs, dashboard = f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dash_port}"
        worker_node = _wait_until_ready(gcs, dashboard, env, root, (head, worker))
        yield LocalCluster(gcs, dashboard, worker_node, env)
    finally:
        for proc in (worker, head):
            if proc is not None:
                _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(worker_temp_dir, ignore_errors=True)


_READY = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import ray
    from ray.job_submission import JobStatus, JobSubmissionClient
    address, dashboard, resource, answer = sys.argv[1:]
    ray.init(address=address, logging_level="error", log_to_driver=False)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"]]
    ray.shutdown()
    if not nodes:
        sys.exit("the worker node has not joined yet")
    # the job server takes a job and runs it to the end (its agent is up, not only the dashboard)
    client = JobSubmissionClient(dashboard)
    job = client.submit_job(entrypoint="python -c pass")
    while not (status := client.get_job_status(job)).is_terminal():
        time.sleep(0.2)
    if status != JobStatus.SUCCEEDED:
        sys.exit(f"the ready job ended {status}: {client.get_job_logs(job)}")
    Path(answer + ".tmp").write_text(json.dumps(nodes))
    Path(answer + ".tmp").rename(answer)
    """
)


def _wait_until_ready(
    address: str, dashboard: str, env: dict[str, str], root: Path, nodes: tuple[subprocess.Popen[bytes], ...]
) -> str:
    """Block until both nodes are alive and the job server has run a job; returns the worker's node
    id. The probe writes its answer to a file (Ray may print to stdout too); a node that exits ends
    the wait at once, with the logs. The deadline only stops a cluster that never comes up."""
    answer = root / "ready.json"
    deadline = time.monotonic() + 300
    tries: list[str] = []
    while time.monotonic() < deadline and all(n.poll() is None for n in nodes):
        try:
            probe = subprocess.run(
                [sys.executable, "-c", _READY, address, dashboard, RESOURCE, str(answer)],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            tries.append(f"rc={probe.returncode}: {probe.stderr.strip()[-300:]}")
        except subprocess.TimeoutExpired:
            tries.append("the probe took over 180 s")
        if answer.exists():
            return str(json.loads(answer.read_text())[0])
        time.sleep(1)  # between probes only; the answer is the file, never this pause
    logs = "\n".join(p.read_text()[-2000:] for p in root.glob("*.log"))
    raise AssertionError(
        f"the two-node cluster did not come up (node exit codes {[n.poll() for n in nodes]}):\n"
        + "\n".join(tries[-3:])
        + f"\n{logs}"
    )


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
