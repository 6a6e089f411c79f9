"""Pieces every report page is drawn with (the restore page, the anonymise page, the people
section): the style sheet, embedded pictures, numbers, cards, the stage times and the shot strips.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import numpy as np

from pipeline.config import ReportConfig
from pipeline.report.assets import data_uri, fit
from pipeline.report.plots import bar_chart

STAGE_ORDER = ("ray_start", "scan", "crops", "search", "spread", "compose", "pipeline", "mux", "report")


CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,"Segoe UI",sans-serif;margin:0;color:#1b1b1b;background:#f4f4f2}
main{max-width:1180px;margin:0 auto;padding:16px 20px 40px}h1{font-size:22px;margin:8px 0 2px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc;padding-bottom:3px}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#555;margin:0 0 10px;word-break:break-all}
.notice{background:#fff6d6;border-left:5px solid #e0a800;padding:8px 12px;margin:10px 0}
.warn{background:#fde2e1;border-left:5px solid #c62828;padding:8px 12px;margin:10px 0;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:20px}.card span{color:#555;font-size:12px}
table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top;font-size:13px}
th{background:#eee}.kv td:first-child{color:#555;white-space:nowrap}
.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.plot{background:#fff;border:1px solid #ddd}.plot .pt{font-size:12px;font-weight:600}
.plot .pl{font-size:10px;fill:#444}.plot .pf{fill:#fafafa}.plot .pg{stroke:#e3e3e3}
.plot .ph{stroke:#c62828;stroke-dasharray:4 3}
.shots{display:flex;flex-wrap:wrap;gap:6px 14px}.shot{max-width:100%}
.strip{display:flex;gap:4px;overflow-x:auto;background:#fff;border:1px solid #ddd;padding:4px;margin:4px 0}
.strip figure{margin:0;font-size:11px;color:#555;text-align:center}.strip img{display:block}
.sheet{display:flex;flex-wrap:wrap;gap:8px}.face{background:#fff;border:1px solid #ddd;padding:5px;
width:366px}.trio{display:flex;gap:3px;margin:3px 0}.trio img{height:112px;width:112px;object-fit:contain;
background:#222}img.px{image-rendering:pixelated}.nopic{width:112px;height:112px;background:#ddd}
.spread td{text-align:center}.spread img{display:block;margin:0 auto;width:224px;height:224px}
.bad{color:#c62828;font-weight:600}.ok{color:#2e7d32}
img{max-width:100%}.small{font-size:12px;color:#555}
pre{background:#fff;border:1px solid #ddd;padding:8px;overflow-x:auto;font-size:12px}details{margin:8px 0}
:target{outline:3px solid #e0a800}
"""


def image_uri(image: np.ndarray, fmt: str = "jpeg", height: int | None = None, sharp: bool = False) -> str:
    img = fit(image, height, sharp=sharp) if height else image
    return data_uri(img, fmt)


def img_tag(uri: str, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} src="{uri}" alt="{escape(alt)}">'


def fmt_num(v: object, fmt: str = "{:.1f}", none: str = "—") -> str:

    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return fmt.format(v)


def card(value: str, label: str) -> str:
    return f'<div class="card"><b>{value}</b><span>{escape(label)}</span></div>'


def times_section(body: Mapping[str, Any]) -> str:
    seconds = body.get("seconds", {})
    order = {k: i for i, k in enumerate(STAGE_ORDER)}
    stages = sorted(
        # the report's own time is in the JSON only: the page stays the same when `reel report` redraws it
        ((k, float(v)) for k, v in seconds.items() if k not in ("total", "report")),
        key=lambda kv: (order.get(kv[0], 99), kv[0]),
    )
    total = seconds.get("total")
    note = f'<p class="small">total {fmt_num(total, "{:.2f}")} s (wall clock; stages may overlap on Ray)</p>'
    return bar_chart(stages, title="time per stage (s)") + note


def thumb(img: np.ndarray, index: int, cfg: ReportConfig) -> str:
    h = max(1, round(cfg.thumb_width * img.shape[0] / img.shape[1]))
    return f"<figure>{img_tag(image_uri(img, height=h), f'frame {index}')}frame {index}</figure>"


def shots_section(
    body: Mapping[str, Any],
    thumbs: Mapping[int, Sequence[int]],
    frames: Mapping[int, np.ndarray],
    cfg: ReportConfig,
) -> str:
    shots = body.get("shots", [])
    if not shots and thumbs:  # not scanned (no face model): one strip over the whole output
        figs = [thumb(frames[f], f, cfg) for f in thumbs.get(0, ()) if f in frames]
        return f'<p class="small">not scanned for faces</p><div class="strip">{"".join(figs)}</div>'
    parts = []
    for i, (start, end) in enumerate(shots):
        figs = []
        for f in thumbs.get(i, ()):
            if f in frames:
                figs.append(thumb(frames[f], f, cfg))
        parts.append(
            f'<div class="shot" id="shot-{i}"><b>shot {i}</b> '
            f'<span class="small">frames {start}–{end - 1}</span>'
            + (f'<div class="strip">{"".join(figs)}</div>' if figs else '<p class="small">no thumbnails</p>')
            + "</div>"
        )
    more = ""
    if len(shots) > len(thumbs):
        more = f'<p class="small">{len(shots) - len(thumbs)} more shots without thumbnails</p>'
    return f'<div class="shots">{"".join(parts)}</div>{more}'


def film_shots_section(film: Mapping[str, Any] | None) -> str:
    """Film cleaning per shot: what each stage found (in how many frames) and what it did."""
    shots = (film or {}).get("shots")
    if not shots:
        return ""
    rows = []
    for i, s in enumerate(shots):
        n = s["frames_found"]
        found = ", ".join(f"{k} ({n[k]} frames)" for k in s["found"]) or "nothing"
        rows.append(
            f"<tr><td>{i}</td><td>{s['start']}–{s['end'] - 1}</td><td>{escape(found)}</td>"
            f"<td>{s['deflickered']} (gain ±{100 * s['max_gain_change']:.1f} %)</td>"
            f"<td>{s['weave_px_max']:.2f} px</td><td>{s['specks_filled']} ({s['objects_kept']} kept)</td>"
            f"<td>{s['scratches_found']}</td></tr>"
        )
    head = (
        "<tr><th>shot</th><th>frames</th><th>found</th><th>deflickered</th><th>largest weave shift</th>"
        "<th>specks filled (objects kept)</th><th>scratches</th></tr>"
    )
    return f'<h2 id="film">Film cleaning per shot</h2><table class="kv">{head}{"".join(rows)}</table>'


def matte_section(matte: Mapping[str, Any] | None) -> str:
    """The provenance matte (film.matte): where it is, what it marks, the altered share per shot."""
    if not matte:
        return ""
    rows = "".join(
        f"<tr><td>{i}</td><td>{s['start']}–{s['end'] - 1}</td><td>{100 * s['altered_share']:.3f} %</td>"
        f"<td>{s['frames_altered']}</td></tr>"
        for i, s in enumerate(matte.get("shots", []))
    )
    return (
        '<h2 id="matte">Provenance matte</h2>'
        f'<p class="small">{escape(str(matte.get("path")))}: a lossless gray mask, frame for frame with the '
        f"output, marking every synthesised pixel ({escape(str(matte.get('marks')))}). "
        f"{100 * float(matte.get('altered_share', 0.0)):.3f} % of the output's pixels were altered.</p>"
        '<table class="kv"><tr><th>shot</th><th>frames</th><th>pixels altered</th>'
        f"<th>frames altered</th></tr>{rows}</table>"
    )
