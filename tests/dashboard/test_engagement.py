"""GET …/dashboard/content/{id}/engagement and …/retention.svg (api.md §11): the retention
arithmetic, who may read it, org isolation, and the SVG's escaping.

The seed's viewers of C1 "Alpha" (tests/dashboard/seed.py): Ana 600/600 s (completed), Bob 150,
Cid 310, Dee 0 — buckets 20, 5, 10 and 0.
"""

from __future__ import annotations

import itertools
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.content.models import Content
from app.dashboard.engagement import BUCKETS, MICROS, Audience, bucket_of
from app.dashboard.svg import render_retention
from app.orgs.models import OrgSettings
from tests import factories
from tests.dashboard.seed import World, viewed
from tests.identity.helpers import add_member, auth, signed_in

SVG = "{http://www.w3.org/2000/svg}"


def engagement_url(world: World, content_id: Any, query: str = "", org_id: Any = None) -> str:
    org = org_id or world.org_a.id
    return f"/api/v1/orgs/{org}/dashboard/content/{content_id}/engagement" + (f"?{query}" if query else "")


def svg_url(world: World, content_id: Any, org_id: Any = None) -> str:
    return f"/api/v1/orgs/{org_id or world.org_a.id}/dashboard/content/{content_id}/retention.svg"


def curve(audience: Audience) -> list[float]:
    return [p["viewers_fraction"] for p in audience.retention()]


def audience_of(*viewers: tuple[int, int, bool]) -> Audience:
    """Build the rollup's figures by hand from (furthest, duration, completed) triples."""
    buckets = [0] * (BUCKETS + 1)
    done = micros = 0
    for furthest, duration, completed in viewers:
        buckets[bucket_of(furthest, duration)] += 1
        done += completed
        micros += MICROS * min(furthest, duration) // duration
    return Audience(tuple(buckets), done, micros)


# ---- the arithmetic ------------------------------------------------------------------------------------


def test_no_viewers_is_a_flat_zero_curve() -> None:
    audience = audience_of()
    assert audience.viewers == 0 and audience.completion_rate == 0.0 and audience.average_percent_watched == 0.0
    assert [p["percent"] for p in audience.retention()] == list(range(0, 101, 5))
    assert curve(audience) == [0.0] * 21


def test_one_viewer_reaching_42_percent() -> None:
    audience = audience_of((252, 600, False))  # 42 %: reached 40 %, not 45 %
    assert curve(audience) == [1.0] * 9 + [0.0] * 12
    assert (audience.viewers, audience.completions, audience.average_percent_watched) == (1, 0, 42.0)


def test_everyone_completes() -> None:
    audience = audience_of((600, 600, True), (100, 100, True), (3600, 3600, True))
    assert curve(audience) == [1.0] * 21
    assert (audience.completion_rate, audience.average_percent_watched) == (1.0, 100.0)


def test_bucket_edges_and_clamping() -> None:
    assert [bucket_of(f, 600) for f in (0, 29, 30, 31, 299, 300, 569, 570, 600, 9999)] == [
        0, 0, 1, 1, 9, 10, 18, 19, 20, 20,
    ]  # fmt: skip
    assert bucket_of(1, 1) == 20 and bucket_of(0, 1) == 0


def test_the_curve_never_rises_and_starts_at_one() -> None:
    audience = audience_of(*((f, 97, f == 97) for f in range(0, 98)))
    points = curve(audience)
    assert points[0] == 1.0 and all(a >= b for a, b in itertools.pairwise(points))


# ---- the endpoint ----------------------------------------------------------------------------------------


def test_engagement_of_the_seeded_item(client, world: World, owner_a) -> None:
    c1 = world.content["C1"]
    r = client.get(engagement_url(world, c1.id, "start=2025-03-01&end=2025-03-03"), headers=owner_a)
    assert r.status_code == 200, r.json
    body = r.json
    assert (body["content_id"], body["title"], body["duration_seconds"]) == (str(c1.id), "Alpha", None)
    assert (body["viewers"], body["completions"], body["completion_rate"]) == (4, 1, 0.25)
    # (600 + 150 + 310 + 0) / 600 / 4 viewers, from whole millionths per viewer
    assert body["average_percent_watched"] == round(100 * (1_000_000 + 250_000 + 516_666) / 4_000_000, 2) == 44.17
    assert body["retention"] == [
        {"percent": 5 * k, "viewers_fraction": 1.0 if k == 0 else 0.75 if k <= 5 else 0.5 if k <= 10 else 0.25}
        for k in range(21)
    ]
    assert body["seconds_watched"] == 600
    assert body["daily"] == [
        {"date": "2025-03-01", "views_started": 0, "seconds_watched": 0, "completions": 0},
        {"date": "2025-03-02", "views_started": 1, "seconds_watched": 600, "completions": 0},
        {"date": "2025-03-03", "views_started": 0, "seconds_watched": 0, "completions": 0},
    ]


def test_daily_defaults_to_the_last_30_days_and_the_duration_comes_from_the_media(
    client, db_session, world: World, owner_a
) -> None:
    from app.media.models import MediaItem

    c4 = world.content["C4"]
    db_session.execute(update(MediaItem).where(MediaItem.id == c4.media_id).values(duration_seconds=754))
    body = client.get(engagement_url(world, c4.id), headers=owner_a).json
    today = datetime.now(UTC).date()
    assert [d["date"] for d in body["daily"]] == [(today - timedelta(days=29 - i)).isoformat() for i in range(30)]
    assert (body["duration_seconds"], body["viewers"], body["seconds_watched"]) == (754, 0, 0)
    assert {p["viewers_fraction"] for p in body["retention"]} == {0.0}


def test_a_seek_back_keeps_the_viewer_in_the_curve(client, db_session, world: World, owner_a) -> None:
    from app.access.models import PlaybackProgress

    c4 = world.content["C4"]
    viewed(world.u("Eve"), c4, 480, 600)  # reached 80 %
    db_session.flush()
    # The flush's upsert after a seek back to 1 min: the position moves, the furthest does not.
    db_session.execute(
        update(PlaybackProgress)
        .where(PlaybackProgress.user_id == world.u("Eve").id, PlaybackProgress.content_id == c4.id)
        .values(position_seconds=60, max_position_seconds=PlaybackProgress.max_position_seconds)
    )
    body = client.get(engagement_url(world, c4.id), headers=owner_a).json
    assert [p["viewers_fraction"] for p in body["retention"]] == [1.0] * 17 + [0.0] * 4
    assert body["average_percent_watched"] == 80.0


@pytest.mark.parametrize("query", ["start=2025-03-04&end=2025-03-01", "start=2024-01-01&end=2025-03-01", "end=x"])
def test_bad_ranges_are_400(client, world: World, owner_a, query: str) -> None:
    r = client.get(engagement_url(world, world.content["C1"].id, query), headers=owner_a)
    assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR"


# ---- who may read ----------------------------------------------------------------------------------------


def creator_with_content(world: World, title: str = "Creator's cut") -> tuple[dict[str, str], Content]:
    creator = add_member(world.org_a, role="creator")
    own: Content = factories.PaidContentFactory(
        organization_id=world.org_a.id, created_by=creator.id, title=title, slug=f"cut-{uuid.uuid4().hex[:8]}"
    )
    viewed(world.u("Ana"), own, 45, 90)
    return auth(signed_in(creator)), own


@pytest.mark.parametrize("kind", ["engagement", "svg"])
def test_a_creator_reads_its_own_content_only(client, world: World, kind: str) -> None:
    creator, own = creator_with_content(world)
    url = engagement_url if kind == "engagement" else svg_url
    r = client.get(url(world, own.id), headers=creator)
    assert r.status_code == 200
    if kind == "engagement":
        assert r.json["viewers"] == 1 and r.json["retention"][10]["viewers_fraction"] == 1.0
    other = client.get(url(world, world.content["C1"].id), headers=creator)  # the owner's content
    assert other.status_code == 403 and other.json["error"]["code"] == "FORBIDDEN"
    # The rest of the dashboard stays closed to creators.
    assert client.get(f"/api/v1/orgs/{world.org_a.id}/dashboard/summary", headers=creator).status_code == 403


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_managers_read_every_content_of_the_org(client, world: World, role: str) -> None:
    _, own = creator_with_content(world)
    manager = auth(signed_in(world.owner_a if role == "owner" else add_member(world.org_a, role="admin")))
    for item in (own, world.content["C1"]):
        assert client.get(engagement_url(world, item.id), headers=manager).status_code == 200
        assert client.get(svg_url(world, item.id), headers=manager).status_code == 200


@pytest.mark.parametrize("kind", ["engagement", "svg"])
def test_org_isolation(client, db_session, world: World, owner_a, kind: str) -> None:
    url = engagement_url if kind == "engagement" else svg_url
    d1 = world.content["D1"]  # org B's content, through org A's path
    r = client.get(url(world, d1.id), headers=owner_a)
    assert r.status_code == 404 and r.json["error"]["code"] == "CONTENT_NOT_FOUND"
    for missing in (uuid.uuid4(), "not-a-uuid"):
        r = client.get(url(world, missing), headers=owner_a)
        assert r.status_code == 404 and r.json["error"]["code"] == "CONTENT_NOT_FOUND"
    # Org B's owner is not a member of org A: the org itself is not found.
    r = client.get(url(world, world.content["C1"].id), headers=auth(signed_in(world.owner_b)))
    assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"
    r = client.get(url(world, world.content["C1"].id), headers=auth(signed_in(world.u("Ana"))))  # a customer
    assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"
    # Its own org's path works for org B's owner.
    assert (
        client.get(url(world, d1.id, org_id=world.org_b.id), headers=auth(signed_in(world.owner_b))).status_code == 200
    )
    # Deleted content is gone.
    db_session.execute(update(Content).where(Content.id == world.content["C2"].id).values(deleted_at=datetime.now(UTC)))
    r = client.get(url(world, world.content["C2"].id), headers=owner_a)
    assert r.status_code == 404 and r.json["error"]["code"] == "CONTENT_NOT_FOUND"
    assert client.get(url(world, world.content["C1"].id)).status_code == 401


def test_org_b_sees_only_its_viewers(client, world: World) -> None:
    body = client.get(
        engagement_url(world, world.content["D1"].id, org_id=world.org_b.id), headers=auth(signed_in(world.owner_b))
    ).json
    assert (body["viewers"], body["average_percent_watched"]) == (1, 90.0)
    assert body["retention"][18]["viewers_fraction"] == 1.0 and body["retention"][19]["viewers_fraction"] == 0.0


# ---- the SVG -------------------------------------------------------------------------------------------------


def test_retention_chart(client, db_session, world: World, owner_a) -> None:
    db_session.execute(
        update(OrgSettings).where(OrgSettings.organization_id == world.org_a.id).values(primary_color="#AA3366")
    )
    r = client.get(svg_url(world, world.content["C1"].id), headers=owner_a)
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    assert r.headers["Cache-Control"] == "private, no-store" and len(r.data) <= 200_000
    root = ET.fromstring(r.data)
    [title] = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "chart-title"]
    assert title == "Alpha · retention · 4 viewers"
    [line] = [p for p in root.iter(f"{SVG}polyline") if p.get("class") == "curve"]
    assert line.get("stroke") == "#AA3366"
    ys = [float(pt.split(",")[1]) for pt in (line.get("points") or "").split()]
    assert len(ys) == 21 and ys == sorted(ys)  # y grows downwards: the curve never rises
    # Linear in the share: from 1.0 (ys[0]) down to 0.25 (ys[-1]), 0.75 and 0.5 sit at 1/3 and 2/3.
    span = ys[-1] - ys[0]
    assert [round((y - ys[0]) / span, 4) for y in ys] == [0.0] + [0.3333] * 5 + [0.6667] * 5 + [1.0] * 10
    tips = [c.find(f"{SVG}title").text for c in root.iter(f"{SVG}circle")]  # type: ignore[union-attr]
    assert tips[5] == "25% of the duration: 75% of viewers" and len(tips) == 21
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") in {"x-label", "y-label"}]
    assert labels == ["0%", "25%", "50%", "75%", "100%"] * 2


HOSTILE = """<script>alert("x")</script> & 'quotes' "double" </text><text>"""


def test_a_hostile_title_renders_as_text(client, db_session, world: World, owner_a) -> None:
    _, own = creator_with_content(world, HOSTILE)
    r = client.get(svg_url(world, own.id), headers=owner_a)
    assert r.status_code == 200
    raw = r.get_data(as_text=True)
    assert "<script" not in raw and "</text><text>" not in raw
    root = ET.fromstring(r.data)  # still well-formed
    [title] = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "chart-title"]
    assert title == f"{HOSTILE} · retention · 1 viewer"
    assert root.find(f"{SVG}title").text == title  # type: ignore[union-attr]
    assert client.get(engagement_url(world, own.id), headers=owner_a).json["title"] == HOSTILE


def test_a_hostile_colour_stays_inside_its_attribute() -> None:
    points = [{"percent": 5 * k, "viewers_fraction": 1.0 - k / 20} for k in range(21)]
    body = render_retention(title="T", viewers=3, retention=points, color='"/><script>x</script>')
    root = ET.fromstring(body)
    assert "<script>" not in body
    assert {p.get("fill") for p in root.iter(f"{SVG}polygon")} == {'"/><script>x</script>'}


def test_no_viewers_chart_says_so() -> None:
    points = [{"percent": 5 * k, "viewers_fraction": 0.0} for k in range(21)]
    root = ET.fromstring(render_retention(title="Empty", viewers=0, retention=points, color="#000000"))
    assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "empty"] == ["No viewers yet"]
    assert list(root.iter(f"{SVG}polyline")) == []
