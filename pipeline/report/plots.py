"""Small line plots as inline SVG: no plotting dependency, crisp at any zoom, a few kB each.

line_plot([Series("consistency", xs, ys, "#1f77b4")], title="...", y_label="dB", h_lines=[(27.0, "bound")])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = PALETTE[0]
    markers: bool = False  # draw a dot at every point (sparse series)


def _ticks(lo: float, hi: float, n: int = 4, integer: bool = False) -> list[float]:
    """About `n` round tick values covering [lo, hi]; whole numbers only when `integer` (frames)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    if integer:
        raw = max(raw, 1.0)
    mag = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * mag for m in steps if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def value_range(series: Sequence[Series], h_lines: Sequence[tuple[float, str]] = ()) -> tuple[float, float]:
    """The (low, high) of the finite values and reference lines: pass one range to every plot of
    the same quantity so their axes start and end alike."""
    ys = [float(v) for s in series for v in s.y if math.isfinite(float(v))] + [v for v, _ in h_lines]
    return (min(ys), max(ys)) if ys else (0.0, 1.0)


def line_plot(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str = "",
    x_label: str = "frame",
    h_lines: Sequence[tuple[float, str]] = (),
    y_range: tuple[float, float] | None = None,
    width: int = 360,
    height: int = 180,
) -> str:
    """One SVG chart of `series` over a shared x axis, with dashed horizontal reference lines.

    The legend sits between the title and the plot area and the reference lines' labels in the
    right margin, so neither crosses a line; frame axes get whole-number ticks; `y_range` fixes
    the y axis (the same quantity on several plots reads alike)."""
    legend = len(series) > 1
    left, right, top, bottom = 44, 44, 34 if legend else 22, 30
    pw, ph = width - left - right, height - top - bottom
    xs = [float(v) for s in series for v in s.x]
    has_y = any(math.isfinite(float(v)) for s in series for v in s.y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="14" class="pt">{escape(title)}</text>',
    ]
    if not xs or not has_y:
        parts.append(f'<text x="{left}" y="{top + ph / 2:.0f}" class="pl">no data</text></svg>')
        return "".join(parts)
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range if y_range is not None else value_range(series, h_lines)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.08 or max(abs(y1) * 0.1, 1.0)
    y0, y1 = y0 - pad, y1 + pad

    def px(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return top + (1 - (min(max(v, y0), y1) - y0) / (y1 - y0)) * ph

    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="pf"/>')
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="pg"/>')
        parts.append(
            f'<text x="{left - 4}" y="{py(t) + 3:.1f}" class="pl" text-anchor="end">{_fmt(t)}</text>'
        )
    for t in _ticks(x0, x1, 5, integer=x_label == "frame"):
        parts.append(
            f'<text x="{px(t):.1f}" y="{top + ph + 13}" class="pl" text-anchor="middle">{_fmt(t)}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2:.0f}" y="{height - 3}" class="pl" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    if y_label:
        parts.append(
            f'<text x="10" y="{top + ph / 2:.0f}" class="pl" text-anchor="middle" '
            f'transform="rotate(-90 10 {top + ph / 2:.0f})">{escape(y_label)}</text>'
        )
    for v, label in h_lines:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(v):.1f}" y2="{py(v):.1f}" class="ph"/>')
        parts.append(f'<text x="{left + pw + 3}" y="{py(v) + 3:.1f}" class="pl">{escape(label)}</text>')
    legend_x = left
    for s in series:
        points = [
            (px(float(a)), py(float(b))) for a, b in zip(s.x, s.y, strict=True) if math.isfinite(float(b))
        ]
        if len(points) > 1:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="1.5"/>')
        if s.markers or len(points) == 1:
            parts.extend(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{s.color}"/>' for a, b in points)
        if legend:
            parts.append(f'<rect x="{legend_x}" y="{top - 10}" width="10" height="3" fill="{s.color}"/>')
            parts.append(f'<text x="{legend_x + 13}" y="{top - 5}" class="pl">{escape(s.label)}</text>')
            legend_x += 18 + 6 * len(s.label)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(values: Sequence[tuple[str, float]], *, title: str, unit: str = "s", width: int = 360) -> str:
    """Horizontal bars (e.g. seconds per stage), labelled with their values."""
    row = 18
    height = 24 + row * max(len(values), 1)
    label_w = 90
    top = max((v for _, v in values), default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="14" class="pt">{escape(title)}</text>',
    ]
    for i, (name, v) in enumerate(values):
        y = 22 + i * row
        w = max(1.0, (width - label_w - 70) * v / top)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 11}" class="pl" text-anchor="end">{escape(name)}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" fill="{PALETTE[0]}"/>'
        )
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 11}" class="pl">{v:.2f} {escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)
