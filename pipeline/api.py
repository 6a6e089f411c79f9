"""The library's entry points, above the plan and the modes: restore or anonymise one video, or run
a batch manifest whose items name either mode.

    from pipeline.api import anonymize, restore
    report = restore("film.mkv", "film.restored.mkv", load_config(["newsreel"]))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.anon.audit import AnonReport
from pipeline.anon.mode import ANONYMIZE
from pipeline.config import Config
from pipeline.run.batch import BatchReport, run_batch
from pipeline.run.mode import Mode, RunReport
from pipeline.run.report import RestoreReport
from pipeline.run.restore import RESTORE
from pipeline.run.restore import restore as run

MODES: dict[str, Mode[RunReport]] = {str(m.name): m for m in (RESTORE, ANONYMIZE)}


def restore(
    input: str | Path, output: str | Path, config: Config, *, overwrite: bool = False
) -> RestoreReport:
    """Restore `input` into `output` (see `pipeline.run.restore.restore`)."""
    return run(input, output, config, overwrite=overwrite, mode=RESTORE)


def anonymize(
    input: str | Path, output: str | Path, config: Config, *, overwrite: bool = False
) -> AnonReport:
    """Replace every face of `input` by a synthetic one, or mask it (`pipeline.anon.mode`)."""
    return run(input, output, config, overwrite=overwrite, mode=ANONYMIZE)


def batch(
    manifest: str | Path, *, presets: Sequence[str] = (), sets: Sequence[str] = (), overwrite: bool = False
) -> BatchReport:
    """Every item of a batch manifest, in the mode it names (restore or anonymize)."""
    return run_batch(manifest, presets=presets, sets=sets, overwrite=overwrite, modes=MODES)
