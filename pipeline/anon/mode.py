"""Anonymise as a mode of the plan (`pipeline.run.mode`): the record `ANONYMIZE` that every entry
point passes to `pipeline.run.restore.restore`, so its rules hold however it is called:

- never chunked: a track is one synthetic person, searched whole (`prepare` sets
  `search.chunk_len=0`, and the plan refuses chunks for a mode that is not `chunkable`);
- only servable face-frames get a crop, the others are masked (`servable`);
- the search is the synthetic-face search of `pipeline.anon.search`, never the restoring one;
- every face-frame of the scan is hidden at compose (`hider`), faces are scanned without a model;
- the person's crops and embeddings leave the work directory when the job ends, however it ends
  (`forget`; `anon.keep_crops` keeps them for review).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.anon.audit import AnonReport, check_anon_config, forget_faces
from pipeline.anon.search import anonymize_unit
from pipeline.anon.steps import compose_frame, finish, segment_faces, servable, stitch_arrays
from pipeline.config import Config
from pipeline.files import load_json
from pipeline.run.mode import Hider, Mode, ModeName

if TYPE_CHECKING:
    from pipeline.run.mode import DecodeSection
    from pipeline.run.plan import PlanSummary


def prepare(config: Config) -> Config:
    """Anonymise's settings checked; a track is never split into chunks."""
    check_anon_config(config)
    if config.search.chunk_len:
        config = replace(config, search=replace(config.search, chunk_len=0))
    return config


def key_settings(config: Config) -> tuple[object, ...]:
    """The anon section, less what only the join's audit reads (the attack check's sample)."""
    return (replace(config.anon, attack_faces=0),)


def forget(workdir: Path, config: Config) -> None:
    if not config.anon.keep_crops:  # the original faces leave the work directory with the job
        forget_faces(workdir)


def finish_anonymize(
    summary: PlanSummary,
    seconds: dict[str, float],
    executor: str | None,
    decode: DecodeSection | None = None,
) -> AnonReport:
    """The audit sidecar and the report page, from every compose segment's face-frame records."""

    job = summary.job
    records = [r for path in summary.records for r in load_json(path)]
    return finish(
        job.output,
        job.input,
        summary.scan,
        records,
        job.config,
        frames=job.frames,
        model=job.model_description or job.config.prior.model,
        random_generator=job.model_random,
        seconds=seconds,
        decode=decode,
    )


ANONYMIZE: Mode[AnonReport] = Mode(
    name=ModeName.ANONYMIZE,
    search_unit=anonymize_unit,
    finish=finish_anonymize,
    chunkable=False,
    faces_without_model=True,
    measures_identity=False,
    spread=False,
    stitch_arrays=stitch_arrays,
    servable=servable,
    hider=Hider(segment=segment_faces, frame=compose_frame),
    forget=forget,
    key_settings=key_settings,
    prepare=prepare,
    output_word="anonymized",
    hides_undecided=True,  # the safe rule: a face that cannot be decided is hidden under any choice
    units_by_person=True,  # one synthetic person per person: a person's tracks are searched together
    preset="anonymize",
)
