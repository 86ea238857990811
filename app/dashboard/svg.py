"""The daily revenue series as an SVG bar chart, built by hand (no browser, no plotting library).

Every piece of text (org name, labels, tooltips) goes through ``html.escape`` and every
attribute value is either a number we formatted or an escaped string, so an org called
``<script>`` renders as text. One bar per day: 366 days stay far below 200 KB (~60 KB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from html import escape
from typing import Any

from app.notifications.rendering import format_money

WIDTH, HEIGHT = 960, 420
LEFT, RIGHT, TOP, BOTTOM = 90, 24, 64, 48
INTERVALS = 4  # 5 labelled gridlines: 0 and 4 steps
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\""
METRIC_FIELDS = {"net": "net_cents", "gross": "gross_cents", "purchases": "purchase_count"}
METRIC_TITLES = {"net": "Net revenue", "gross": "Gross revenue", "purchases": "Purchases"}


def nice_step(maximum: float, intervals: int, minimum_step: int) -> int:
    """The smallest 1/2/2.5/5 x 10^k step (an integer >= ``minimum_step``) covering ``maximum``."""
    raw = maximum / intervals
    if raw <= minimum_step:
        return minimum_step
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * magnitude
        if step >= raw and float(step).is_integer():
            return int(step)
    return int(10 * magnitude)  # pragma: no cover - 10 x magnitude always qualifies


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, content: str, *, anchor: str = "start", size: int = 12, extra: str = "") -> str:
    return (
        f'<text x="{_fmt(x)}" y="{_fmt(y)}" font-size="{size}" text-anchor="{anchor}"{extra}>{escape(content)}</text>'
    )


def render_chart(
    *,
    org_name: str,
    metric: str,
    currency: str,
    start: date,
    end: date,
    daily: Sequence[dict[str, Any]],
    color: str,
) -> str:
    field = METRIC_FIELDS[metric]
    is_money = metric != "purchases"

    def label(value: int) -> str:
        return format_money(value, currency) if is_money else f"{value:,}"

    values = [max(int(day[field]), 0) for day in daily]
    total = sum(int(day[field]) for day in daily)
    step = nice_step(max(values, default=0), INTERVALS, 100 if is_money else 1)
    top_value = step * INTERVALS
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_h
    title = f"{org_name} · {METRIC_TITLES[metric]} · {start.isoformat()} to {end.isoformat()} · total {label(total)}"
    fill = escape(color, quote=True)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" {FONT}>',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        _text(LEFT, 28, title, size=16, extra=' font-weight="600" fill="#111827" class="chart-title"'),
        '<g class="y-axis" fill="#4b5563">',
    ]
    for i in range(INTERVALS + 1):
        y = bottom - plot_h * i / INTERVALS
        parts.append(
            f'<line x1="{LEFT}" y1="{_fmt(y)}" x2="{WIDTH - RIGHT}" y2="{_fmt(y)}" stroke="#e5e7eb" stroke-width="1"/>'
        )
        parts.append(_text(LEFT - 8, y + 4, label(step * i), anchor="end", extra=' class="y-label"'))
    parts.append("</g>")
    count = max(len(values), 1)
    slot = plot_w / count
    gap = slot * 0.2 if slot >= 4 else 0.0
    parts.append(f'<g class="bars" fill="{fill}">')
    for index, (day, value) in enumerate(zip(daily, values, strict=True)):
        height = plot_h * value / top_value if top_value else 0.0
        x = LEFT + index * slot + gap / 2
        parts.append(
            f'<rect class="bar" x="{_fmt(x)}" y="{_fmt(bottom - height)}" width="{_fmt(slot - gap)}" '
            f'height="{_fmt(height)}"><title>{escape(day["date"].isoformat())}: {escape(label(value))}</title></rect>'
        )
    parts.append("</g>")
    parts.append(
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#9ca3af" stroke-width="1"/>'
    )
    parts.append('<g class="x-axis" fill="#4b5563">')
    for index in sorted({0, (len(daily) - 1) // 2, len(daily) - 1}):
        if 0 <= index < len(daily):
            x = LEFT + (index + 0.5) * slot
            parts.append(
                _text(x, bottom + 20, daily[index]["date"].isoformat(), anchor="middle", extra=' class="x-label"')
            )
    parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


# ---- the retention curve of one content item (api.md §11, ``…/retention.svg``) ---------------------

PERCENT_TICKS = (0, 25, 50, 75, 100)


def _percent(value: float) -> str:
    return f"{_fmt(value)}%"


def render_retention(*, title: str, viewers: int, retention: Sequence[dict[str, Any]], color: str) -> str:
    """The share of viewers (y, 0..100 %) whose furthest position reached each 5 % of the duration
    (x, 0..100 %): a line over a light area, one dot per point with its figure as a tooltip.

    Same rules as ``render_chart``: every text node escaped, the colour an escaped attribute; the
    body is a fixed 21 points, a few KB whatever the audience.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_h
    who = f"{viewers:,} viewer" + ("" if viewers == 1 else "s")
    heading = f"{title} · retention · {who}"
    stroke = escape(color, quote=True)

    def x_of(percent: float) -> float:
        return LEFT + plot_w * percent / 100

    def y_of(fraction: float) -> float:
        return bottom - plot_h * min(max(fraction, 0.0), 1.0)

    points = [(x_of(float(p["percent"])), y_of(float(p["viewers_fraction"]))) for p in retention]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" {FONT}>',
        f"<title>{escape(heading)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        _text(LEFT, 28, heading, size=16, extra=' font-weight="600" fill="#111827" class="chart-title"'),
        '<g class="y-axis" fill="#4b5563">',
    ]
    for tick in PERCENT_TICKS:
        y = y_of(tick / 100)
        parts.append(
            f'<line x1="{LEFT}" y1="{_fmt(y)}" x2="{WIDTH - RIGHT}" y2="{_fmt(y)}" stroke="#e5e7eb" stroke-width="1"/>'
        )
        parts.append(_text(LEFT - 8, y + 4, _percent(tick), anchor="end", extra=' class="y-label"'))
    parts.append(
        _text(18, TOP + plot_h / 2, "viewers", anchor="middle",
              extra=f' class="y-title" transform="rotate(-90 18 {_fmt(TOP + plot_h / 2)})"')
    )  # fmt: skip
    parts.append("</g>")
    if points and viewers:
        line = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points)
        area = f"{_fmt(points[0][0])},{bottom} {line} {_fmt(points[-1][0])},{bottom}"
        parts.append(f'<polygon class="area" points="{area}" fill="{stroke}" fill-opacity="0.15"/>')
        parts.append(
            f'<polyline class="curve" points="{line}" fill="none" stroke="{stroke}" stroke-width="2.5" '
            'stroke-linejoin="round"/>'
        )
        parts.append(f'<g class="points" fill="{stroke}">')
        for (x, y), point in zip(points, retention, strict=True):
            share = _percent(100 * float(point["viewers_fraction"]))
            label = f"{_percent(float(point['percent']))} of the duration: {share} of viewers"
            parts.append(f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="3"><title>{escape(label)}</title></circle>')
        parts.append("</g>")
    else:
        parts.append(_text(LEFT + plot_w / 2, TOP + plot_h / 2, "No viewers yet", anchor="middle",
                           extra=' fill="#6b7280" class="empty"'))  # fmt: skip
    parts.append(
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#9ca3af" stroke-width="1"/>'
    )
    parts.append('<g class="x-axis" fill="#4b5563">')
    for tick in PERCENT_TICKS:
        parts.append(_text(x_of(tick), bottom + 20, _percent(tick), anchor="middle", extra=' class="x-label"'))
    parts.append(
        _text(LEFT + plot_w / 2, bottom + 40, "furthest position reached (share of the duration)", anchor="middle",
              extra=' class="x-title"')
    )  # fmt: skip
    parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)
