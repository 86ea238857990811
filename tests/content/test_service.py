"""Content edge cases: slug races on the partial unique index, platform owners."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.content import service
from app.content import slugs as slug_module
from app.content.models import Content
from tests.content.helpers import Staff, caller, make_content, make_media, make_staff
from tests.factories import UserFactory


@pytest.fixture()
def staff(db_session: Session) -> Staff:
    return make_staff()


def post(client: FlaskClient, staff: Staff, **body: Any) -> Any:
    media = make_media(staff.org.id, staff.creator.id)
    body = {"title": "Bread", "content_type": "video", "media_id": str(media.id), **body}
    return client.post(f"/api/v1/orgs/{staff.org.id}/content", json=body, headers=staff.creator.headers)


def test_a_generated_slug_lost_to_a_concurrent_insert_takes_the_next_one(
    client: FlaskClient, db_session: Session, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_content(staff.org.id, staff.creator.id, title="Bread", slug="bread")
    real = slug_module.first_free_slug
    calls: list[str] = []

    def stale_then_real(session: Session, organization_id: Any, base: str) -> str:
        # The first look ran "before" the other insert committed: it still saw "bread" free.
        calls.append(base)
        return "bread" if len(calls) == 1 else real(session, organization_id, base)

    monkeypatch.setattr(service, "first_free_slug", stale_then_real)
    r = post(client, staff)
    assert r.status_code == 201 and r.json["slug"] == "bread-2" and calls == ["bread", "bread"]


def test_an_explicit_slug_lost_to_a_concurrent_insert_is_409(
    client: FlaskClient, db_session: Session, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_content(staff.org.id, staff.creator.id, slug="bread")
    monkeypatch.setattr(service, "slug_taken", lambda *args, **kwargs: False)
    r = post(client, staff, slug="bread")
    assert r.status_code == 409 and r.json["error"]["code"] == "SLUG_TAKEN"
    content = make_content(staff.org.id, staff.creator.id, slug="rolls")
    r = client.patch(f"/api/v1/content/{content.id}", json={"slug": "bread"}, headers=staff.creator.headers)
    assert r.status_code == 409 and r.json["error"]["code"] == "SLUG_TAKEN"
    slugs = db_session.scalars(select(Content.slug).where(Content.organization_id == staff.org.id)).all()
    assert sorted(slugs) == ["bread", "rolls"]


def test_platform_owner_acts_in_any_org(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    boss = caller(UserFactory(role="platform_owner"))
    content = make_content(staff.org.id, staff.creator.id)
    r = client.patch(f"/api/v1/content/{content.id}", json={"title": "Edited"}, headers=boss.headers)
    assert r.status_code == 200 and r.json["title"] == "Edited"
    r = client.get(f"/api/v1/orgs/{staff.org.id}/media", headers=boss.headers)
    assert r.status_code == 200 and r.json["total"] == 1
