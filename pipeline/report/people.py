"""The people sheet of a report page: one row per person (pipeline.faces.people), with a picture of
each of their tracks cut from the OUTPUT (never the footage, so an anonymised page shows only what
was released).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from html import escape
from typing import Any

import numpy as np

from pipeline.report.assets import face_region
from pipeline.report.parts import image_uri, img_tag

PEOPLE_PX = 72  # height of each track's picture on the people sheet
MAX_PEOPLE_THUMBS = 240  # pictures decoded for the sheet at most (long videos: the first ones)


def people_frames(people: Sequence[Mapping[str, Any]] | None) -> set[int]:
    """The output frames the people sheet pictures."""
    frames = [int(t["frame"]) for p in people or () for t in p.get("thumbs", ())]
    return set(frames[:MAX_PEOPLE_THUMBS])


def _picture(
    thumb: Mapping[str, Any], frames: Mapping[int, np.ndarray], scale: float, listed: Collection[int]
) -> str:

    tid, f = int(thumb["track_id"]), int(thumb["frame"])
    link = f'<a href="#track-{tid}">track {tid}</a>' if tid in listed else f"track {tid} (not processed)"
    if f not in frames:
        return f'<figure><div class="nopic">not decoded</div>{link}</figure>'
    region, _ = face_region(frames[f], thumb["box"], scale, margin=0.25)
    picture = img_tag(image_uri(region, height=PEOPLE_PX), f"track {tid}, frame {f} (output)")
    return f"<figure>{picture}{link} · {f}</figure>"


def people_sheet(
    people: Sequence[Mapping[str, Any]] | None,
    frames: Mapping[int, np.ndarray],
    scale: float,
    listed: Collection[int] = (),
) -> str:
    """The sheet: id, tracks, face-frames, decided or not, chosen or not (under a choice of people),
    whose photos guided their restoration (under --reference-photos) and the output at each track's
    widest face; `listed`: the tracks the page has a section for."""
    if people is None:
        return '<p class="small">faces were not looked for</p>'
    if not people:
        return '<p class="small">no people found</p>'
    chose = any("chosen" in p for p in people)
    guided = any("guided_by" in p for p in people)  # --reference-photos guided someone
    rows = []
    for p in people:
        pid = int(p["id"])
        decided = (
            '<span class="ok">decided</span>'
            if p.get("decided")
            else '<span class="bad">undecided</span> (too small or turned to tell)'
        )
        pictures = "".join(_picture(t, frames, scale, listed) for t in p.get("thumbs", ()))
        rows.append(
            f'<tr id="person-{pid}"><td>{pid}</td><td>{", ".join(str(t) for t in p.get("tracks", []))}</td>'
            f"<td>{int(p.get('frames', 0))}</td><td>{decided}</td>{_chosen(p, chose)}"
            + (f"<td>{escape(str(p.get('guided_by') or '—'))}</td>" if guided else "")
            + f'<td><div class="strip people">{pictures}</div></td></tr>'
        )
    undecided = sum(not p.get("decided") for p in people)
    return (
        f'<p class="small">{len(people)} people ({undecided} undecided): the tracks of one person '
        "across cuts, linked by SFace identity; pictures are cut from the output.</p>"
        "<table><tr><th>person</th><th>tracks</th><th>face-frames</th><th>identity</th>"
        + ("<th>chosen (reference photos)</th>" if chose else "")
        + ("<th>guided by (reference photos)</th>" if guided else "")
        + f"<th>the output at each track</th></tr>{''.join(rows)}</table>"
    )


def _chosen(person: Mapping[str, Any], chose: bool) -> str:
    """The choice cell: processed or left as without a face model, and whom the photos recognised."""
    if not chose:
        return ""
    match = f" (recognised: {escape(str(person['match']))})" if person.get("match") else ""
    if not person.get("decided"):
        word = "processed (undecided)" if person.get("chosen") else "left untouched (undecided)"
    else:
        word = "processed" if person.get("chosen") else "left untouched"
    return f"<td>{word}{match}</td>"
