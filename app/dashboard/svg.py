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
