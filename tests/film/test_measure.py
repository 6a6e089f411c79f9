"""The breakdown of what is left of added specks (scripts/evaluate_film.py): each speck is counted
once in each block of groups, and what is left is put where it is."""

from __future__ import annotations

import numpy as np
import skimage.data

from pipeline.film import measure as M
from pipeline.film import synthetic as S


def test_the_speck_breakdown_puts_what_is_left_where_it_is() -> None:
    clean = S.pan_zoom(skimage.data.coffee(), (96, 64), 4)
    bad, specks = S.add_specks(clean, 3, seed=2, radius=(2.0, 4.0))
    # "cleaned": every speck filled back with the truth except the first one in frame 2
    missed = next(s for s in specks if s.frame == 2)
    masks = M.speck_masks(specks, clean[0].shape[:2], len(clean))
    keep = M.speck_masks([missed], clean[0].shape[:2], len(clean))
    out = [np.where(k[..., None], b, c) for b, c, k in zip(bad, clean, keep, strict=True)]
    filled = [m & ~k for m, k in zip(masks, keep, strict=True)]
    rows = M.speck_rows(out, bad, clean, specks, filled)
    groups = M.speck_breakdown(rows)
    assert groups["missed (< 10 % of it filled)"] == {"n": 1.0, "left": 1.0, "share": 1.0}
    assert groups["filled"]["n"] == len(specks) - 1 and groups["filled"]["left"] == 0.0
    for block in (
        ["missed (< 10 % of it filled)", "partly filled", "filled"],
        ["elsewhere", "clip's first/last frame"],
    ):
        assert sum(groups[k]["n"] for k in block) == len(specks)
        assert abs(sum(groups[k]["share"] for k in block) - 1.0) < 1e-9
    assert groups["clip's first/last frame"]["share"] == 0.0  # the one left is in frame 2 of 4
    size = (
        "radius 1.5-2.5 px"
        if missed.radius < 2.5
        else "radius 2.5-3.25 px"
        if missed.radius < 3.25
        else "radius 3.25-4 px"
    )
    assert groups[size]["share"] == 1.0
