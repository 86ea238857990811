"""Public catalogue (api.md §8): published only, no full-media URLs, preview token, cacheable."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlalchemy.orm import Session

from app.content.models import Content
from app.security.hls_tokens import verify_hls_token
from tests.content.helpers import Staff, make_content, make_media, make_staff


@pytest.fixture()
def staff(db_session: Session) -> Staff:
    return make_staff(slug="bakery", name="The Bakery")


def published(staff: Staff, **kwargs: Any) -> Content:
    return make_content(staff.org.id, staff.creator.id, status="published", **kwargs)


def catalog(client: FlaskClient, org: str = "bakery", query: str = "") -> Any:
    return client.get(f"/api/v1/orgs/{org}/catalog{query}")


def test_catalogue_shows_only_published_live_items(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    now = datetime.now(UTC)
    old = published(staff, title="Old", published_at=now - timedelta(days=2))
    new = published(staff, title="New", published_at=now - timedelta(days=1), price_cents=0, visibility="public")
    make_content(staff.org.id, staff.creator.id, title="Draft")
    make_content(staff.org.id, staff.creator.id, title="Archived", status="archived", archived_at=now)
    published(staff, title="Deleted", deleted_at=func.now())
    published(make_staff(), title="Elsewhere")

    r = catalog(client)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "public, max-age=60"
    assert [item["id"] for item in r.json["items"]] == [str(new.id), str(old.id)]
    assert r.json["total"] == 2 and r.json["pages"] == 1
    item = r.json["items"][0]
    assert set(item) == {
        "id", "organization_id", "title", "slug", "description", "content_type", "price_cents", "currency",
        "is_free", "category", "tags", "duration_seconds", "thumbnail_url", "published_at",
    }  # fmt: skip
    assert item["is_free"] is True and item["duration_seconds"] == 4
    assert item["thumbnail_url"].startswith("http://localhost:5000/storage/download/")
    # The org id resolves too; an unknown slug is ORG_NOT_FOUND.
    assert catalog(client, str(staff.org.id)).json["total"] == 2
    missing = catalog(client, "no-such-org")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "ORG_NOT_FOUND"
    assert "hls" not in r.get_data(as_text=True) and "original" not in r.get_data(as_text=True)


def test_catalogue_filters_and_sorts(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    bread = published(staff, title="Bread", category="baking", tags=["yeast", "basics"], price_cents=500)
    cake = published(
        staff, title="Cake", description="50% sugar", tags=["sweet"], price_cents=None, visibility="public"
    )
    tour = published(
        staff, title="Tour", media=make_media(staff.org.id, staff.creator.id, media_type="audio"), price_cents=99
    )

    def ids(query: str) -> list[str]:
        r = catalog(client, query=query)
        assert r.status_code == 200, r.json
        return [item["id"] for item in r.json["items"]]

    assert ids("?sort=title&order=asc") == [str(bread.id), str(cake.id), str(tour.id)]
    assert ids("?sort=price_cents&order=asc") == [str(cake.id), str(tour.id), str(bread.id)]
    assert ids("?sort=price_cents") == [str(bread.id), str(tour.id), str(cake.id)]
    assert ids("?q=bre") == [str(bread.id)] and ids("?q=50%25") == [str(cake.id)] and ids("?q=_") == []
    assert ids("?content_type=audio") == [str(tour.id)]
    assert ids("?category=baking") == [str(bread.id)]
    assert ids("?tag=YEAST") == [str(bread.id)] and ids("?tag=none") == []
    assert ids("?per_page=1&page=3") == ids("?sort=published_at&order=desc")[2:]
    assert catalog(client, query="?page=9").json["items"] == []
    for bad in ("?sort=created_at", "?order=sideways", "?q=", "?content_type=text", "?x=1", "?per_page=101"):
        r = catalog(client, query=bad)
        assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", bad


def test_detail_has_org_and_a_preview_token(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    content = published(staff, title="Bread")
    r = client.get(f"/api/v1/catalog/{content.id}")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "public, max-age=60"
    body = r.json
    assert body["organization"] == {"id": str(staff.org.id), "name": "The Bakery", "slug": "bakery"}
    manifest = body["preview"]["manifest_url"]
    parts = urlsplit(manifest)
    assert manifest.startswith("http://localhost:5000/api/v1/stream/") and parts.path.endswith("/master.m3u8")
    token = parts.path.split("/")[4]
    with client.application.app_context():
        claims = verify_hls_token(token)
    assert (claims.content_id, claims.media_id, claims.user_id, claims.scope) == (
        content.id,
        content.media_id,
        None,
        "preview",
    )
    expires = datetime.fromisoformat(body["preview"]["expires_at"].replace("Z", "+00:00"))
    assert expires == claims.expires_at
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    text = json.dumps(body)
    assert "original" not in text and "/hls/" not in text


def test_detail_without_preview(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    media = make_media(staff.org.id, staff.creator.id)
    media.hls_preview_key = None
    media.status = "failed"  # the ready CHECK needs the preview key; a hand-made row without one
    db_session.flush()
    content = published(staff, media=media)
    r = client.get(f"/api/v1/catalog/{content.id}")
    assert r.status_code == 200 and r.json["preview"] is None


@pytest.mark.parametrize("state", ["draft", "archived", "deleted", "missing", "malformed"])
def test_detail_is_404_unless_published(client: FlaskClient, db_session: Session, staff: Staff, state: str) -> None:
    if state == "missing":
        path = str(uuid.uuid4())
    elif state == "malformed":
        path = "not-a-uuid"
    else:
        kwargs: dict[str, Any] = {"status": "draft"}
        if state == "archived":
            kwargs = {"status": "archived", "archived_at": datetime.now(UTC)}
        if state == "deleted":
            kwargs = {"status": "published", "deleted_at": func.now()}
        path = str(make_content(staff.org.id, staff.creator.id, **kwargs).id)
    r = client.get(f"/api/v1/catalog/{path}")
    assert r.status_code == 404 and r.json["error"]["code"] == "CONTENT_NOT_FOUND"


def test_catalogue_operations_are_documented(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    listing = paths["/api/v1/orgs/{org_slug}/catalog"]["get"]
    detail = paths["/api/v1/catalog/{content_id}"]["get"]
    assert listing["summary"] and {"400", "404"} <= set(listing["responses"])
    assert detail["summary"] and "404" in detail["responses"]
    assert "Cache-Control" in listing["responses"]["200"]["headers"]
