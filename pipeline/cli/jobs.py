"""`reel submit` / `status` / `logs` / `stop`: reel commands as Ray jobs on a cluster."""

from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

from pipeline.errors import ConfigError
from pipeline.run import jobs

_ADDRESS_HELP = (
    "Ray job server (dashboard) URL, e.g. http://head:8265 (default: $RAY_API_SERVER_ADDRESS or local)"
)


def _add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, metavar="URL", help=_ADDRESS_HELP)


def _submit_arguments(parser: argparse.ArgumentParser) -> None:
    _add_address(parser)
    parser.add_argument(
        "--working-dir",
        default=None,
        metavar="DIR",
        help="code to upload (default: current directory); media, .venv and work dirs are never uploaded",
    )
    parser.add_argument(
        "--gpus-per-search",
        type=float,
        default=None,
        metavar="F",
        help="GPUs each search actor asks for (fractions share a GPU); sets run.num_gpus_per_search",
    )
    parser.add_argument(
        "--search-resource",
        default=None,
        metavar="NAME",
        help="custom Ray resource each search actor also asks for (pins search to nodes that have it)",
    )
    parser.add_argument(
        "--driver-resources",
        default=None,
        metavar="JSON",
        help="resources the job driver itself asks for, e.g. '{\"CPU\": 1}'",
    )
    parser.add_argument("--python", default="python", help="Python on the cluster nodes (default: python)")
    parser.add_argument("--job-id", default=None, help="submission id (default: chosen by Ray)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable for the job"
    )
    parser.add_argument("--wait", action="store_true", help="follow the job's log until it ends")
    parser.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many s")
    parser.add_argument("reel_args", nargs=argparse.REMAINDER, help="-- then the reel command to run")


def _submit(args: argparse.Namespace) -> int:
    from pathlib import Path

    reel_args = list(args.reel_args)
    if reel_args and reel_args[0] == "--":
        reel_args = reel_args[1:]
    extra: list[str] = []
    if args.gpus_per_search is not None:
        extra += ["--set", f"run.num_gpus_per_search={args.gpus_per_search}"]
    if args.search_resource:
        extra += ["--set", f"run.search_resource={args.search_resource}"]
    if extra and not reel_args:
        raise ConfigError("submit: no reel command given (e.g. reel submit -- restore IN -o OUT)")
    env: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    resources = None
    if args.driver_resources:
        try:
            resources = {str(k): float(v) for k, v in json.loads(args.driver_resources).items()}
        except (ValueError, AttributeError) as exc:
            problem = "expected a JSON object of resource amounts"
            raise ConfigError(f"--driver-resources {args.driver_resources!r}: {problem}") from exc
    num_cpus = resources.pop("CPU", None) if resources else None
    num_gpus = resources.pop("GPU", None) if resources else None
    # Options of the subcommand must follow its name: `restore IN -o OUT --set ...`.
    submission = jobs.submit(
        reel_args[:1] + extra + reel_args[1:],
        address=args.address,
        working_dir=Path(args.working_dir) if args.working_dir else None,
        python=args.python,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources=resources,
        env_vars=env,
        job_id=args.job_id,
    )
    print(submission.job_id)
    if not args.wait:
        hint = f"follow it with: reel logs -f {submission.job_id} --address {submission.address}"
        print(hint, file=sys.stderr)
        return 0
    for text in jobs.follow(submission.job_id, address=args.address, timeout=args.timeout):
        sys.stdout.write(text)
        sys.stdout.flush()
    state = jobs.status(submission.job_id, address=args.address)
    print(f"job {submission.job_id}: {state}", file=sys.stderr)
    return 0 if state == "SUCCEEDED" else 1


def _job_id_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", help="the id `reel submit` printed")
    _add_address(parser)


def _status(args: argparse.Namespace) -> int:

    print(jobs.status(args.job_id, address=args.address))
    return 0


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    _job_id_arguments(parser)
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")


def _logs(args: argparse.Namespace) -> int:

    if args.follow:
        for text in jobs.follow(args.job_id, address=args.address):
            sys.stdout.write(text)
            sys.stdout.flush()
    else:
        sys.stdout.write(jobs.logs(args.job_id, address=args.address))
    return 0


def _stop(args: argparse.Namespace) -> int:

    stopped = jobs.stop(args.job_id, address=args.address)
    print(f"job {args.job_id}: {'stop requested' if stopped else 'already finished'}")
    return 0


SUBCOMMANDS = {
    "submit": SimpleNamespace(
        HELP="run a reel command as a Ray job on a cluster (uploads the code, not the media)",
        add_arguments=_submit_arguments,
        run=_submit,
    ),
    "status": SimpleNamespace(HELP="state of a submitted job", add_arguments=_job_id_arguments, run=_status),
    "logs": SimpleNamespace(HELP="log of a submitted job", add_arguments=_logs_arguments, run=_logs),
    "stop": SimpleNamespace(HELP="stop a submitted job", add_arguments=_job_id_arguments, run=_stop),
}
