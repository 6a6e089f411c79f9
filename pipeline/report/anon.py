"""The report page of `reel anonymize`, drawn from its audit (`OUTPUT.anon.json`) and the output.

Unlike a restore's page it never shows the footage's faces (the originals are what anonymising
removes; their crops are deleted when the job ends): only the output, the per-track figures (how
each face was hidden, how far its identity is from the original's) and the time per stage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import ReportConfig
from pipeline.errors import PipelineError
from pipeline.files import atomic_path, load_json
from pipeline.io.decode import open_video
from pipeline.report.model import html_path, thumb_frames
from pipeline.report.parts import CSS, card, fmt_num, shots_section, thumb, times_section
from pipeline.report.people import people_frames, people_sheet

log = logging.getLogger(__name__)


def anon_page(
    audit: Mapping[str, Any],
    out_frames: Mapping[int, np.ndarray],
    thumbs: Mapping[int, Sequence[int]],
    cfg: ReportConfig,
) -> str:
    """The page: notice, figures, time per stage, per-track table, output thumbnails per shot."""

    ident = audit.get("identity", {})
    name = Path(str(audit.get("output", "output"))).name
    cards = [
        card(str(audit.get("frames", "—")), "frames"),
        card(str(len(audit.get("tracks", []))), "face tracks"),
        card(str(audit.get("face_frames", "—")), "face-frames hidden"),
        card(str(audit.get("synthetic", "—")), "replaced by synthetic faces"),
        card(str(audit.get("masked", "—")), "masked"),
        card(
            fmt_num(ident.get("max"), "{:.3f}"),
            f"max identity cosine (same person ≥ {ident.get('same_person_threshold')})",
        ),
        card(str(ident.get("leaked_face_frames", "—")), "face-frames above the threshold"),
    ]
    attack = audit.get("attack") or {}
    if attack.get("max_cosine") is not None:
        cards.append(
            card(
                fmt_num(attack.get("max_cosine"), "{:.3f}"),
                f"max cosine after restoring the output (bound < {attack.get('threshold')})",
            )
        )
    table = _track_table(audit.get("tracks", []))
    review = _review(ident.get("above_threshold") or [], out_frames, cfg)
    warn = ""
    if audit.get("random_test_generator"):
        warn = '<div class="warn">The face prior was a seeded RANDOM TEST GENERATOR (not a face model).</div>'
    body = {"shots": audit.get("shots", []), "seconds": audit.get("seconds", {})}
    sections = [
        f"<h1>reel anonymize report: {escape(name)}</h1>",
        f'<p class="sub">{escape(str(audit.get("output", "")))}</p>',
        f'<div class="notice"><b>Anonymised.</b> {escape(str(audit.get("notice", "")))}</div>',
        warn,
        f'<div class="cards">{"".join(cards)}</div>',
        "<h2>Time</h2>",
        times_section(body),
        '<h2 id="tracks">Face tracks</h2>',
        table,
        review,
        _attack(attack, bool(audit.get("random_test_generator"))),
        '<h2 id="people">People (the output)</h2>',
        people_sheet(
            audit.get("people"),
            out_frames,
            float(audit.get("scale") or 1.0),
            {int(t["track_id"]) for t in audit.get("tracks", [])},
        ),
        '<h2 id="shots">Shots (the output)</h2>',
        shots_section(body, thumbs, out_frames, cfg),
        f'<p class="small">audit format version {escape(str(audit.get("version", "")))}</p>',
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>reel anonymize report: {escape(name)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(sections)}</main></body></html>\n"
    )


def _track_table(tracks: Sequence[Mapping[str, Any]]) -> str:
    """One row per track: its shot, frames, synthetic and masked counts, why masked, identity."""
    head = (
        "<tr><th>track</th><th>shot</th><th>frames</th><th>synthetic</th><th>masked</th><th>why masked</th>"
        "<th>identity cosine (max / mean)</th><th>above threshold</th></tr>"
    )
    rows = []
    for t in tracks:
        cos = t.get("identity_cosine") or {}
        why = ", ".join(f"{k}: {v}" for k, v in (t.get("masked_because") or {}).items()) or "—"
        leaked = int(t.get("leaked_frames") or 0)
        frames = t.get("frames") or [0, 0]
        rows.append(
            f'<tr id="track-{t.get("track_id")}"><td>{t.get("track_id")}</td>'
            f'<td><a href="#shot-{t.get("shot")}">{t.get("shot")}</a></td>'
            f"<td>{frames[0]}–{int(frames[1]) - 1}</td><td>{t.get('synthetic')}</td>"
            f"<td>{t.get('masked')}</td><td>{escape(why)}</td>"
            f"<td>{fmt_num(cos.get('max'), '{:.3f}')} / {fmt_num(cos.get('mean'), '{:.3f}')}</td>"
            f'<td class="{"bad" if leaked else "ok"}">{leaked}</td></tr>'
        )
    return f"<table>{head}{''.join(rows)}</table>" if rows else '<p class="small">no faces found</p>'


def _attack(attack: Mapping[str, Any], random: bool) -> str:
    """The attack check: restore's own search on the output's faces, and whether the person is back."""
    head = '<h2 id="attack">Attack check</h2>'
    if not attack:
        return head + '<p class="small">not run (an audit from before the attack check)</p>'
    if attack.get("not_run"):
        return head + f'<p class="small">not run: {escape(str(attack["not_run"]))}</p>'
    passed = bool(attack.get("passed"))
    verdict = (
        '<span class="ok">still not recognised</span>'
        if passed
        else '<span class="bad">RECOGNISED again: do not release</span>'
    )
    note = " The prior was a random test generator: the figure only checks the machinery." if random else ""
    return head + (
        f"<p>{escape(str(attack.get('method', '')))}: {attack.get('face_frames')} face-frames, "
        f"max SFace cosine {fmt_num(attack.get('max_cosine'), '{:.3f}')} "
        f"(bound &lt; {attack.get('threshold')}): {verdict}.{escape(note)}</p>"
    )


REVIEW_THUMBS = 24  # output thumbnails of the worst face-frames above the threshold


def _review(
    above: Sequence[Mapping[str, Any]], out_frames: Mapping[int, np.ndarray], cfg: ReportConfig
) -> str:
    """Every face-frame above the same-person threshold (frame, track, cosine), the worst with the
    output frame beside it: what a reviewer must look at before release."""

    if not above:
        return '<h2 id="review">To review</h2><p class="small ok">no face-frame above the threshold</p>'
    rows = "".join(
        f"<tr><td>{int(r['frame'])}</td>"
        f'<td><a href="#track-{int(r["track_id"])}">{int(r["track_id"])}</a></td>'
        f'<td class="bad">{float(r["cosine"]):.3f}</td></tr>'
        for r in above
    )
    shown = [int(r["frame"]) for r in above[:REVIEW_THUMBS] if int(r["frame"]) in out_frames]
    pictures = "".join(thumb(out_frames[f], f, cfg) for f in dict.fromkeys(shown))
    return (
        f'<h2 id="review">To review: {len(above)} face-frame(s) above the threshold</h2>'
        '<p class="small">The output at these frames still passes SFace\'s same-person threshold '
        "against the original face: look at each before release (worst first).</p>"
        f"<table><tr><th>frame</th><th>track</th><th>identity cosine</th></tr>{rows}</table>"
        f'<div class="strip review">{pictures}</div>'
    )


def write_anon_report(audit_path: Path, cfg: ReportConfig | None = None) -> Path:
    """`OUTPUT.report.html` of an anonymised output, from its audit JSON; returns its path."""

    cfg = cfg or ReportConfig()
    audit = load_json(audit_path)
    output = Path(str(audit["output"]))
    thumbs = thumb_frames(audit.get("shots", []), cfg.thumbs_per_shot)
    wanted = {f for frames in thumbs.values() for f in frames}
    above = audit.get("identity", {}).get("above_threshold") or []
    wanted |= {int(r["frame"]) for r in above[:REVIEW_THUMBS]} | people_frames(audit.get("people"))
    out_frames: dict[int, np.ndarray] = {}
    try:  # the output's pictures as decoded: a file that cannot be opened is not pictured
        out_frames = open_video(output, deinterlace="off").pictures(wanted) if output.is_file() else {}
    except PipelineError as exc:
        log.warning("report: %s not decoded (%s)", output, exc)
    path = html_path(output)
    with atomic_path(path) as tmp:
        tmp.write_text(anon_page(audit, out_frames, thumbs, cfg), encoding="utf-8")
    return path
