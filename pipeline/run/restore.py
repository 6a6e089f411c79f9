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
from typing import TYPE_CHECKING, TypeVar, cast

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.faces.choose import choice_of
from pipeline.film.content import resolve
from pipeline.prior.load import describe_model, model_key
from pipeline.run import lock
from pipeline.run.join import finish_restore, remove_empty_dirs
from pipeline.run.mode import Mode, ModeName, RunReport
from pipeline.run.plan import Job, stored_frames_bytes, wants_stored_frames
from pipeline.run.preflight import estimated_bytes, preflight
from pipeline.run.report import RestoreReport
from pipeline.run.workdir import WorkDir, default_workdir
from pipeline.search.units import search_tracks
from pipeline.types import VideoInfo

if TYPE_CHECKING:
    from pipeline.faces.choose import References

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
    guided=True,
)


def make_job(
    input: str | Path,
    output: str | Path,
    config: Config,
    *,
    overwrite: bool = False,
    mode: Mode[RunReport] = RESTORE,
) -> Job:
    """Preflight (settings, output, input, streams) and everything the plan is built from."""
    if mode.prepare is not None:
        config = mode.prepare(config)  # the mode's own checks and rules (anonymise: never chunked)
    if config.run.executor not in EXECUTORS:
        raise ConfigError(f"run.executor = {config.run.executor!r}: expected auto, ray or local")
    input, output = Path(input), Path(output)

    config, _ = resolve(config, input)  # film: "auto" inverse telecine measured, drawn faces' prior chosen
    info, preset, source = preflight(input, output, config, overwrite=overwrite)

    people = choice_of(config.people.only, config.people.exclude)  # photos checked before any work
    references = _references(config, mode)
    model = config.prior.model
    description, random = describe_model(model) if model is not None else (None, False)
    if random:
        log.warning(
            "the face prior is a seeded RANDOM TEST GENERATOR (%s): restored faces are not faces; "
            "this run only exercises the pipeline",
            description,
        )
    frames = source.frames  # the decoded stream's index, read once by preflight's open_source
    workdir = default_workdir(output, config.run.workdir)
    faces = mode.faces_without_model or model is not None
    return Job(
        input=input.resolve(),
        output=output,
        config=config,
        info=info,
        preset=preset,
        frames=frames,
        workdir=workdir,
        video_key=WorkDir.video_key(input),
        model_key=model_key(model) if model is not None else None,
        model_description=description,
        model_random=random,
        mode=mode,
        overwrite=overwrite,
        store_frames=wants_stored_frames(config, faces) and _room_for_frames(workdir, output, info, frames),
        people=people,
        references=references,
    )


def _references(config: Config, mode: Mode[RunReport]) -> References | None:
    """The reference photos that guide the search (`people.reference`), checked before any work;
    None without them. Only a mode that searches the prior (restore) with a model can use them."""
    from pipeline.faces.choose import load_references

    if config.people.reference is None:
        return None
    if not mode.guided:
        raise ConfigError(
            f"people.reference: {mode.name} does not restore faces; reference photos guide restore"
        )
    if config.prior.model is None:
        raise ConfigError("--reference-photos: guided restoration needs a face model (--model)")
    return load_references(config.people.reference)


def _room_for_frames(workdir: Path, output: Path, info: VideoInfo, frames: int) -> bool:
    """Whether the work directory's disk holds the stored frames beside what the run writes (else the
    steps decode and clean their own frames, as without a store: slower, nothing else changes)."""
    import shutil

    need = stored_frames_bytes(info, frames) + (estimated_bytes(output) or 0)
    where = next((p for p in (workdir, *workdir.parents) if p.exists()), Path("."))
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return False
    if need > free:
        log.warning(
            "%s has %.1f GB free; storing each decoded, cleaned frame once needs %.1f GB: every step "
            "decodes and cleans its own frames instead (slower; the same output)",
            where,
            free / 1e9,
            need / 1e9,
        )
        return False
    return True


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

    workdir = default_workdir(output, config.run.workdir)
    owned = False  # this run holds the output's lock: the work directory is ours to tidy
    try:
        job = make_job(input, output, config, overwrite=overwrite, mode=mode)
        owned = True
        WorkDir(job.workdir).clean_temporaries()
        executor = executor_of(job)
        if executor == "local" and job.config.run.executor == "auto" and simple_job(job):
            job = _one_part(job)
        if executor == "local":
            from pipeline.run.local import run_plan
        else:
            from pipeline.run.ray_exec import run_plan
        # the job's mode is `mode` (a Job holds it as Mode[RunReport]): its finish made an R
        return cast(R, run_plan(job))
    finally:
        if mode.forget is not None:
            mode.forget(workdir, config)
        if owned and workdir.is_dir():  # a failed or interrupted run: writers killed mid-part
            WorkDir(workdir).clean_temporaries()
        if owned:  # a run refused by the lock must not touch the running one's (empty, new) folders
            remove_empty_dirs(workdir)
        lock.release(output, workdir)  # taken by preflight


def simple_job(job: Job) -> bool:
    """No faces are looked for and nothing changes the pictures (`steps.passes_through`: scale 1, no
    learned upscaler, no film cleaning, the stored format the source's): a transcode."""
    from pipeline.run.steps import passes_through

    return not job.faces and passes_through(job.info, job.config)


def _one_part(job: Job) -> Job:
    """A simple job in-process: one part, encoded with ffmpeg's own threads (as plain ffmpeg would)."""
    from dataclasses import replace

    run = replace(job.config.run, segment_frames=max(1, job.frames), encoder_threads=0)
    return replace(job, config=replace(job.config, run=run))


def executor_of(job: Job, *, say: bool = True) -> str:
    """The executor that runs `job`: the setting's, with "auto" resolved to Ray, or to in-process for
    a simple job (`simple_job`) or a small one (at most `run.in_process_megapixels` of source
    pixels) when no cluster address is given and no Ray is running yet (a batch or a Ray job reuses
    the one it has); `say` logs the in-process choice."""
    run = job.config.run
    if run.executor != "auto":
        return run.executor
    vs = job.info.video
    megapixels = job.frames * vs.width * vs.height / 1e6
    ray = sys.modules.get("ray")
    running = ray is not None and ray.is_initialized()
    if run.address or os.environ.get("RAY_ADDRESS") or running:
        return "ray"
    if simple_job(job):
        if say:
            log.info(
                "simple job (no faces, pictures unchanged: %d frames copied through the encoder): "
                "in-process as one part, the encoder on every core, without starting Ray",
                job.frames,
            )
        return "local"
    if megapixels > run.in_process_megapixels:
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
