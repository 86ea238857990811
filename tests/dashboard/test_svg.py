"""GET …/dashboard/revenue.svg: a well-formed SVG bar chart of the daily series, escaped, small."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
from sqlalchemy import update

from app.dashboard.svg import nice_step, render_chart
from app.orgs.models import Organization, OrgSettings
from tests.dashboard.seed import World

NS = {"svg": "http://www.w3.org/2000/svg"}


def chart_url(world: World, query: str) -> str:
    return f"/api/v1/orgs/{world.org_a.id}/dashboard/revenue.svg?{query}"


def parse(data: bytes) -> ET.Element:
    return ET.fromstring(data)


def texts(root: ET.Element, cls: str) -> list[str]:
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("class") == cls]


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "bar"]


def test_chart_of_the_net_series(client, db_session, world, owner_a) -> None:
    db_session.execute(
        update(OrgSettings).where(OrgSettings.organization_id == world.org_a.id).values(primary_color="#AA3366")
    )
    r = client.get(chart_url(world, "start=2025-02-28&end=2025-03-04"), headers=owner_a)
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    assert r.mimetype == "image/svg+xml"
    assert r.headers["Cache-Control"] == "private, no-store"
    root = parse(r.data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    drawn = bars(root)
    assert len(drawn) == 5  # one bar per day, zero days included
    heights = [float(b.get("height", "0")) for b in drawn]
    assert heights[0] == 0 and heights[4] == 0
    # Net per day: 19.99, 19.99, 59.98 -> bars in that proportion.
    assert heights[1] == pytest.approx(heights[2]) and heights[3] == pytest.approx(heights[1] * 5998 / 1999, abs=0.01)
    assert [b.find("svg:title", NS).text for b in drawn][3] == "2025-03-03: $59.98"
    assert root.find("svg:g[@class='bars']", NS).get("fill") == "#AA3366"
    assert texts(root, "x-label") == ["2025-02-28", "2025-03-02", "2025-03-04"]  # first, middle, last
    y_labels = texts(root, "y-label")
    assert 4 <= len(y_labels) <= 5 and y_labels[0] == "$0.00" and y_labels[-1] == "$80.00"
    [title] = texts(root, "chart-title")
    assert "Acme" in title and "Net revenue" in title and "2025-02-28" in title and "2025-03-04" in title
    assert "total $99.96" in title


@pytest.mark.parametrize(
    ("query", "total", "top_label"),
    [
        ("metric=gross", "total $179.94", "$200.00"),
        ("metric=purchases", "total 3", "4"),
        ("metric=net&currency=eur", "total 15.00 EUR", "20.00 EUR"),
    ],
)
def test_chart_metrics(client, world, owner_a, query, total, top_label) -> None:
    r = client.get(chart_url(world, f"start=2025-03-01&end=2025-03-03&{query}"), headers=owner_a)
    root = parse(r.data)
    assert total in texts(root, "chart-title")[0]
    assert texts(root, "y-label")[-1] == top_label


def test_org_name_is_escaped(client, db_session, world, owner_a) -> None:
    name = 'Tom & Jerry\'s <script>alert("x")</script>'
    db_session.execute(update(Organization).where(Organization.id == world.org_a.id).values(name=name))
    r = client.get(chart_url(world, "start=2025-03-01&end=2025-03-03"), headers=owner_a)
    assert b"<script>" not in r.data
    root = parse(r.data)  # still well-formed XML
    assert texts(root, "chart-title")[0].startswith(name)
    assert root.find("svg:title", NS).text.startswith(name)


def test_366_days_stay_under_200_kb(client, world, owner_a) -> None:
    r = client.get(chart_url(world, "start=2024-03-03&end=2025-03-03"), headers=owner_a)
    assert r.status_code == 200
    assert len(r.data) <= 200 * 1024
    root = parse(r.data)
    assert len(bars(root)) == 366
    assert texts(root, "x-label") == ["2024-03-03", "2024-09-01", "2025-03-03"]


def test_empty_series_still_draws_axes() -> None:
    daily = [
        {"date": date(2025, 1, 1) + timedelta(days=i), "net_cents": 0, "gross_cents": 0, "purchase_count": 0}
        for i in range(2)
    ]
    svg = render_chart(
        org_name="Empty", metric="net", currency="usd", start=date(2025, 1, 1), end=date(2025, 1, 2), daily=daily,
        color="#000000",
    )  # fmt: skip
    root = parse(svg.encode())
    assert [b.get("height") for b in bars(root)] == ["0", "0"]
    assert texts(root, "y-label") == ["$0.00", "$1.00", "$2.00", "$3.00", "$4.00"]


@pytest.mark.parametrize(
    ("maximum", "minimum", "step"),
    [(0, 1, 1), (3, 1, 1), (5998, 100, 2000), (17994, 100, 5000), (400, 100, 100), (101, 1, 50), (9, 1, 5)],
)
def test_nice_step(maximum, minimum, step) -> None:
    assert nice_step(maximum, 4, minimum) == step
    assert step * 4 >= maximum
