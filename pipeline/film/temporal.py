"""The motion-compensated stage: dust filled and grain reduced from the same aligned neighbours.

For each frame, the neighbours within `radius` are warped onto it (pipeline.film.motion). Dust
uses the two adjacent ones (pipeline.film.dust); at the ends of a clip, the two next (previous) ones
when the window holds them. Grain reduction is a motion-compensated temporal
average: each aligned neighbour is weighted per pixel by its mismatch with the frame over 3 x 3
pixels beyond what the measured grain explains (as non-local means weighs patches), so where the
alignment failed, fine detail is misaligned, or a neighbour has a speck, the frame keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.film.dust import find_specks, gain_to
from pipeline.film.motion import flow, flow_input, warp
from pipeline.film.window import Work, luma, sliding


@dataclass(eq=False)
class _Item:
    work: Work
    image: np.ndarray  # [H, W, 3] float32 the stage's input (neighbours are always the input, never
    # a cleaned frame: no result feeds back, so a frame depends only on its window)
    flow_in: np.ndarray  # [h, w] uint8 flow input
    factor: float  # source px per flow px


def grain_sigma(difference: np.ndarray) -> float:
    """Grain standard deviation (0..1) from a frame's luma minus an aligned neighbour's: robust."""
    d = difference[::4, ::4]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def _dust_pair(aligned: dict[int, np.ndarray]) -> tuple[int, int] | None:
    """The two neighbours a speck is judged against: the adjacent ones, or at the first (last) frame
    of the clip the next (previous) two; None when there are not two."""
    for pair in ((-1, 1), (1, 2), (-2, -1)):
        if pair[0] in aligned and pair[1] in aligned:
            return pair
    return None


def temporal_clean(
    works: Iterator[Work],
    *,
    radius: int,
    dust: bool,
    dust_threshold: float,
    dust_max_area: int,
    reduce: bool,
    strength: float,
) -> Iterator[Work]:
    """Frames with specks filled (`info["specks"]`, `info["speck_px"]`, `info["objects_kept"]`; the
    pixels filled joined into `info["filled"]`, [H, W] bool) and,
    with `reduce`, grain averaged out (`info["grain_sigma"]`; `info["grain_residual"]` [H, W] float32
    of what was removed and `info["grain_difference"]`, the frame's luma minus its nearest aligned
    neighbour's, both read by the regrain measurement and then dropped)."""
    import cv2

    items = (_Item(w, w.image, *flow_input(w.image)) for w in works)
    for past, c, future in sliding(items, radius, radius, lambda it: it):
        neighbours = [*past, *future]  # oldest first
        if not neighbours:
            yield c.work
            continue
        offsets = [k - len(past) for k in range(len(past))] + [k + 1 for k in range(len(future))]
        warps = {
            off: warp(n.image, flow(c.flow_in, n.flow_in), c.factor)
            for off, n in zip(offsets, neighbours, strict=True)
        }
        aligned = {off: a for off, (a, _) in warps.items()}
        image = c.image
        y = luma(image)
        pair = _dust_pair(aligned)
        if dust and pair is not None:
            a, b = pair
            pw, nw = aligned[a], aligned[b]
            raw = {off: n.image for off, n in zip(offsets, neighbours, strict=True)}
            mask, specks, objects = find_specks(
                image,
                pw,
                nw,
                raw[a],
                raw[b],
                warps[a][1] & warps[b][1],
                dust_threshold,
                dust_max_area,
                pair,
            )
            if specks:
                image = image.copy()
                fill = 0.5 * (pw * gain_to(image, pw) + nw * gain_to(image, nw))  # flicker-matched
                image[mask] = fill[mask]
                y = luma(image)
                before = c.work.info.get("filled")
                c.work.info["filled"] = mask if before is None else before | mask
            c.work.info.update(specks=specks, speck_px=int(mask.sum()), objects_kept=objects)
        if reduce:
            near = aligned.get(1, aligned.get(-1))
            assert near is not None
            difference = y - luma(near)  # two grain fields (and what the alignment missed)
            sigma = max(grain_sigma(difference), 1e-3)
            acc = image.copy()
            weight = np.ones(y.shape, np.float32)
            # A neighbour's weight falls with its local mismatch beyond what grain alone explains: the mean
            # squared difference over 3 x 3 pixels minus twice the grain variance (as in non-local means),
            # so misaligned fine detail is not averaged away.
            noise = np.float32(2.0 * sigma * sigma)
            scale = np.float32(-1.0 / (strength * sigma) ** 2)
            for moved, inside in warps.values():
                d = y - luma(moved)
                mismatch = np.maximum(cv2.blur(d * d, (3, 3)) - noise, 0.0)
                w = np.exp(scale * mismatch) * inside
                acc += moved * w[..., None]
                weight += w
            denoised = acc / weight[..., None]
            c.work.info.update(
                grain_sigma=sigma, grain_residual=luma(image) - luma(denoised), grain_difference=difference
            )
            image = denoised
        c.work.image = image
        yield c.work
