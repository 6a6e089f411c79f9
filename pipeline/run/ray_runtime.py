"""Starting and stopping Ray: an embedded instance on a workstation, or a connection to a cluster.

`ray_session(run_config)` is the one entry point. Without an address it starts a private Ray on this
machine, sized to the machine (or to `run.num_cpus`), with no dashboard and quiet logs, and shuts it
down afterwards; with an address (`auto`, `HOST:PORT` or `ray://HOST:PORT`) it connects to a running
cluster and only disconnects. Inside a Ray job (`reel submit`) Ray is already initialised and the
session is reused as it is.

Token authentication (Ray >= 2.5x turns it on by default for new local clusters and keeps the token
in `~/.ray/auth_token`): whenever that token file exists and the user has not chosen a mode with
`RAY_AUTH_MODE`, every Ray process we start or connect to uses token mode, so an embedded instance,
`ray start` nodes and job submission all agree. `ray_env()` gives the environment for `ray` commands
run as subprocesses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import JobError

if TYPE_CHECKING:
    from pipeline.config import RunConfig

log = logging.getLogger(__name__)

AUTH_MODE_ENV = "RAY_AUTH_MODE"
DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"
# Small things cross the object store (tracks, crops, latents, part paths), never frames in bulk, so a
# modest store suffices and leaves the memory to decoding and search.
EMBEDDED_OBJECT_STORE_BYTES = 512 * 1024 * 1024


def auth_token_path() -> Path:
    """Where Ray reads the token from (RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or DEFAULT_TOKEN_PATH)


def configure_auth(env: dict[str, str] | None = None) -> dict[str, str]:
    """Choose the auth mode once, consistently: token mode when a token exists and no mode is set.

    Updates `env` (default: this process's environment, which Ray's children inherit) and returns it.
    """
    target: MutableMapping[str, str] = os.environ if env is None else env

    if AUTH_MODE_ENV not in target and (auth_token_path().is_file() or "RAY_AUTH_TOKEN" in target):
        target[AUTH_MODE_ENV] = "token"
        if env is None and "ray" in sys.modules:
            # Ray caches its config at import; refresh it the way Ray itself does when it turns token
            # mode on (an explicit cluster address never turns it on by itself).
            from ray._raylet import Config as RayletConfig  # type: ignore[attr-defined]

            RayletConfig.initialize("")
    return dict(target)


def ray_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for `ray start` / `ray stop` / `ray job` subprocesses (auth mode made explicit)."""
    env = dict(os.environ)
    env.update(extra or {})
    return configure_auth(env)


def stop_started_processes() -> None:
    """Shut down what an interrupted `ray.init` started: Ray's own shutdown, then every process this
    one started (GCS, raylet and their agents), found before any is killed so none is orphaned."""
    import signal

    import ray

    children = descendants(os.getpid())
    with contextlib.suppress(Exception):
        ray.shutdown()
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, theirs, ...), read from /proc; empty where there is none."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass(frozen=True)
class RayInfo:
    """What the driver is connected to."""

    address: str | None  # None for an embedded instance
    embedded: bool
    nodes: int
    cpus: float
    gpus: float
    resources: dict[str, float]


def _cluster_info(address: str | None, embedded: bool) -> RayInfo:
    import ray

    total = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return RayInfo(
        address=address,
        embedded=embedded,
        nodes=nodes,
        cpus=float(total.get("CPU", 0.0)),
        gpus=float(total.get("GPU", 0.0)),
        resources={k: float(v) for k, v in total.items()},
    )


def init_ray(run: RunConfig) -> RayInfo | None:
    """Initialise Ray for `run` unless it already is; returns info when this call started it."""
    import ray

    if ray.is_initialized():
        return None
    configure_auth()
    # Inside a Ray job (reel submit) RAY_ADDRESS names the cluster the job runs on.
    address = run.address or os.environ.get("RAY_ADDRESS")
    # Let worker loggers reach the driver's terminal at WARNING and above; Ray's own INFO chatter stays
    # in the session logs.
    common: dict[str, Any] = {
        "logging_level": logging.WARNING,
        "log_to_driver": True,
        "namespace": "reel",
    }
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(
                num_cpus=run.num_cpus,
                include_dashboard=False,
                object_store_memory=EMBEDDED_OBJECT_STORE_BYTES,
                _temp_dir=run.temp_dir,
                **common,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"Ray cluster at {address}" if address else "embedded Ray"
        raise JobError(f"{where}: cannot start or connect: {exc}") from exc
    except BaseException:  # Ctrl-C while the embedded Ray starts: none of its processes may outlive us
        if not address:
            stop_started_processes()
        raise
    info = _cluster_info(address, embedded=not address)
    log.info(
        "Ray %s: %d node(s), %.0f CPU, %.1f GPU",
        f"cluster {address}" if address else "embedded",
        info.nodes,
        info.cpus,
        info.gpus,
    )
    return info


@contextlib.contextmanager
def ray_session(run: RunConfig) -> Iterator[RayInfo]:
    """Ray for the duration of a run: started (and stopped) here, or reused when already up."""
    import ray

    started = init_ray(run)
    try:
        yield started if started is not None else _cluster_info(run.address, embedded=False)
    finally:
        if started is not None:
            ray.shutdown()
