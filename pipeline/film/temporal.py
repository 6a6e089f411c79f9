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
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.film import torch_ops
from pipeline.film.dust import find_specks, gain_to
from pipeline.film.grain import channel_grain
from pipeline.film.motion import affine_motion, flow, flow_input, warp
from pipeline.film.torch_ops import is_tensor
from pipeline.film.window import Work, luma, sliding

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(eq=False)
class _Item:
    work: Work
    image: Any  # [H, W, 3] float32 the stage's input, numpy or a tensor (neighbours are always the input,
    # never a cleaned frame: no result feeds back, so a frame depends only on its window)
    flow_in: np.ndarray  # [h, w] uint8 flow input
    factor: float  # source px per flow px


def grain_sigma(difference: np.ndarray | Tensor, step: int = 4) -> float:
    """Grain standard deviation (0..1) from a frame's luma minus an aligned neighbour's (every `step`-th
    pixel each way): robust. A tensor is measured on its device (the medians are selections, in
    float32 as numpy's: the same figure); only the number crosses."""
    d = difference[::step, ::step]
    if is_tensor(d):
        from pipeline.frame.tensor_ops import median

        flat = d.reshape(-1)
        mad = np.float32(torch_ops.to_numpy(median((flat - median(flat)).abs())))
        return float(1.4826 * mad / np.sqrt(2.0))
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def _dust_pair(aligned: dict[int, Any]) -> tuple[int, int] | None:
    """The two neighbours a speck is judged against: the adjacent ones, or at the first (last) frame
    of the clip the next (previous) two; None when there are not two."""
    for pair in ((-1, 1), (1, 2), (-2, -1)):
        if pair[0] in aligned and pair[1] in aligned:
            return pair
    return None


def _specks(
    c: _Item,
    image: Any,
    warps: dict[int, tuple[Any, Any]],
    raw: dict[int, Any],
    pair: tuple[int, int],
    **kw: Any,
) -> Any:
    """`image` with its specks filled from the pair of aligned neighbours (the counts and the mask
    go into the frame's info)."""
    a, b = pair
    pw, nw = warps[a][0], warps[b][0]
    args = (image, pw, nw, raw[a], raw[b], warps[a][1] & warps[b][1])  # tensors: candidates on the device
    mask, specks, objects = find_specks(*args, kw["dust_threshold"], kw["dust_max_area"], pair)
    if specks:
        fill = 0.5 * (pw * gain_to(image, pw) + nw * gain_to(image, nw))  # flicker-matched
        image = _filled(image, fill, mask)
        before = c.work.info.get("filled")
        c.work.info["filled"] = mask if before is None else before | mask
    c.work.info.update(specks=specks, speck_px=int(mask.sum()), objects_kept=objects)
    return image


def _filled(image: Any, fill: Any, mask: np.ndarray) -> Any:
    """A copy of `image` taking `fill` where `mask` ([H, W] bool numpy) is set."""
    if is_tensor(image):
        import torch

        at = torch.as_tensor(mask, device=image.device)
        return torch.where(at[..., None], fill, image)
    out = image.copy()
    out[mask] = fill[mask]
    return out


def _reduced(c: _Item, image: Any, warps: dict[int, tuple[Any, Any]], strength: float) -> Any:
    """`image` with its grain averaged out over the aligned neighbours (the figures into its info)."""
    import cv2

    y = luma(image)
    near = warps[1][0] if 1 in warps else warps[-1][0]
    difference = y - luma(near)  # two grain fields (and what the alignment missed)
    sigma = max(grain_sigma(difference), 1e-3)
    acc = image.clone() if is_tensor(image) else image.copy()
    weight = y.new_ones(y.shape) if is_tensor(y) else np.ones(y.shape, np.float32)
    # A neighbour's weight falls with its local mismatch beyond what grain alone explains: the mean
    # squared difference over 3 x 3 pixels minus twice the grain variance (as in non-local means),
    # so misaligned fine detail is not averaged away.
    noise = 2.0 * sigma * sigma
    scale = -1.0 / (strength * sigma) ** 2
    for moved, inside in warps.values():
        d = y - luma(moved)
        if is_tensor(image):
            w = (scale * (torch_ops.box3(d * d) - noise).clamp(min=0.0)).exp() * inside
        else:
            mismatch = np.maximum(cv2.blur(d * d, (3, 3)) - np.float32(noise), 0.0)
            w = np.exp(np.float32(scale) * mismatch) * inside
        acc += moved * w[..., None]
        weight += w
    denoised = acc / weight[..., None]
    c.work.info.update(grain_sigma=sigma, grain_residual=y - luma(denoised), grain_difference=difference)
    return denoised


def _grain_motion_and_colour(c: _Item, flows: dict[int, np.ndarray], removed: Any) -> None:
    """For regrain: how the picture moved from the two frames before (`info["grain_motion"]`, the
    grain is carried along it) and how the channels of the grain removed relate
    (`info["grain_colour"]`: film/grain.channel_grain of what was `removed`, ~10 000 pixels of it)."""
    h, w = removed.shape[:2]
    step = max(1, round(float(np.sqrt(h * w / 10_000))))
    c.work.info["grain_colour"] = channel_grain(torch_ops.to_numpy(removed[::step, ::step]))
    motions = [affine_motion(flows[k], c.factor) if k in flows else None for k in (-1, -2)]
    c.work.info["grain_motion"] = motions


def temporal_clean(
    works: Iterator[Work],
    *,
    radius: int,
    dust: bool,
    dust_threshold: float,
    dust_max_area: int,
    reduce: bool,
    strength: float,
    measure: bool = False,
) -> Iterator[Work]:
    """Frames with specks filled (`info["specks"]`, `info["speck_px"]`, `info["objects_kept"]`; the
    pixels filled joined into `info["filled"]`, [H, W] bool) and,
    with `reduce`, grain averaged out (`info["grain_sigma"]`; `info["grain_residual"]` [H, W] float32
    of what was removed and `info["grain_difference"]`, the frame's luma minus its nearest aligned
    neighbour's, both read by the regrain measurement and then dropped; with `measure` (regrain)
    also `info["grain_motion"]` and `info["grain_colour"]`: `_grain_motion_and_colour`). Tensor
    pictures (a torch `film.device`) are warped, filled and averaged on their device."""
    items = (_Item(w, w.image, *flow_input(w.image)) for w in works)
    for past, c, future in sliding(items, radius, radius, lambda it: it):
        neighbours = [*past, *future]  # oldest first
        if not neighbours:
            yield c.work
            continue
        offsets = [k - len(past) for k in range(len(past))] + [k + 1 for k in range(len(future))]
        flows = {off: flow(c.flow_in, n.flow_in) for off, n in zip(offsets, neighbours, strict=True)}
        warps = {off: warp(n.image, flows[off], c.factor) for off, n in zip(offsets, neighbours, strict=True)}
        image = c.image
        pair = _dust_pair(warps)
        if dust and pair is not None:
            raw = {off: n.image for off, n in zip(offsets, neighbours, strict=True)}
            limits = {"dust_threshold": dust_threshold, "dust_max_area": dust_max_area}
            image = _specks(c, image, warps, raw, pair, **limits)
        if reduce:
            reduced = _reduced(c, image, warps, strength)
            if measure:
                _grain_motion_and_colour(c, flows, image - reduced)
            image = reduced
        c.work.image = image
        yield c.work
