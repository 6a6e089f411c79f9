"""Dust, dirt and blotches: specks present in one frame only, filled from its aligned neighbours.

The detector is the classic spike-detection index made motion compensated: a pixel is a speck when
(in any channel) it differs, with the same sign and by more than `threshold`, from both neighbours
after they are warped onto the frame, while those two agree with each other (so the alignment worked there).
Blobs larger than `max_area` are picture (a moving object the flow missed), not dust. A small,
fast object the flow cannot follow looks like a speck to that test, so every candidate is also
looked for in the unaligned neighbours nearby: found in the previous frame at -d and in the next at
about +d (steady motion), it is an object and left alone. At a clip's first (last) frame the two
neighbours are the next (previous) two, and an object is found at d and about 2d: the same test with
the path stretched, so large specks there are filled as anywhere else; only the two neighbours
must agree more closely over the blob (seen from one side, the edge of an object crossing the
picture passes the other tests).
Specks (slightly grown to take their soft rim) are filled with the mean of the aligned neighbours.

With tensor pictures (a torch `film.device`) the per-pixel detector (`speck_candidates`: gains,
Sobel, the thresholds, the candidate map) runs on their device; the blobs are judged on the CPU
(connected components, template matching) from the candidate mask (packed to a bit a pixel) and
patches cut around them on the device (at most _MAX_BLOBS of them: the pictures within 4 px of a
blob, and for the blobs that pass the first tests the unaligned neighbours within the search
radius); no whole picture crosses. The fill (pipeline.film.temporal) is made on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.film import torch_ops
from pipeline.film.torch_ops import is_tensor

if TYPE_CHECKING:
    from torch import Tensor

_SEARCH = 40  # px (at 576 lines; 32 at least): how far a moving object may travel between frames
_MAX_BLOBS = 2000  # candidates examined per frame at most (a frame this dirty is mostly picture)
_MISALIGN = 1.0  # px of misalignment the detector tolerates (on edges)
_DISTINCT = 12  # a match at more places than this is no evidence of where an object went
_CONTEXT = (
    0.5  # ... a blob's surroundings must differ from the aligned neighbours by less than this x threshold
)
_AGREE = 0.3  # a blob's neighbours differ from each other by less than this x their difference to it
_ONE_SIDED = 4  # with both neighbours on one side, the agreement this many times closer
_BORDER = 4  # px: blobs this close to the frame's edge are left alone
_MIN_AREA = 5  # px: smaller blobs are mostly fine texture the warp could not follow, not dust


def _match_map(
    patch: np.ndarray, mask: np.ndarray, padded: np.ndarray, x0: int, y0: int, r: int
) -> np.ndarray:
    """[2r+1, 2r+1] mean squared difference of the masked `patch` placed at (x0, y0) + (dx, dy) in a
    neighbour padded by r (with an impossible value, so no match leaves the picture)."""
    import cv2

    ph, pw = patch.shape[:2]
    area = padded[y0 : y0 + ph + 2 * r, x0 : x0 + pw + 2 * r]
    res = cv2.matchTemplate(area, patch, cv2.TM_SQDIFF, mask=mask)  # [2r+1, 2r+1], index = d + r
    return np.asarray(res) / max(1.0, float(mask.sum()))


def _one_place(cost: np.ndarray, tol: float, size: int) -> np.ndarray | None:
    """[2] index of the best match in a cost map that matches at one place, or None (nowhere, or many).

    A piece of a plain object matches at every offset that keeps it inside the object: one compact
    cluster no wider than `size` (the template's) still counts as one place."""
    import cv2

    hits = cost < tol * tol
    if not hits.any():
        return None
    if int(hits.sum()) > _DISTINCT:
        n, _, boxes, _ = cv2.connectedComponentsWithStats(hits.astype(np.uint8), connectivity=8)
        if n != 2 or max(boxes[1, cv2.CC_STAT_WIDTH], boxes[1, cv2.CC_STAT_HEIGHT]) > size:
            return None
    return np.array(np.unravel_index(int(cost.argmin()), cost.shape))


def _moving_object(
    patch: np.ndarray,
    mask: np.ndarray,
    padded: tuple[np.ndarray, np.ndarray],
    at: tuple[int, int],
    r: int,
    tol: float,
    offsets: tuple[int, int] = (-1, 1),
) -> bool:
    """Whether the blob (top left `at`) is an object in motion: found at one place d in the neighbour
    `offsets[0]` frames away and at one place in the one `offsets[1]` away, about d x offsets[1] /
    offsets[0] (steady speed, give or take half of it: -d for the previous and the next frame, 2d
    for the next two). Dust is in one frame only; a plain blob that matches in many places (a white
    speck by a white wall) is no evidence."""
    import cv2

    if abs(offsets[0]) > abs(offsets[1]):  # the nearer neighbour's map is the one stretched
        offsets, padded = (offsets[1], offsets[0]), (padded[1], padded[0])
    size = max(patch.shape[:2])
    cp = _match_map(patch, mask, padded[0], at[0], at[1], r)
    at_p = _one_place(cp, tol, size)
    if at_p is None:
        return False
    cn = _match_map(patch, mask, padded[1], at[0], at[1], r)
    at_n = _one_place(cn, tol, size)
    if at_n is None:
        return False
    speed = max(float(np.hypot(*(at_p - r))), float(np.hypot(*(at_n - r))))
    slack = max(3, round(0.5 * speed))
    # where the blob would be in the second neighbour, seen from each place in the first: index
    # e + r of the second's map reads the first's at e / k + r (k = -1: the first's map mirrored)
    k = offsets[1] / offsets[0]
    to_first = np.array([[1 / k, 0.0, r - r / k], [0.0, 1 / k, r - r / k]], np.float32)
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    ep = cv2.warpAffine(cp, to_first, cp.shape[::-1], flags=flags, borderValue=(1e9,))
    loose = cv2.erode(ep, np.ones((2 * slack + 1, 2 * slack + 1), np.uint8)) + cn
    return bool((loose < 2 * tol * tol).any())


def gain_to(image: Any, other: Any) -> Any:
    """[3] float32 per-channel gain bringing `other`'s mean brightness to `image`'s (numpy arrays,
    or tensors on their device)."""
    if is_tensor(image):
        a = image[::4, ::4].reshape(-1, 3).mean(dim=0)
        b = other[::4, ::4].reshape(-1, 3).mean(dim=0)
        return a / b.clamp(min=1e-3)
    a = image[::4, ::4].reshape(-1, 3).mean(axis=0)
    b = other[::4, ::4].reshape(-1, 3).mean(axis=0)
    return (a / np.maximum(b, 1e-3)).astype(np.float32)


def _surroundings_unexplained(
    labels: np.ndarray, i: int, box: tuple[int, int, int, int], explained: np.ndarray, threshold: float
) -> bool:
    """Whether the ring around blob `i` (its box x, y, w, h) is badly explained by the neighbours
    (`explained`: how well, over the box grown by 4 px within the frame)."""
    import cv2

    x, yy, w, h = box
    e = 4
    ex0, ey0 = max(0, x - e), max(0, yy - e)
    ex1, ey1 = min(labels.shape[1], x + w + e), min(labels.shape[0], yy + h + e)
    near = (labels[ey0:ey1, ex0:ex1] == i).astype(np.uint8)
    ring = (cv2.dilate(near, np.ones((2 * e + 1, 2 * e + 1), np.uint8)) > 0) & ~(
        cv2.dilate(near, np.ones((5, 5), np.uint8)) > 0
    )
    return bool(ring.any()) and float(np.median(explained[ring])) > _CONTEXT * threshold


def _templates(
    labels: np.ndarray, i: int, box: tuple[int, int, int, int], size: tuple[int, int]
) -> list[tuple[np.ndarray, int, int]]:
    """Templates of blob `i` (with their top-left corners): the blob, its core (a blob's rim may be
    smeared background), the blob with a small rim (a piece of an object is placed by its edges).
    Any one found moving makes it an object."""
    import cv2

    x, yy, w, h = box
    blob = (labels[yy : yy + h, x : x + w] == i).astype(np.uint8)
    core = cv2.erode(blob, np.ones((3, 3), np.uint8))
    m = 2
    x0, y0 = max(0, x - m), max(0, yy - m)
    x1, y1 = min(size[1], x + w + m), min(size[0], yy + h + m)
    rim = cv2.dilate((labels[y0:y1, x0:x1] == i).astype(np.uint8), np.ones((2 * m + 1, 2 * m + 1), np.uint8))
    templates = [(blob, x, yy), (rim, x0, y0)]
    if int(core.sum()) >= _MIN_AREA:
        templates.insert(1, (core, x, yy))
    return templates


def speck_candidates(
    image: Any, prev_w: Any, next_w: Any, inside: Any, threshold: float
) -> tuple[Any, Any, Any, Any, Any]:
    """(candidates [H, W] bool, how well the better aligned neighbour explains each pixel [H, W], the
    neighbours brought to the frame's brightness, their mean): the per-pixel part of the detector,
    numpy or (tensors) on their device."""
    import cv2

    # Where the picture has strong edges a fraction of a pixel of misalignment makes a large difference:
    # the threshold grows with the gradient of the speck-free estimate (the neighbours' mean).
    # Flicker between the frames is not dirt: each neighbour is brought to the frame's brightness first.
    on_device = is_tensor(image)
    prev_w = prev_w * gain_to(image, prev_w)
    next_w = next_w * gain_to(image, next_w)
    both = 0.5 * (prev_w + next_w)  # [H, W, 3]
    if on_device:
        gx, gy = torch_ops.sobel(both)
        gradient = (gx * gx + gy * gy).sqrt()
    else:
        gx = cv2.Sobel(both, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(both, cv2.CV_32F, 0, 1, ksize=3)
        gradient = np.sqrt(gx * gx + gy * gy)
    th = threshold + _MISALIGN * gradient / 8.0  # Sobel is 8 x the gradient
    dp, dn = image - prev_w, image - next_w  # [H, W, 3]
    agree = abs(prev_w - next_w) < th
    same = ((dp > th) & (dn > th)) | ((dp < -th) & (dn < -th))
    # any channel: colour dirt can differ in hue more than brightness
    if on_device:
        cand = (agree & same).any(dim=2) & inside
        explained = dp.abs().minimum(dn.abs()).amax(dim=2)
    else:
        cand = (agree & same).any(axis=2) & inside
        explained = np.minimum(np.abs(dp), np.abs(dn)).max(axis=2)  # [H, W]
    return cand, explained, prev_w, next_w, both


def find_specks(
    image: Any,  # [H, W, 3] float32 the frame (numpy, or a tensor: then every picture is one)
    prev_w: Any,  # [H, W, 3] the previous frame warped onto it
    next_w: Any,  # [H, W, 3] the next frame warped onto it
    prev_raw: Any,  # [H, W, 3] float32 the previous frame as it is
    next_raw: Any,  # [H, W, 3] the next frame as it is
    inside: Any,  # [H, W] bool where both warped neighbours show picture (not an edge entering)
    threshold: float,
    max_area: int,
    offsets: tuple[int, int] = (-1, 1),  # how many frames away the two neighbours are (their order)
) -> tuple[np.ndarray, int, int]:
    """(mask [H, W] bool of pixels to fill, specks found, candidates left alone: moving objects, or
    blobs whose surroundings the neighbours do not explain). With tensors the candidates are found on
    their device and only their mask (packed) and patches around the blobs judged come to the CPU."""
    import cv2

    cand, explained, prev_w, next_w, both = speck_candidates(image, prev_w, next_w, inside, threshold)
    cand = torch_ops.mask_to_numpy(cand) if is_tensor(cand) else cand
    if not cand.any():
        return np.zeros_like(cand), 0, 0
    _, labels, boxes, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=8)
    scale = cand.shape[0] / 576.0
    area_limit = max(150, round(max_area * scale * scale))
    area = boxes[1:, cv2.CC_STAT_AREA]
    if not ((area >= _MIN_AREA) & (area <= area_limit)).any():
        return np.zeros_like(cand), 0, 0
    pictures = [image, prev_w, next_w, both, explained, prev_raw, next_raw]
    keep, objects = _judge(labels, boxes, pictures, threshold, area_limit, offsets)
    mask = keep[labels]
    if not mask.any():
        return mask, 0, objects
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return grown, int(keep.sum()), objects


def _cut(
    pictures: Sequence[np.ndarray | Tensor], rects: list[tuple[int, int, int, int]], fill: float
) -> list[list[np.ndarray]]:
    """[rect][picture] the regions (y0, y1, x0, x1) of the pictures, `fill` past the frame: numpy
    copies, or (tensors) cut on their device and brought over together (torch_ops.cut)."""
    if not rects:
        return []
    tensors = [p for p in pictures if is_tensor(p)]
    if tensors:
        return torch_ops.cut(tensors, rects, fill)
    out = []
    h, w = pictures[0].shape[:2]
    arrays = [np.asarray(p) for p in pictures]  # numpy already: the same arrays
    for y0, y1, x0, x1 in rects:
        row = []
        for p in arrays:
            region = np.full((y1 - y0, x1 - x0, *p.shape[2:]), fill, p.dtype)
            sy0, sy1, sx0, sx1 = max(0, y0), min(h, y1), max(0, x0), min(w, x1)
            region[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = p[sy0:sy1, sx0:sx1]
            row.append(region)
        out.append(row)
    return out


def _candidates(boxes: np.ndarray, size: tuple[int, int], area_limit: int) -> tuple[list[int], int]:
    """(the blobs to judge, largest first, at most _MAX_BLOBS looked at; how many of those were left
    alone at the frame's edge, where picture enters and leaves and the flow cannot vouch for it)."""
    import cv2

    order = np.argsort(-boxes[1:, cv2.CC_STAT_AREA])[:_MAX_BLOBS] + 1
    judged, edge = [], 0
    for i in order:
        x, yy, w, h, a = boxes[i]
        if a > area_limit or a < _MIN_AREA:
            continue
        if min(x, yy) < _BORDER or x + w > size[1] - _BORDER or yy + h > size[0] - _BORDER:
            edge += 1
            continue
        judged.append(int(i))
    return judged, edge


def _judge(
    labels: np.ndarray,
    boxes: np.ndarray,
    pictures: list[np.ndarray | Tensor],  # image, prev_w, next_w, both, explained, prev_raw, next_raw
    threshold: float,
    area_limit: int,
    offsets: tuple[int, int],
) -> tuple[np.ndarray, int]:
    """([n] bool: which candidate blobs are specks, how many were left alone). Each blob is judged on
    the patches around it alone: first the pictures within 4 px of its box (a one-frame event whose
    surroundings the neighbours explain?), then, for the blobs that pass, the unaligned neighbours
    within the search radius (a moving object?)."""
    image, prev_w, next_w, both, explained, prev_raw, next_raw = pictures
    size = tuple(image.shape[:2])
    agree = _AGREE / (_ONE_SIDED if offsets[0] * offsets[1] > 0 else 1)  # > 0: a clip's first or last frame
    r = max(32, round(_SEARCH * size[0] / 576.0))
    judged, objects = _candidates(boxes, size, area_limit)
    e = 4  # the surroundings' margin (_surroundings_unexplained)
    near = [_near_box(boxes[i], e, size) for i in judged]
    patches = _cut([image, prev_w, next_w, both, explained], near, 0.0)
    passed = []
    for i, rect, (im, pw, nw, bo, ex) in zip(judged, near, patches, strict=True):
        x, yy, w, h = (int(v) for v in boxes[i][:4])
        ly, lx = yy - rect[0], x - rect[2]
        # A one-frame event: over the blob the two neighbours agree with each other far better than
        # with the frame (where they disagree, the picture itself moves there: a car, a hand).
        sel = labels[yy : yy + h, x : x + w] == i
        apart = float(np.abs(pw - nw)[ly : ly + h, lx : lx + w][sel].mean())
        off = float(np.abs(im - bo)[ly : ly + h, lx : lx + w][sel].mean())
        # Its surroundings must be explained by the neighbours (else the picture itself changes there:
        # flames, water, a fractal zoom, detail the flow cannot follow) - then it is left alone.
        if apart > agree * off or _surroundings_unexplained(labels, i, (x, yy, w, h), ex, threshold):
            objects += 1
            continue
        passed.append((i, rect, im))
    keep = np.zeros(len(boxes), dtype=bool)
    moving = _moving(labels, boxes, passed, (image, prev_raw, next_raw), (r, threshold / 2), offsets)
    for (i, _, _), m in zip(passed, moving, strict=True):
        objects += m
        keep[i] = not m
    return keep, objects


def _moving(
    labels: np.ndarray,
    boxes: np.ndarray,
    passed: list[tuple[int, tuple[int, int, int, int], np.ndarray]],  # blob, its near box, the frame there
    pictures: tuple[
        np.ndarray | Tensor, np.ndarray | Tensor, np.ndarray | Tensor
    ],  # frame, prev_raw, next_raw
    search: tuple[int, float],  # the radius r, the match tolerance
    offsets: tuple[int, int],
) -> list[bool]:
    """Whether each blob that passed the first tests is a moving object (`_moving_object` of any of
    its templates), read from the unaligned neighbours within r of it. On a device a blob none of
    whose templates matches anywhere in the first neighbour compared (its best match, computed there,
    is clearly worse than the tolerance: most dust) is no object, and its windows are not brought over."""
    image, prev_raw, next_raw = pictures
    r, tol = search
    size = tuple(image.shape[:2])
    templates = [_templates(labels, i, _xywh(boxes[i]), size) for i, _, _ in passed]
    first = next_raw if abs(offsets[0]) > abs(offsets[1]) else prev_raw
    if is_tensor(image) and is_tensor(first) and passed:
        clear = _unmatched_on_device(image, first, templates, r, tol)
    else:
        clear = [False] * len(passed)
    todo = [k for k in range(len(passed)) if not clear[k]]
    searched = {k: _search_box(boxes[passed[k][0]], r, size) for k in todo}
    windows = dict(zip(todo, _cut([prev_raw, next_raw], [searched[k] for k in todo], -4.0), strict=True))
    out = []
    for k, (_, rect, im) in enumerate(passed):
        if clear[k]:
            out.append(False)
            continue
        area, pads = searched[k], windows[k]
        # the search windows start r px before the templates' union: a template's place there is its
        # place in the frame less the union's corner, as in the neighbour padded by r
        out.append(
            any(
                _moving_object(
                    im[ty - rect[0] : ty - rect[0] + t.shape[0], tx - rect[2] : tx - rect[2] + t.shape[1]],
                    t,
                    (pads[0], pads[1]),
                    (tx - area[2] - r, ty - area[0] - r),
                    r,
                    tol,
                    offsets,
                )
                for t, tx, ty in templates[k]
            )
        )
    return out


_CLEAR = 1e-6  # a device-computed best match must miss tol^2 by this much (float64: rounding ~1e-12)


def _masked_sqdiff(areas: list[Tensor], patches: list[Tensor], masks: list[Tensor], r: int) -> Tensor:
    """[T, 2r + 1, 2r + 1] float64 `_match_map` of each [3, th, tw] patch (zero outside its [th, tw]
    mask) at every place in its [3, th + 2r, tw + 2r] area: sum(m a^2) - 2 sum(m p a) + sum(m p^2),
    the correlations by FFT, all templates in one batch (zero-padded to the largest; the places
    read never wrap): exact to rounding, and fast where direct convolutions of large kernels are not."""
    import torch

    hh = max(a.shape[1] for a in areas)
    ww = max(a.shape[2] for a in areas)

    def padded(x: Tensor) -> Tensor:
        return torch.nn.functional.pad(x, (0, ww - x.shape[-1], 0, hh - x.shape[-2]))

    signal = torch.stack([padded(torch.cat([(a * a).sum(dim=0, keepdim=True), a])) for a in areas])
    kernel = torch.stack([padded(torch.cat([m[None], p])) for m, p in zip(masks, patches, strict=True)])
    prod = torch.fft.rfft2(signal) * torch.fft.rfft2(kernel).conj()  # [T, 4, H, W / 2 + 1]
    corr = torch.fft.irfft2(torch.stack([prod[:, 0], prod[:, 1:].sum(dim=1)], dim=1), s=(hh, ww))
    n = 2 * r + 1
    p2 = torch.stack([(p * p).sum() for p in patches])
    count = torch.stack([m.sum().clamp(min=1.0) for m in masks])
    return (corr[:, 0, :n, :n] - 2.0 * corr[:, 1, :n, :n] + p2[:, None, None]) / count[:, None, None]


def _unmatched_on_device(
    image: Tensor, raw: Tensor, templates: list[list[tuple[np.ndarray, int, int]]], r: int, tol: float
) -> list[bool]:
    """For each blob: whether none of its templates matches anywhere within r in `raw` (the best
    masked mean squared difference, as `_match_map`'s, computed on the device in float64, above
    tol^2 by more than rounding could explain). One small transfer: the best match of every template."""
    import torch

    dev = image.device
    padded = torch.nn.functional.pad(raw.permute(2, 0, 1)[None].double(), (r, r, r, r), value=-4.0)[0]
    frame = image.permute(2, 0, 1).double()
    areas, patches, masks = [], [], []
    for blob in templates:
        for t, tx, ty in blob:
            th, tw = t.shape
            m = torch.as_tensor(t, device=dev, dtype=torch.float64)
            masks.append(m)
            patches.append(frame[:, ty : ty + th, tx : tx + tw] * m)  # [3, th, tw]
            areas.append(padded[:, ty : ty + th + 2 * r, tx : tx + tw + 2 * r])
    lows = torch_ops.to_numpy(_masked_sqdiff(areas, patches, masks, r).amin(dim=(1, 2)))
    out, k = [], 0
    for blob in templates:
        out.append(bool((lows[k : k + len(blob)] > tol * tol + _CLEAR).all()))
        k += len(blob)
    return out


def _xywh(box: np.ndarray) -> tuple[int, int, int, int]:
    x, yy, w, h = (int(v) for v in box[:4])
    return x, yy, w, h


def _near_box(box: np.ndarray, e: int, size: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a blob's box grown by e px, within the frame."""
    x, yy, w, h = (int(v) for v in box[:4])
    return max(0, yy - e), min(size[0], yy + h + e), max(0, x - e), min(size[1], x + w + e)


def _search_box(box: np.ndarray, r: int, size: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the union of a blob's templates (its box grown by 2 px within the frame)
    grown by the search radius r (past the frame: read as the impossible value)."""
    y0, y1, x0, x1 = _near_box(box, 2, size)
    return y0 - r, y1 + r, x0 - r, x1 + r
