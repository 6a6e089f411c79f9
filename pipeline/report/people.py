"""The people sheet of a report page: one row per person (pipeline.faces.people), with a picture of
each of their tracks cut from the OUTPUT (never the footage, so an anonymised page shows only what
was released).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.report.parts import image_uri, img_tag

PEOPLE_PX = 72  # height of each track's picture on the people sheet
MAX_PEOPLE_THUMBS = 240  # pictures decoded for the sheet at most (long videos: the first ones)


def people_frames(people: Sequence[Mapping[str, Any]] | None) -> set[int]:
    """The output frames the people sheet pictures."""
    frames = [int(t["frame"]) for p in people or () for t in p.get("thumbs", ())]
    return set(frames[:MAX_PEOPLE_THUMBS])


def _picture(thumb: Mapping[str, Any], frames: Mapping[int, np.ndarray], scale: float) -> str:
    from pipeline.report.assets import face_region

    tid, f = int(thumb["track_id"]), int(thumb["frame"])
    link = f'<a href="#track-{tid}">track {tid}</a>'
    if f not in frames:
        return f'<figure><div class="nopic">not decoded</div>{link}</figure>'
    region, _ = face_region(frames[f], thumb["box"], scale, margin=0.25)
    picture = img_tag(image_uri(region, height=PEOPLE_PX), f"track {tid}, frame {f} (output)")
    return f"<figure>{picture}{link} · {f}</figure>"


def people_sheet(
    people: Sequence[Mapping[str, Any]] | None, frames: Mapping[int, np.ndarray], scale: float
) -> str:
    """The sheet: id, tracks, face-frames, decided or not, and the output at each track's widest face."""
    if people is None:
        return '<p class="small">faces were not looked for</p>'
    if not people:
        return '<p class="small">no people found</p>'
    rows = []
    for p in people:
        pid = int(p["id"])
        decided = (
            '<span class="ok">decided</span>'
            if p.get("decided")
            else '<span class="bad">undecided</span> (too small or turned to tell)'
        )
        pictures = "".join(_picture(t, frames, scale) for t in p.get("thumbs", ()))
        rows.append(
            f'<tr id="person-{pid}"><td>{pid}</td><td>{", ".join(str(t) for t in p.get("tracks", []))}</td>'
            f"<td>{int(p.get('frames', 0))}</td><td>{decided}</td>"
            f'<td><div class="strip people">{pictures}</div></td></tr>'
        )
    undecided = sum(not p.get("decided") for p in people)
    return (
        f'<p class="small">{len(people)} people ({undecided} undecided): the tracks of one person '
        "across cuts, linked by SFace identity; pictures are cut from the output.</p>"
        "<table><tr><th>person</th><th>tracks</th><th>face-frames</th><th>identity</th>"
        f"<th>the output at each track</th></tr>{''.join(rows)}</table>"
    )
