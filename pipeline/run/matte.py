"""The provenance matte of a run (`film.matte`): every synthesised pixel of the output marked.

Each compose step keeps, beside its records, its segment's matte part (`SegmentMatte`: pasted
faces by their blend mask, dust and scratch fills upscaled to the output) and each frame's share of
altered pixels; the join copies the parts into `OUTPUT.matte.mkv` (`pipeline.io.matte`) and the
report gives the shares per shot (`matte_report`). A rerun reuses finished parts as it does the
video parts: a part is renamed into place when complete and the records are written after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.files import load_json, save_json
from pipeline.frame.compose import Pasted

if TYPE_CHECKING:
    from pipeline.io.matte import MatteWriter


def part_path(records: str | Path) -> Path:
    """The matte part of the compose segment whose records are at `records`."""
    return Path(str(records).removesuffix(".records.json") + ".matte.nut")


def shares_path(records: str | Path) -> Path:
    """The per-frame altered shares of the compose segment whose records are at `records`."""
    return Path(str(records).removesuffix(".records.json") + ".matte.json")


class SegmentMatte:
    """One compose segment's matte: `add` one output frame's matte (film fills upscaled, pasted
    faces by their blend mask) and note its share of altered pixels; `close` (after the last frame)
    moves the part into place and stores the shares; `abort` leaves nothing."""

    def __init__(self, records: str | Path) -> None:
        self._records = records
        self._writer: MatteWriter | None = None
        self.shares: list[tuple[int, float]] = []  # (frame index, share of its pixels altered)

    def add(
        self,
        shape: tuple[int, int],  # (H, W) of the output frame
        index: int,
        pts: int,
        time_base: Fraction,
        filled: np.ndarray | None = None,  # [h, w] bool: source pixels film cleaning synthesised
        faces: Sequence[Pasted] = (),  # where compose pasted faces (box and blend mask, output px)
    ) -> None:
        from pipeline.io.matte import MatteWriter

        mask = frame_matte(shape, filled, faces)
        if self._writer is None:
            h, w = shape
            self._writer = MatteWriter(part_path(self._records), width=w, height=h, time_base=time_base)
            self._writer.open()
        self._writer.write(mask, pts)
        self.shares.append((int(index), round(float(np.count_nonzero(mask)) / mask.size, 6)))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        save_json(shares_path(self._records), [list(s) for s in self.shares])

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


def frame_matte(shape: tuple[int, int], filled: np.ndarray | None, faces: Sequence[Pasted]) -> np.ndarray:
    """[H, W] uint8 matte of one output frame: 255 where film cleaning filled (the source's pixels
    scaled up to the output, nearest), each pasted face's blend mask x 255 (the larger where both)."""
    import cv2

    matte = np.zeros(shape, np.float32)
    if filled is not None and filled.any():
        up = cv2.resize(filled.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        matte[up > 0] = 1.0
    for face in faces:
        x0, y0, x1, y1 = face.box
        alpha = face.alpha  # a tensor on compose's device (pipeline.frame.compose.Pasted)
        mask = alpha.detach().cpu().numpy() if hasattr(alpha, "detach") else np.asarray(alpha)
        np.maximum(matte[y0:y1, x0:x1], mask, out=matte[y0:y1, x0:x1])
    return np.clip(np.rint(matte * 255.0), 0, 255).astype(np.uint8)


def join_matte(records: Sequence[str | Path], output: Path) -> Path:
    """The segments' matte parts joined into `OUTPUT.matte.mkv` beside `output`."""
    from pipeline.io.matte import join_mattes, matte_path

    return join_mattes([part_path(r) for r in records], matte_path(output))


def matte_report(
    records: Sequence[str | Path], output: Path, shots: Sequence[tuple[int, int]] | None
) -> dict[str, Any]:
    """The report's matte section: its path, the share of altered pixels over the whole output
    and per shot (`shots` [start, end) frame ranges; None: the whole clip as one)."""
    from pipeline.io.matte import matte_path

    shares: dict[int, float] = {}
    for r in records:
        for index, share in load_json(shares_path(r)):
            shares[int(index)] = float(share)
    ranges = list(shots) if shots else ([(min(shares), max(shares) + 1)] if shares else [])
    per_shot = []
    for start, end in ranges:
        mine = [v for k, v in shares.items() if start <= k < end]
        per_shot.append(
            {
                "start": int(start),
                "end": int(end),
                "altered_share": round(sum(mine) / len(mine), 6) if mine else 0.0,
                "frames_altered": sum(v > 0 for v in mine),
            }
        )
    return {
        "path": str(matte_path(output)),
        "marks": "pasted faces (by their blend mask), dust and scratch fills",
        "frames": len(shares),
        "altered_share": round(sum(shares.values()) / len(shares), 6) if shares else 0.0,
        "shots": per_shot,
    }


def remove_matte_files(records: Sequence[str | Path]) -> None:
    """The parts and shares go once the matte and the report are written."""
    for r in records:
        part_path(r).unlink(missing_ok=True)
        shares_path(r).unlink(missing_ok=True)
