"""GET /me/library (api.md §10): rows, filters, sorts, paging, the flush before the query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.access.models import PlaybackProgress
from app.content.models import Content
from tests import factories
from tests.access.helpers import World, give_comp, give_purchase, headers


def library(client: FlaskClient, user: Any, **query: Any) -> Any:
    return client.get("/api/v1/me/library", headers=headers(user), query_string=query)


def stored_progress(user_id: Any, content: Content, position: int, *, completed: bool = False,
                    ago: timedelta = timedelta(0)) -> None:  # fmt: skip
    when = datetime.now(UTC) - ago
    factories_session = factories.current_session()
    factories_session.add(
        PlaybackProgress(
            user_id=user_id, content_id=content.id, position_seconds=position, duration_seconds=600,
            completed=completed, completed_at=when if completed else None, client_ts=when, updated_at=when,
        )
    )  # fmt: skip
    factories_session.flush()


@pytest.fixture()
def shelf(world: World, db_session: Session) -> dict[str, Content]:
    """The buyer's library: purchased (world.content, in progress), comp (completed), draft grant
    (not started), free started; plus rows that must not appear."""
    buyer = world.buyer
    now = datetime.now(UTC)
    comp = world.add_content(title="Alpha Comp")
    give_comp(buyer, comp).granted_at = now - timedelta(days=3)
    draft = world.add_content(title="Zulu Draft", status="draft", published_at=None)
    give_purchase(world, buyer, draft)
    free_started = world.add_content(title="Mike Free", price_cents=None)
    free_unstarted = world.add_content(title="Free Unstarted", price_cents=0)
    revoked = world.add_content(title="Revoked")
    give_comp(buyer, revoked, revoked=True)
    deleted = world.add_content(title="Deleted", deleted_at=now)
    give_comp(buyer, deleted)
    someone_else = world.add_content(title="Someone Else's")
    give_comp(world.stranger, someone_else)
    stored_progress(buyer.id, world.content, 120, ago=timedelta(hours=1))
    stored_progress(buyer.id, comp, 600, completed=True, ago=timedelta(hours=2))
    stored_progress(buyer.id, free_started, 30, ago=timedelta(minutes=5))
    db_session.flush()
    return {
        "paid": world.content, "comp": comp, "draft": draft, "free": free_started,
        "free_unstarted": free_unstarted, "revoked": revoked, "deleted": deleted,
    }  # fmt: skip


def ids(body: dict[str, Any]) -> list[str]:
    return [item["content"]["id"] for item in body["items"]]


def test_library_rows_and_item_shape(client: FlaskClient, world: World, shelf: dict[str, Content]) -> None:
    response = library(client, world.buyer)
    assert response.status_code == 200
    body = response.json
    # recent = coalesce(progress.updated_at, granted_at) desc: free (5 min), draft grant (now), …
    assert (body["total"], body["page"], body["per_page"], body["pages"]) == (4, 1, 20, 1)
    assert set(ids(body)) == {str(shelf[k].id) for k in ("paid", "comp", "draft", "free")}
    by_id = {item["content"]["id"]: item for item in body["items"]}
    paid = by_id[str(shelf["paid"].id)]
    assert set(paid) == {"content", "available", "access", "progress"}
    assert paid["content"] == {
        "id": str(shelf["paid"].id), "organization_id": str(world.org.id), "title": "Knife Skills",
        "slug": shelf["paid"].slug, "content_type": "video", "duration_seconds": 18,
        "thumbnail_url": paid["content"]["thumbnail_url"], "status": "published",
    }  # fmt: skip
    assert paid["content"]["thumbnail_url"].startswith("http://localhost:5000/storage/download/")
    assert paid["available"] is True and paid["access"]["reason"] == "purchased"
    assert paid["access"]["granted_at"].endswith("Z")
    assert paid["progress"]["position_seconds"] == 120 and paid["progress"]["percent_complete"] == 20
    assert by_id[str(shelf["comp"].id)]["access"]["reason"] == "complimentary"
    draft = by_id[str(shelf["draft"].id)]
    assert draft["available"] is False and draft["progress"] is None
    free = by_id[str(shelf["free"].id)]
    assert free["access"] == {"reason": "free", "granted_at": None} and free["available"] is True


def test_library_filters(client: FlaskClient, world: World, shelf: dict[str, Content]) -> None:
    expected = {
        "in_progress": {"paid", "free"},
        "completed": {"comp"},
        "not_started": {"draft"},
        "all": {"paid", "comp", "draft", "free"},
    }
    for name, keys in expected.items():
        body = library(client, world.buyer, filter=name).json
        assert set(ids(body)) == {str(shelf[k].id) for k in keys}, name
        assert body["total"] == len(keys)


def test_library_not_started_includes_position_zero(
    client: FlaskClient, world: World, shelf: dict[str, Content], db_session: Session
) -> None:
    row = db_session.get(PlaybackProgress, (world.buyer.id, shelf["paid"].id))
    assert row is not None
    row.position_seconds = 0
    db_session.flush()
    assert set(ids(library(client, world.buyer, filter="not_started").json)) == {
        str(shelf["draft"].id), str(shelf["paid"].id),
    }  # fmt: skip


def test_library_sorts_and_pages(client: FlaskClient, world: World, shelf: dict[str, Content]) -> None:
    s = shelf
    assert ids(library(client, world.buyer, sort="title").json) == [
        str(s["comp"].id), str(s["paid"].id), str(s["free"].id), str(s["draft"].id),
    ]  # Alpha Comp, Knife Skills, Mike Free, Zulu Draft  # fmt: skip
    # purchased_at = granted_at desc (free rows have none: last); draft/paid were granted "now".
    by_grant = ids(library(client, world.buyer, sort="purchased_at").json)
    assert by_grant[2:] == [str(s["comp"].id), str(s["free"].id)]
    # recent: draft (granted now) > free (5 min) > paid (1 h) > comp (2 h)
    recent = ids(library(client, world.buyer).json)
    assert recent == [str(s["draft"].id), str(s["free"].id), str(s["paid"].id), str(s["comp"].id)]
    page1 = library(client, world.buyer, per_page=3).json
    page2 = library(client, world.buyer, per_page=3, page=2).json
    assert (page1["pages"], len(page1["items"]), len(page2["items"])) == (2, 3, 1)
    assert ids(page1) + ids(page2) == recent
    assert library(client, world.buyer, page=9).json["items"] == []


@pytest.mark.parametrize(
    "query",
    [{"filter": "watched"}, {"sort": "price"}, {"page": "0"}, {"per_page": "101"}, {"order": "asc"}, {"q": "x"}],
)
def test_library_bad_query_is_400(client: FlaskClient, world: World, query: dict[str, str]) -> None:
    response = library(client, world.buyer, **query)
    assert response.status_code == 400 and response.json["error"]["code"] == "VALIDATION_ERROR"


def test_library_needs_a_session(client: FlaskClient) -> None:
    assert client.get("/api/v1/me/library").status_code == 401


def test_library_flushes_the_callers_buffer_first(
    client: FlaskClient, world: World, db_session: Session, redis: Any
) -> None:
    other = world.add_content(title="Other", price_cents=None)
    hdrs = headers(world.buyer)
    for content, position in [(world.content, 600), (other, 40)]:
        response = client.put(
            f"/api/v1/content/{content.id}/progress", json={"position_seconds": position, "duration_seconds": 600},
            headers=hdrs,
        )  # fmt: skip
        assert response.status_code == 204
    # Another user's buffered progress is not flushed by this request.
    give_comp(world.stranger, world.content)
    client.put(
        f"/api/v1/content/{world.content.id}/progress", json={"position_seconds": 9, "duration_seconds": 600},
        headers=headers(world.stranger),
    )  # fmt: skip
    body = library(client, world.buyer, filter="completed").json
    assert ids(body) == [str(world.content.id)] and body["items"][0]["progress"]["completed"] is True
    assert ids(library(client, world.buyer, filter="in_progress").json) == [str(other.id)]
    db_session.expire_all()
    flushed = {(r.user_id, r.content_id) for r in db_session.scalars(select(PlaybackProgress))}
    assert flushed == {(world.buyer.id, world.content.id), (world.buyer.id, other.id)}
    assert redis.scard(f"pb:dirty:u:{world.buyer.id}") == 0
    assert redis.smembers("pb:dirty") == {f"{world.stranger.id}:{world.content.id}".encode()}
