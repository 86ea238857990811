"""The demo audience of ``codex seed``: viewers of the free item with a believable retention curve
and a few days of watch statistics, read back through the engagement endpoint (api.md §11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app import seed
from tests.identity.helpers import auth, signed_in
from tests.seed.test_seed import fast_passwords, progress, seeded  # noqa: F401 - fixtures


def test_the_free_item_has_an_audience(
    app: Flask,
    client: FlaskClient,
    db_session: Session,
    seeded: seed.SeedReport,  # noqa: F811
) -> None:
    from app.identity.models import User

    owner = db_session.get(User, seeded.accounts[0].user_id)
    free = seeded.content["free"]
    url = f"/api/v1/orgs/{seeded.organization_id}/dashboard/content/{free.id}/engagement"
    body: dict[str, Any] = client.get(url, headers=auth(signed_in(owner))).json
    furthest = seed.AUDIENCE_FURTHEST
    duration = seeded.media["audio"].duration_seconds
    assert (body["viewers"], body["duration_seconds"]) == (len(furthest), duration)
    assert body["completions"] == sum(1 for f in furthest if f >= duration)
    fractions = [p["viewers_fraction"] for p in body["retention"]]
    assert fractions[0] == 1.0 and fractions[-1] == round(body["completions"] / len(furthest), 4)
    assert len(set(fractions)) >= 4  # a curve, not a cliff
    assert fractions == sorted(fractions, reverse=True)
    today = datetime.now(UTC).date()
    active = [d for d in body["daily"] if d["views_started"]]
    assert [d["date"] for d in active] == [
        (today - timedelta(days=seed.AUDIENCE_DAYS - 1 - i)).isoformat() for i in range(seed.AUDIENCE_DAYS)
    ]
    assert sum(d["views_started"] for d in active) == len(furthest)
    assert sum(d["seconds_watched"] for d in active) == body["seconds_watched"] == sum(furthest)
    svg = client.get(url.replace("/engagement", "/retention.svg"), headers=auth(signed_in(owner)))
    assert svg.status_code == 200 and b"30 viewers" in svg.data
