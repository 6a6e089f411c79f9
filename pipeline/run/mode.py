"""A mode of the plan as data: which functions its steps call and which rules hold for it.

The plan (`pipeline.run.plan`) and the steps (`pipeline.run.steps`, `pipeline.run.search_steps`)
never ask which mode they run; they call what the job's `Mode` holds and obey its flags. Restore's
mode is defined by the entry point (`pipeline.run.restore.RESTORE`); anonymise's by its own
package (`pipeline.anon.mode.ANONYMIZE`), so `pipeline.run` never imports `pipeline.anon`, and
anonymise's safety rules (never chunked, only servable crops, the person's crops forgotten when the
job ends) are properties of its record: every entry point that runs a plan in that mode obeys them,
whichever function it was called through.

A Mode is sent to Ray workers with the steps' arguments: every function in it is a module-level
function (pickled by reference), and the record is frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypedDict, TypeVar

import numpy as np

from pipeline.config import Config

if TYPE_CHECKING:
    from pipeline.faces.scan import ScanResult
    from pipeline.frame.compose import FacePlacement
    from pipeline.run.plan import PlanSummary
    from pipeline.types import Detection, FaceRestoration, TrackFrame


class ModeName(StrEnum):
    RESTORE = "restore"
    ANONYMIZE = "anonymize"


class DecodeSection(TypedDict):
    """The report's "decode" section (`Schedule.decode_section`): frames decoded and film-cleaned by
    the steps a run ran (context frames included), per frame of the video and per stage."""

    frames: int
    decoded: int
    cleaned: int
    decoded_per_frame: float
    cleaned_per_frame: float
    by_stage: dict[str, dict[str, int]]  # stage -> {"decoded": n, "cleaned": n}


class DriverContext(TypedDict):
    """What an executor hands a driver step (the join): its name, the seconds so far, the frames."""

    executor: str
    seconds: dict[str, float]
    decode: DecodeSection


class RunReport(Protocol):
    """What every mode's result gives: where the output is and the seconds each stage took."""

    output: Path
    frames: int
    random_generator: bool
    seconds: dict[str, float]
    html_path: Path | None


R = TypeVar("R", bound=RunReport, covariant=True)


class Finish(Protocol[R]):
    """The join's last part, after the mux: the mode's report (and its sidecars)."""

    def __call__(
        self,
        summary: PlanSummary,
        seconds: dict[str, float],
        executor: str | None,
        decode: DecodeSection | None,
    ) -> R: ...


F = TypeVar("F")  # a hiding mode's record of one face-frame to hide (anonymise: anon.steps.AnonFace)


@dataclass(frozen=True)
class Hider(Generic[F]):
    """A mode that hides faces instead of restoring them: what its compose step calls. The engine
    hands its `segment`'s faces to its `frame` and never looks inside them."""

    # (scan npz, searched placements by frame, start, end, frame size, cfg) -> faces to hide by frame
    segment: Callable[
        [str, Mapping[int, Sequence[FacePlacement]], int, int, tuple[int, int], Config],
        Mapping[int, Sequence[F]],
    ]
    # (frame image, its faces to hide, gray, cfg) -> (output image, one record per face)
    frame: Callable[[np.ndarray, Sequence[F], bool, Config], tuple[np.ndarray, list[dict[str, Any]]]]


@dataclass(frozen=True)
class Mode(Generic[R]):
    """The functions and rules of one mode (see the module docstring)."""

    name: ModeName  # in the work directory's keys and in logs; never compared by the engine
    # (G, space, crops, cfg, device) -> one FaceRestoration per crop (the search step's work)
    search_unit: Callable[..., list[FaceRestoration]]
    finish: Finish[R]
    chunkable: bool  # long tracks may be split into anchor chains and chunks
    faces_without_model: bool  # faces are scanned (and handled) even when no generator is given
    measures_identity: bool  # the search step measures SFace identity along each track
    spread: bool  # the report's "where is this invented?" spread is computed
    # (stitched scan, detections by frame, cfg) -> the scan's npz arrays; None: the tracker's own
    stitch_arrays: (
        Callable[[ScanResult, Mapping[int, Sequence[Detection]], Config], dict[str, np.ndarray]] | None
    ) = None
    servable: Callable[[TrackFrame, tuple[int, int], Config], bool] | None = None  # None: every face-frame
    hider: Hider[Any] | None = None  # None: faces are restored and pasted (pipeline.frame.compose)
    forget: Callable[[Path, Config], None] | None = None  # (work directory, cfg): when a job ends, however
    output_word: str = "restored"  # a batch item's default output: NAME.<output_word>.mkv
    preset: str | None = None  # the config preset applied before the user's (`reel anonymize`, batch items)
    # its settings in the search/compose keys
    key_settings: Callable[[Config], tuple[object, ...]] | None = None
    prepare: Callable[[Config], Config] | None = None  # checks and normalises the settings before a job
    hides_undecided: bool = False  # under a choice of people, a person it cannot decide is processed
    guided: bool = False  # its search_unit takes `guides` (reference photos, pipeline.search.guide)
    # a person's tracks (pipeline.faces.people) are searched in one unit, and its `search_unit` gets
    # `persons=` (track id -> person id): anonymise gives every track of a person one synthetic person
    units_by_person: bool = False

    def settings(self, cfg: Config) -> tuple[object, ...]:

        return (str(self.name), *(self.key_settings(cfg) if self.key_settings is not None else ()))

    def crops_of(self, rows: Sequence[TrackFrame], size: tuple[int, int], cfg: Config) -> list[TrackFrame]:
        """The face-frames of a track that get a crop (and so a search)."""
        if self.servable is None:
            return list(rows)
        return [r for r in rows if self.servable(r, size, cfg)]
