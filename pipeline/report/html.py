"""The report page: one self-contained HTML document (inline CSS and SVG, images as data URIs).

Laid out for a laptop screen: the notice and the summary first, then time per stage, shots as
thumbnail strips, one section per track (figures, plots over time, a contact sheet worst first),
the flagged face-frames with links to their pictures, "where is this invented?", and the settings.
No scripts, no external resources, no timestamps: the same inputs give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import INVENTED_DETAIL_NOTICE
from pipeline.config import ReportConfig
from pipeline.metrics.identity import SAME_PERSON_COSINE
from pipeline.report.assets import face_region, heat_map, ramp_legend
from pipeline.report.measure import TrackMotion, frame_consistency
from pipeline.report.model import Collected, SheetFace, crop_box, flagged
from pipeline.report.parts import (
    CSS,
    card,
    film_shots_section,
    fmt_num,
    image_uri,
    img_tag,
    matte_section,
    shots_section,
    times_section,
)
from pipeline.report.people import people_sheet
from pipeline.report.plots import PALETTE, Series, line_plot, value_range

SHEET_PX = 112  # height of each contact-sheet picture
SPREAD_VMAX = 0.15  # heat map: this per-pixel standard deviation (of values in 0..1) and above is brightest
INVENTED_LEVEL = 0.05  # the spread above which a pixel counts as "invented" in the figures


def _bound_db(body: Mapping[str, Any]) -> float | None:
    eps = body.get("config", {}).get("search", {}).get("eps")
    return -10.0 * math.log10(float(eps)) if eps else None


def _summary(body: Mapping[str, Any], collected: Collected) -> str:
    """The cards: what the output promises leads (restored faces that meet the bound in the output
    frame); fallbacks are counted apart; the search's own figure is a detail. A run that did not
    look for faces says so instead of counting zeros."""
    totals = body.get("totals", {})
    faces = body.get("faces", [])
    cards = [card(str(body.get("frames", "—")), "frames")]
    if not body.get("scanned", True):
        cards.append(card("none", "faces not looked for (no face model)"))
        return f'<div class="cards">{"".join(cards)}</div>'
    restored = int(totals.get("restored", body.get("restored", len(faces))))
    fell = int(totals.get("fell_back", 0))
    in_frame = int(totals.get("met_bound_in_frame", 0))
    searched = int(totals.get("searched", len(faces)))
    steady = [m.steadiness for m in collected.motion.values() if m.steadiness is not None]
    cards += [
        card(str(len(body.get("shots", []))), "shots"),
        card(str(len(body.get("tracks", []))), "face tracks"),
        card(f"{restored}/{body.get('face_frames', restored)}", "face-frames restored"),
    ]
    if fell:
        cards.append(card(f'<a href="#flagged">{fell}</a>', "fell back to the plain upscale (not restored)"))
    if restored:
        cards.append(
            card(
                f"{in_frame} ({100 * in_frame / restored:.0f}%)",
                "of the restored meet the bound in the output",
            )
        )
    cards.append(card(f'<a href="#flagged">{sum(flagged(r) for r in faces)}</a>', "flagged"))
    if searched:
        cards += [
            card(fmt_num(totals.get("mean_psnr_db")), "mean search consistency, dB (higher is closer)"),
            card(
                fmt_num(float(np.median(steady)) if steady else None, "{:.2f}"),
                "median steadiness (1 = moves as the footage; above 1 flickers)",
            ),
        ]
    detail = ""
    if searched:
        detail = (
            f'<p class="small">The search met the bound in its aligned crop for {totals.get("met_bound", 0)} '
            f"of the {searched} face-frames it ran on; the projection into the output frame is what the "
            "promise is about (the figure above).</p>"
        )
    return f'<div class="cards">{"".join(cards)}</div>{detail}'


def _what_ran(body: Mapping[str, Any]) -> str:
    prov = body.get("provenance", {})
    cfg = body.get("config", {})
    up = cfg.get("upscale", {})
    rows = [
        ("input", body.get("input")),
        ("output", body.get("output")),
        ("mode", body.get("mode", "restore")),
        ("executor", body.get("executor", "local")),
        ("reel", prov.get("reel_version")),
        ("face model", body.get("model") or "none (faces upscaled, not restored)"),
        ("model hash", prov.get("model_key")),
        ("settings hash", prov.get("settings_key")),
        ("search seed", cfg.get("search", {}).get("seed")),
        ("upscale", f"×{up.get('scale')} {up.get('model') or up.get('method')}"),
        ("film cleaning", _film(body.get("film"))),
        ("encoder", cfg.get("io", {}).get("preset")),
        ("footage", "black and white" if body.get("black_and_white") else "colour"),
        ("consistency bound", fmt_num(_bound_db(body), "{:.1f} dB (downscaled PSNR)")),
    ]
    cells = "".join(
        f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in rows if v is not None
    )
    return f'<table class="kv">{cells}</table>'


def _film(film: Mapping[str, Any] | None) -> str | None:
    """film: one line of what whole-frame cleaning changed (None: cleaning was off)."""
    if not film:
        return None
    return (
        f"{film['deflickered']} frames deflickered, {film['specks_filled']} specks filled, "
        f"{film['scratches_found']} scratches in {film['scratch_frames']} frames, weave "
        f"{film['weave_px_mean']:.2f} px mean ({film['weave_px_max']:.1f} max), grain "
        f"{film['grain_sigma_mean']:.1f} levels reduced in {film['grain_frames']} frames, "
        f"{film['regrained']} regrained, of {film['frames']} frames"
    )


@dataclass(frozen=True)
class _Axes:
    """One y range per quantity for every track's plots, so the same quantity reads alike."""

    db: tuple[float, float] | None
    steps: tuple[float, float] | None
    change: tuple[float, float] | None


def _consistency(rows: Sequence[Mapping[str, Any]]) -> list[Series]:
    rows = sorted(rows, key=lambda r: r["frame"])
    out = []
    in_frame = [(r["frame"], float(v)) for r in rows if (v := r.get("psnr_in_frame_db")) is not None]
    if in_frame:
        out.append(Series("in the output", [a for a, _ in in_frame], [b for _, b in in_frame], PALETTE[2]))
    out.append(
        Series("search (crop)", [r["frame"] for r in rows], [float(r["psnr_db"]) for r in rows], PALETTE[0])
    )
    return out


def _motion(motion: TrackMotion | None) -> list[Series]:
    if motion is None or not motion.frames:
        return []
    # stored as a share of full scale; shown in 8-bit levels, the unit people read pixels in
    return [
        Series("footage", motion.frames, [255 * v for v in motion.source_change], PALETTE[7]),
        Series("restored", motion.frames, [255 * v for v in motion.output_change], PALETTE[1]),
    ]


def _axes(
    by_track: Mapping[int, Sequence[Mapping[str, Any]]], collected: Collected, bound: float | None
) -> _Axes:
    h = [(bound, "")] if bound is not None else []
    cons = [s for rows in by_track.values() for s in _consistency(rows)]
    steps = [Series("", [0], [float(r["steps"])]) for rows in by_track.values() for r in rows]
    change = [s for m in collected.motion.values() for s in _motion(m)]
    return _Axes(
        value_range(cons, h) if cons else None,
        (0.0, max(max(s.y) for s in steps)) if steps else None,
        (0.0, value_range(change)[1]) if change else None,
    )


def _track_plots(
    tid: int, rows: Sequence[Mapping[str, Any]], collected: Collected, bound: float | None, axes: _Axes
) -> str:
    rows = sorted(rows, key=lambda r: r["frame"])
    h = [(bound, "bound")] if bound is not None else []
    plots = [
        line_plot(
            _consistency(rows),
            title="consistency (higher is closer)",
            y_label="dB",
            h_lines=h,
            y_range=axes.db,
        ),
        line_plot(
            [Series("steps", [r["frame"] for r in rows], [float(r["steps"]) for r in rows], PALETTE[3])],
            title="search steps",
            y_label="steps",
            y_range=axes.steps,
        ),
    ]
    motion = collected.motion.get(tid)
    if motion is not None and motion.frames:
        plots.append(
            line_plot(
                _motion(motion),
                title=f"change per frame (steadiness {fmt_num(motion.steadiness, '{:.2f}')})",
                y_label="RMS change, levels of 255",
                y_range=axes.change,
            )
        )
    return f'<div class="row">{"".join(plots)}</div>'


def _sheet(
    faces: Sequence[SheetFace],
    rows: Mapping[int, Mapping[str, Any]],
    out_frames: Mapping[int, np.ndarray],
    src_frames: Mapping[int, np.ndarray],
    scale: float,
) -> str:

    cards = []
    for face in faces:
        row = rows.get(face.frame, {})
        box = crop_box(face.crop_to_frame, face.crop.shape[0])
        pasted = '<div class="nopic">not decoded</div>'
        measured = row.get("psnr_in_frame_db")
        if face.frame in out_frames:
            region, _ = face_region(out_frames[face.frame], box, scale, margin=0.05)
            pasted = img_tag(image_uri(region, height=SHEET_PX), "pasted result", "out")
            if measured is None and face.frame in src_frames:
                measured = frame_consistency(src_frames[face.frame], out_frames[face.frame], box)
        figures = [
            f"{_in_frame_status(row, measured)} · search {fmt_num(row.get('psnr_db'))} dB "
            f"({'met' if row.get('met_bound') else 'missed'} in its crop)",
            f"{row.get('steps', '—')} steps · crop {face.crop.shape[0]} px",
        ]
        trio = (
            img_tag(image_uri(face.crop, "png"), "footage crop", "px")
            + img_tag(image_uri(face.restoration, height=SHEET_PX), "restored face")
            + pasted
        )
        cards.append(
            f'<div class="face" id="f-{face.track_id}-{face.frame}"><b>frame {face.frame}</b>'
            f'<div class="trio">{trio}</div>'
            f'<div class="small">{"<br>".join(figures)}</div></div>'
        )
    if not cards:
        return '<p class="small">no pictures stored</p>'
    return (
        '<p class="small">each: footage crop (the search target, its own pixels) · restoration · '
        "pasted into the output</p>"
        f'<div class="sheet">{"".join(cards)}</div>'
    )


def _in_frame_status(row: Mapping[str, Any], measured: float | None) -> str:
    """What the output promises for one face-frame, as the card's lead."""
    if row.get("fallback"):
        return f'<span class="bad">fell back: {escape(str(row["fallback"]))}</span>'
    met = row.get("met_bound_in_frame")
    if met is True:
        word = '<span class="ok">meets the bound</span>'
    elif met is False:
        word = '<span class="bad">misses the bound</span>'
    else:
        word = "not measured against the bound"
    return f"in the output {fmt_num(measured)} dB, {word}"


def _tracks(
    body: Mapping[str, Any],
    collected: Collected,
    out_frames: Mapping[int, np.ndarray],
    src_frames: Mapping[int, np.ndarray],
    scale: float,
) -> str:
    by_track: dict[int, list[Mapping[str, Any]]] = {}
    for r in body.get("faces", []):
        by_track.setdefault(int(r["track_id"]), []).append(r)
    bound = _bound_db(body)
    axes = _axes(by_track, collected, bound)
    parts = []
    for t in body.get("tracks", []):
        tid = int(t["track_id"])
        rows = by_track.get(tid, [])
        ident = t.get("identity") or {}
        fell = sum(bool(r.get("fallback")) for r in rows)
        figures = [
            f"{len(rows) - fell} face-frames restored",
            *([f"{fell} fell back to the plain upscale"] if fell else []),
            f"{sum(r.get('met_bound_in_frame') is True and not r.get('fallback') for r in rows)} meet the "
            "bound in the output",
            f"{sum(bool(r['met_bound']) for r in rows)} met it in the search's crop",
            f"mean consistency {fmt_num(t.get('mean_psnr_db'))} dB",
            f"steadiness {fmt_num(t.get('steadiness'), '{:.2f}')} (1 = changes as the footage does)",
        ]
        if ident:
            figures.append(
                f"identity: to footage {fmt_num(ident.get('to_source'), '{:.2f}')}, along track "
                f"{fmt_num(ident.get('stability'), '{:.2f}')}, same person in "
                f"{fmt_num(ident.get('kept'), '{:.0%}')} of frames"
            )
        parts.append(
            f'<h3 id="track-{tid}">track {tid} · <a href="#shot-{t.get("shot")}">shot {t.get("shot")}</a> · '
            f"frames {t.get('start')}–{int(t.get('end', 0)) - 1}</h3>"
            f'<p class="small">{" · ".join(figures)}</p>'
        )
        if rows:
            parts.append(_track_plots(tid, rows, collected, bound, axes))
        parts.append(
            _sheet(
                collected.sheet.get(tid, []),
                {int(r["frame"]): r for r in rows},
                out_frames,
                src_frames,
                scale,
            )
        )
    if parts:
        return "".join(parts)
    if not body.get("scanned", True):
        return '<p class="small">faces were not looked for: no face model (see "What ran")</p>'
    return '<p class="small">no faces found</p>'


def _flagged(body: Mapping[str, Any], collected: Collected, limit: int = 500) -> str:
    pictured = {(f.track_id, f.frame) for faces in collected.sheet.values() for f in faces}
    rows = [r for r in body.get("faces", []) if flagged(r)]
    if not rows:
        if not body.get("faces"):
            return '<p class="small">no face-frames</p>'
        return '<p class="ok">every restored face-frame meets the bound in the output; none fell back</p>'
    head = (
        "<tr><th>track</th><th>frame</th><th>search dB</th><th>in frame dB</th><th>why</th>"
        "<th>picture</th></tr>"
    )
    cells = []
    for r in rows[:limit]:
        tid, f = int(r["track_id"]), int(r["frame"])
        why = r.get("fallback") or (
            "missed in frame" if r.get("met_bound_in_frame") is False else "missed bound"
        )
        link = (
            f'<a href="#f-{tid}-{f}">picture</a>'
            if (tid, f) in pictured
            else f'<a href="#track-{tid}">track</a>'
        )
        cells.append(
            f"<tr><td>{tid}</td><td>{f}</td><td>{fmt_num(r.get('psnr_db'))}</td>"
            f"<td>{fmt_num(r.get('psnr_in_frame_db'))}</td><td>{escape(str(why))}</td><td>{link}</td></tr>"
        )
    more = (
        f'<p class="small">and {len(rows) - limit} more (see the JSON report)</p>'
        if len(rows) > limit
        else ""
    )
    return f"<p>{len(rows)} face-frames</p><table>{head}{''.join(cells)}</table>{more}"


def _spread(collected: Collected) -> str:

    if not collected.spread:
        return '<p class="small">not computed for this run (report.spread_k = 0, or no faces)</p>'
    crops: dict[tuple[int, int], np.ndarray] = {}
    for faces in collected.sheet.values():
        for f in faces:
            crops[(f.track_id, f.frame)] = f.crop
    head = "<tr><th>face</th><th>mean of K results</th><th>spread</th><th>figures</th></tr>"
    rows = []
    for s in collected.spread:
        invented = float((s.spread > INVENTED_LEVEL).mean())
        k = len(s.psnr)
        rows.append(
            f"<tr><td>track {s.track_id}<br>frame {s.frame_index}</td>"
            f"<td>{img_tag(image_uri(s.mean), 'mean restoration')}</td>"
            f"<td>{img_tag(image_uri(heat_map(s.spread, SPREAD_VMAX), 'png'), 'spread heat map', 'px')}</td>"
            f"<td>K = {k} starts<br>mean spread {float(s.spread.mean()):.3f}<br>"
            f"{invented:.0%} of pixels above {INVENTED_LEVEL}<br>"
            f"consistency {', '.join(f'{p:.1f}' for p in s.psnr)} dB<br>"
            f"{sum(s.met_bound)}/{k} met the bound</td></tr>"
        )
    legend = img_tag(image_uri(ramp_legend(), "png"), "colour ramp")
    return (
        "<p>The same footage crop searched from K different random starts. Every result matches the "
        "footage when downscaled; where they still disagree, the footage does not decide the face and "
        "the prior invents it. Dark: pinned by the footage. Bright: invented.</p>"
        f'<p class="small">0 {legend} ≥ {SPREAD_VMAX} (per-pixel standard deviation, 0..1 scale)</p>'
        f'<table class="spread">{head}{"".join(rows)}</table>'
    )


def _settings(body: Mapping[str, Any]) -> str:
    import yaml

    text = yaml.safe_dump(body.get("config", {}), sort_keys=True)  # as the JSON stores it
    return f"<details><summary>resolved settings</summary><pre>{escape(text)}</pre></details>"


def _glossary(body: Mapping[str, Any]) -> str:
    """What each figure on a track means, which way is good, and what it is compared with."""
    bound = _bound_db(body)
    items = [
        (
            "consistency, dB",
            "PSNR of the face, downscaled, against the footage's own pixels; higher is closer. "
            + (
                f"The promise: at least {bound:.1f} dB in the output frame (the dashed bound)."
                if bound is not None
                else "No bound was set."
            )
            + " The search's figure, in its aligned crop, is a detail.",
        ),
        (
            "steadiness",
            "how much the restored face changes from frame to frame, divided by how much the footage's "
            "face does (RMS at 32×32 px). 1 = it moves as the footage does; below 1 = steadier than the "
            "footage; well above 1 (say 1.5) = flicker the footage does not have.",
        ),
        (
            "identity",
            "SFace cosine similarity: to footage = restored face vs the footage crop; along track = vs the "
            "track's first restored face; same person in = share of frames at or above SFace's "
            f"same-person threshold {SAME_PERSON_COSINE} (for a restoration, higher is better; "
            "the goal is 100%).",
        ),
        (
            "contact sheet",
            "per track, the worst face-frames first: fallbacks, then frames that miss the bound in the "
            "output, then the lowest consistency.",
        ),
    ]
    rows = "".join(f"<dt>{escape(a)}</dt><dd>{escape(b)}</dd>" for a, b in items)
    return (
        f'<details class="small" open><summary>How to read these figures</summary><dl>{rows}</dl></details>'
    )


def _notice(body: Mapping[str, Any]) -> str:
    """The invented-detail notice where something was invented; a plain line where nothing was."""
    notice = str(body.get("notice", INVENTED_DETAIL_NOTICE))
    if notice != INVENTED_DETAIL_NOTICE:
        return f'<p class="small">{escape(notice)}</p>'
    return f'<div class="notice"><b>Invented detail.</b> {escape(notice)}</div>'


def page(
    body: Mapping[str, Any],
    collected: Collected,
    out_frames: Mapping[int, np.ndarray],
    src_frames: Mapping[int, np.ndarray],
    thumbs: Mapping[int, Sequence[int]],
    scale: float,
    cfg: ReportConfig,
) -> str:
    """The whole report page."""
    name = Path(str(body.get("output", "output"))).name
    warn = ""
    if body.get("random_test_generator"):
        warn = (
            '<div class="warn">The face prior was a seeded RANDOM TEST GENERATOR: the pasted "faces" are '
            "not faces. This run only exercises the pipeline.</div>"
        )
    sections = [
        f"<h1>reel report: {escape(name)}</h1>",
        f'<p class="sub">{escape(str(body.get("input", "")))} → {escape(str(body.get("output", "")))}</p>',
        _notice(body),
        warn,
        _summary(body, collected),
        '<div class="row"><div>',
        "<h2>What ran</h2>",
        _what_ran(body),
        "</div><div>",
        "<h2>Time</h2>",
        times_section(body),
        "</div></div>",
        '<h2 id="shots">Shots</h2>',
        shots_section(body, thumbs, out_frames, cfg),
        film_shots_section(body.get("film")),
        matte_section(body.get("matte")),
        '<h2 id="people">People</h2>',
        people_sheet(
            body.get("people"), out_frames, scale, {int(t["track_id"]) for t in body.get("tracks", [])}
        ),
        '<h2 id="tracks">Face tracks</h2>',
        _glossary(body),
        _tracks(body, collected, out_frames, src_frames, scale),
        '<h2 id="flagged">Flagged face-frames</h2>',
        _flagged(body, collected),
        '<h2 id="invented">Where is this invented?</h2>',
        _spread(collected),
        "<h2>Settings</h2>",
        _settings(body),
        f'<p class="small">report format version {escape(str(body.get("version", "")))} · '
        f"{escape(str(body.get('notice', INVENTED_DETAIL_NOTICE)))}</p>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>reel report: {escape(name)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(sections)}</main></body></html>\n"
    )


def index_page(
    summary: Mapping[str, Any],
    rows: Sequence[tuple[dict[str, Any], Path | None, Mapping[str, Any] | None]],
    base: Path,
) -> str:
    """A batch's index: one row per item with its status, figures and a link to its report."""
    import os

    head = (
        "<tr><th>input</th><th>output</th><th>status</th><th>frames</th><th>face-frames</th>"
        "<th>met bound</th><th>seconds</th><th>report</th></tr>"
    )
    cells = []
    for item, report, body in rows:
        link = "—"
        if report is not None:
            rel = os.path.relpath(report, base)
            link = f'<a href="{escape(rel)}">{escape(report.name)}</a>'
        b = body or {}
        cells.append(
            f"<tr><td>{escape(str(item.get('input', '')))}</td><td>{escape(str(item.get('output', '')))}</td>"
            f"<td>{escape(str(item.get('status', '')))}</td><td>{b.get('frames', '—')}</td>"
            f"<td>{b.get('restored', '—')}</td><td>{b.get('met_bound', '—')}</td>"
            f"<td>{fmt_num(item.get('seconds'), '{:.1f}')}</td><td>{link}</td></tr>"
        )
    name = escape(str(summary.get("manifest", "batch")))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>reel batch: {name}</title><style>{CSS}</style></head><body><main>"
        f"<h1>reel batch: {name}</h1>"
        f'<div class="notice"><b>Invented detail.</b> {escape(INVENTED_DETAIL_NOTICE)}</div>'
        f"<table>{head}{''.join(cells)}</table></main></body></html>\n"
    )
