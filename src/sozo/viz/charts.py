"""Charts as inline SVG: line charts (one or more series, a log y axis when the values span
orders of magnitude, a cursor the report's epoch slider moves) and bar charts (a class histogram
beside the real data's shares).

No JavaScript library and nothing fetched: a chart is a string of SVG that a page embeds as it is
(report.html, the gallery). The page's style sheet colours the classes used here (grid, tick,
axis, line, thin, cursor, floorbar).
"""
from __future__ import annotations

import html
import json
import math
from typing import Any, TypeGuard

PALETTE = ["#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
           "#9c755f", "#7f7f7f"]


def finite(v: Any) -> TypeGuard[float]:
    """A real number (not a bool) that is neither NaN nor infinite: what a chart can plot."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: Any) -> str:
    """A number as a person reads it: whole numbers as such, else about four significant digits."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a >= 1000 or (v.is_integer() and a < 1e6):
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    if a >= 0.001:
        return f"{v:.3f}"
    return f"{v:.2e}"


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    step = _nice_step(hi - lo, n)
    first = math.ceil(lo / step - 1e-9) * step
    out, t = [], first
    while t <= hi + step * 1e-9:
        out.append(round(t, 12))
        t += step
    return out


def _tick_text(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 10000 or a < 0.001:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def line_chart(series: list[dict[str, Any]], *, xlabel: str = "step", width: int = 440, height: int = 230,
               cursor: dict[int, float] | None = None, log_y: bool | None = None) -> str:
    """An inline <svg> line chart. ``series``: [{label, x: [...], y: [...], color, thin, markers,
    tips: [...]}]. ``cursor`` maps an epoch to an x value: the page's slider moves a line there.

    The y axis turns logarithmic when every value is positive and they span more than 50x.
    """
    pts = [(x, y) for s in series for x, y in zip(s["x"], s["y"]) if finite(x) and finite(y)]
    if not pts:
        return '<p class="muted">no finite values</p>'
    ml, mr, mt, mb = 54, 14, 12, 34
    pw, ph = width - ml - mr, height - mt - mb
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = min(ys), max(ys)
    if log_y is None:
        log_y = y0 > 0 and y1 / y0 > 50
    if log_y:
        ty = math.log10
        ly0, ly1 = math.floor(math.log10(y0)), math.ceil(math.log10(y1))
        y0t, y1t = float(ly0), float(max(ly1, ly0 + 1))
        yticks = [float(e) for e in range(int(y0t), int(y1t) + 1)]
    else:
        ty = float
        pad = (y1 - y0) * 0.06 or (abs(y0) * 0.1 or 1.0)
        y0t, y1t = y0 - pad, y1 + pad
        if y0 >= 0 and y0t < 0:
            y0t = 0.0
        yticks = ticks(y0t, y1t, 5)

    def px(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return mt + ph - (ty(y) - y0t) / (y1t - y0t) * ph

    o = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" preserveAspectRatio="xMidYMid meet"']
    if cursor:
        o.append(f" data-cursor='{json.dumps({str(k): round(px(v), 1) for k, v in cursor.items()})}'")
    o.append(">")
    for t in yticks:  # horizontal grid and y labels
        yy = mt + ph - (t - y0t) / (y1t - y0t) * ph
        if mt - 0.5 <= yy <= mt + ph + 0.5:
            label = _tick_text(10 ** t) if log_y else _tick_text(t)
            o.append(f'<line class="grid" x1="{ml}" x2="{ml + pw}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
                     f'<text class="tick" x="{ml - 6}" y="{yy + 3.5:.1f}" text-anchor="end">{label}</text>')
    whole_x = all(float(x).is_integer() for x in xs)  # steps and epochs: whole-number ticks only
    for t in ticks(x0, x1, 6):
        if float(t).is_integer() or not whole_x:
            xx = px(t)
            o.append(f'<line class="xtick" x1="{xx:.1f}" x2="{xx:.1f}" y1="{mt + ph}" y2="{mt + ph + 4}"/>'
                     f'<text class="tick" x="{xx:.1f}" y="{mt + ph + 16}" text-anchor="middle">{_tick_text(t)}</text>')
    o.append(f'<line class="axis" x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}"/>'
             f'<text class="axlabel" x="{ml + pw / 2:.1f}" y="{height - 3}" text-anchor="middle">{xlabel}</text>')
    if log_y:
        o.append(f'<text class="axlabel" x="{ml}" y="{mt - 2}" text-anchor="start">log scale</text>')
    if cursor:
        o.append(f'<line class="cursor" x1="-10" x2="-10" y1="{mt}" y2="{mt + ph}"/>')
    for s in series:
        xy = [(px(x), py(y)) for x, y in zip(s["x"], s["y"]) if finite(x) and finite(y)]
        if not xy:
            continue
        color, cls = s.get("color", PALETTE[0]), "thin" if s.get("thin") else "line"
        if len(xy) > 1:
            o.append(f'<polyline class="{cls}" stroke="{color}" points="'
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b in xy) + '"/>')
        if s.get("markers") or len(xy) == 1:
            tips = s.get("tips") or [""] * len(xy)
            for (a, b), tip in zip(xy, tips):
                o.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.2" fill="{color}">'
                         + (f"<title>{html.escape(tip)}</title>" if tip else "") + "</circle>")
    o.append("</svg>")
    return "".join(o)


def bar_chart(values: list[float], labels: list[str], floor: list[float] | None = None, *,
              width: int = 440, height: int = 200) -> str:
    """Class histogram (shares) as inline SVG; ``floor`` draws the real data's shares as ticks."""
    total = sum(values) or 1
    shares = [v / total for v in values]
    fshares = [v / (sum(floor) or 1) for v in floor] if floor else None
    top = max(shares + (fshares or []) + [1e-9])
    ml, mr, mt, mb = 40, 10, 10, 30
    pw, ph = width - ml - mr, height - mt - mb
    bw = pw / max(len(values), 1)
    o = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img">']
    for t in ticks(0, top, 4):
        yy = mt + ph - t / top * ph
        o.append(f'<line class="grid" x1="{ml}" x2="{ml + pw}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
                 f'<text class="tick" x="{ml - 5}" y="{yy + 3.5:.1f}" text-anchor="end">{t:.0%}</text>')
    for i, (s, lab) in enumerate(zip(shares, labels)):
        h = s / top * ph
        x = ml + i * bw + bw * 0.15
        o.append(f'<rect x="{x:.1f}" y="{mt + ph - h:.1f}" width="{bw * 0.7:.1f}" height="{h:.1f}" '
                 f'class="bar"><title>{html.escape(lab)}: {s:.1%} ({fmt(values[i])})</title></rect>'
                 f'<text class="tick" x="{x + bw * 0.35:.1f}" y="{mt + ph + 14}" text-anchor="middle">'
                 f"{html.escape(lab[:6])}</text>")
        if fshares:
            fy = mt + ph - fshares[i] / top * ph
            o.append(f'<line class="floorbar" x1="{x - 2:.1f}" x2="{x + bw * 0.7 + 2:.1f}" '
                     f'y1="{fy:.1f}" y2="{fy:.1f}"/>')
    o.append(f'<line class="axis" x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}"/></svg>')
    return "".join(o)
