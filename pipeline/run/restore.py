"""`restore`: the one entry point. Checks everything that can fail early, makes the plan's job and
hands it to the executor the settings name (Ray by default, or in-process); both run the same plan
(`pipeline.run.plan`) and give the same output, report and work directory. Under the default
executor ("auto") a small job runs in-process: starting Ray would take longer than the job.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.run.join import finish_restore
from pipeline.run.mode import Mode, ModeName, RunReport
from pipeline.run.plan import Job
from pipeline.run.report import RestoreReport
from pipeline.search.units import search_tracks

log = logging.getLogger(__name__)

EXECUTORS = ("auto", "ray", "local")

R = TypeVar("R", bound=RunReport)

# Restore: faces (with a model) searched in the prior and pasted; long tracks may be chunked.
RESTORE: Mode[RestoreReport] = Mode(
    name=ModeName.RESTORE,
    search_unit=search_tracks,
    finish=finish_restore,
    chunkable=True,
    faces_without_model=False,
    measures_identity=True,
    spread=True,
)


def make_job(
    input: str | Path,
    output: str | Path,
    config: Config,
    *,
    overwrite: bool = False,
    mode: Mode[Any] = RESTORE,
) -> Job:
    """Preflight (settings, output, input, streams) and everything the plan is built from."""
    from pipeline.io.decode import frame_index
    from pipeline.prior.load import describe_model, model_key
    from pipeline.run.preflight import preflight
    from pipeline.run.workdir import WorkDir, default_workdir

    if mode.prepare is not None:
        config = mode.prepare(config)  # the mode's own checks and rules (anonymise: never chunked)
    if config.run.executor not in EXECUTORS:
        raise ConfigError(f"run.executor = {config.run.executor!r}: expected auto, ray or local")
    input, output = Path(input), Path(output)
    from pipeline.film.content import resolve

    config, _ = resolve(config, input)  # film: "auto" inverse telecine measured, drawn faces' prior chosen
    info, preset = preflight(input, output, config, overwrite=overwrite)
    from pipeline.faces.choose import choice_of

    people = choice_of(config.people.only, config.people.exclude)  # photos checked before any work
    model = config.prior.model
    description, random = describe_model(model) if model is not None else (None, False)
    if random:
        log.warning(
            "the face prior is a seeded RANDOM TEST GENERATOR (%s): restored faces are not faces; "
            "this run only exercises the pipeline",
            description,
        )
    return Job(
        input=input.resolve(),
        output=output,
        config=config,
        info=info,
        preset=preset,
        frames=len(frame_index(input)[1]),
        workdir=default_workdir(output, config.run.workdir),
        video_key=WorkDir.video_key(input),
        model_key=model_key(model) if model is not None else None,
        model_description=description,
        model_random=random,
        mode=mode,
        overwrite=overwrite,
        people=people,
    )


def restore(
    input: str | Path,
    output: str | Path,
    config: Config,
    *,
    overwrite: bool = False,
    mode: Mode[R] = RESTORE,  # type: ignore[assignment]
) -> R:
    """Run the plan of `mode` (restore by default; `pipeline.anon.mode.ANONYMIZE` anonymises) on
    `input` into `output` with `config.run.executor`; faces are restored when config.prior.model is
    set. The mode's `forget` runs when the job ends, however it ends.

    Raises the PipelineError a user should see (a bad setting, input or output fails before any work;
    a step that keeps failing raises JobError naming it). An existing output is replaced only with
    `overwrite`, and a failed run leaves no partial output.
    """
    from pipeline.run import lock
    from pipeline.run.join import remove_empty_dirs
    from pipeline.run.workdir import WorkDir, default_workdir

    workdir = default_workdir(output, config.run.workdir)
    try:
        job = make_job(input, output, config, overwrite=overwrite, mode=mode)
        WorkDir(job.workdir).clean_temporaries()
        if executor_of(job) == "local":
            from pipeline.run.local import run_plan
        else:
            from pipeline.run.ray_exec import run_plan
        report: R = run_plan(job)
        return report
    finally:
        if mode.forget is not None:
            mode.forget(workdir, config)
        remove_empty_dirs(workdir)
        lock.release(output, workdir)  # taken by preflight


def executor_of(job: Job, *, say: bool = True) -> str:
    """The executor that runs `job`: the setting's, with "auto" resolved to Ray, or to in-process for
    a small job (at most `run.in_process_megapixels` of source pixels) when no cluster address is
    given and no Ray is running yet (a batch or a Ray job reuses the one it has); `say` logs the
    in-process choice."""
    run = job.config.run
    if run.executor != "auto":
        return run.executor
    vs = job.info.video
    megapixels = job.frames * vs.width * vs.height / 1e6
    ray = sys.modules.get("ray")
    running = ray is not None and ray.is_initialized()
    if run.address or os.environ.get("RAY_ADDRESS") or running or megapixels > run.in_process_megapixels:
        return "ray"
    if say:
        log.info(
            "small job (%d frames of %dx%d, %.0f Mpx <= run.in_process_megapixels=%g): in-process, "
            "without starting Ray",
            job.frames,
            vs.width,
            vs.height,
            megapixels,
            run.in_process_megapixels,
        )
    return "local"
