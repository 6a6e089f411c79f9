"""Pictures for the report: stored artifacts, a few decoded frames, images as embedded data URIs.

Images are embedded as JPEG (photographs: small) or PNG (heat maps and tiny crops: exact), base64
data URIs, so the HTML file is one self-contained document. Encoding is deterministic, so the same
inputs give the same report bytes.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.faces.store import crops_from_arrays
from pipeline.types import FaceCrop

log = logging.getLogger(__name__)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 from uint8, uint16 (deep sources) or float in [0, 1]."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return np.clip(np.asarray(image, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def data_uri(image: np.ndarray, fmt: str = "jpeg", quality: int = 82) -> str:
    """An RGB image as a base64 data URI (`fmt` "jpeg" or "png")."""
    import cv2

    rgb = to_uint8(image)
    if rgb.ndim == 3 and (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        bgr = np.ascontiguousarray(rgb[..., 0])  # black and white: one channel (a third of the bytes)
    else:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        mime = "image/jpeg"
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        mime = "image/png"
    else:
        raise ValueError(f"data_uri: unknown format {fmt!r}")
    if not ok:
        raise ValueError(f"data_uri: cannot encode a {image.shape} image as {fmt}")
    return f"data:{mime};base64,{base64.b64encode(buf.tobytes()).decode('ascii')}"


def fit(image: np.ndarray, height: int, *, sharp: bool = False) -> np.ndarray:
    """`image` resized to `height` px tall (aspect kept); `sharp` enlarges with visible pixels."""
    import cv2

    h, w = image.shape[:2]
    width = max(1, round(w * height / max(h, 1)))
    if (h, w) == (height, width):
        return image
    interp = cv2.INTER_AREA if height < h else cv2.INTER_CUBIC
    if sharp and height > h:
        interp = cv2.INTER_NEAREST  # small footage crops: show their real pixels
    return np.asarray(cv2.resize(image, (width, height), interpolation=interp))


# A perceptual ramp (dark blue -> magenta -> orange -> pale yellow), like matplotlib's "inferno".
_RAMP = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39],
     [252, 255, 164]],
    np.float64,
)  # fmt: skip


def heat_map(values: np.ndarray, vmax: float) -> np.ndarray:
    """[H, W] non-negative values -> [H, W, 3] uint8 colours, 0 dark, `vmax` and above bright."""
    t = np.clip(np.asarray(values, np.float64) / max(vmax, 1e-12), 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.floor(t).astype(int).clip(0, len(_RAMP) - 2)
    frac = (t - lo)[..., None]
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    return np.asarray(np.round(rgb), np.uint8)


def ramp_legend(width: int = 160, height: int = 10) -> np.ndarray:
    """The heat map's colour ramp as a [height, width, 3] strip (left 0, right vmax)."""
    return np.repeat(heat_map(np.linspace(0.0, 1.0, width)[None, :], 1.0), height, axis=0)


def load_crops(paths: Iterable[Path]) -> dict[tuple[int, int], FaceCrop]:
    """Every stored crop of these npz artifacts, by (track id, frame index); missing files skipped."""

    out: dict[tuple[int, int], FaceCrop] = {}
    for path in paths:
        arrays = _load(path)
        if arrays is not None:
            out.update({(c.track_id, c.frame_index): c for c in crops_from_arrays(arrays)})
    return out


def _load(path: Path) -> Mapping[str, np.ndarray] | None:
    if not path.is_file():
        log.warning(
            "report: artifact %s is missing (work directory cleaned?): its pictures are left out", path
        )
        return None
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def face_region(
    frame: np.ndarray, box: Sequence[float], scale: float, margin: float = 0.35
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A square region around a face `box` (x0, y0, x1, y1 in source px) of a frame `scale` x the
    source's size; returns the region and its (x0, y0, x1, y1) in `frame`'s pixels."""
    x0, y0, x1, y1 = (float(v) * scale for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = frame.shape[:2]
    a = int(np.clip(round(cx - side / 2), 0, w - 1))
    b = int(np.clip(round(cy - side / 2), 0, h - 1))
    c = int(np.clip(round(cx + side / 2), a + 1, w))
    d = int(np.clip(round(cy + side / 2), b + 1, h))
    return frame[b:d, a:c], (a, b, c, d)
