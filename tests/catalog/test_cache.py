"""The cached catalogue list (app/catalog/cache.py): same bytes as the schema, never stale after a write.

Rows changed through the factories (``sneak``) bypass every writer, so they show whether an answer
came from the cache: a cached page keeps the old value until a real writer (a route, the ingest
outcome) replaces the org's catalogue generation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask, jsonify
from flask.testing import FlaskClient
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import update
from sqlalchemy.orm import Session

from app import db, keys
from app.catalog import cache, routes, service
from app.catalog.schemas import CatalogDetailSchema, CatalogItemSchema
from app.content.models import Content
from app.media.ingest import complete
from app.media.job import IngestResult, Job, MediaSettings
from app.orgs.catalog_generation import replace_generations
from app.schemas import list_schema, page_envelope
from app.storage import keys as storage_keys
from tests.content.helpers import Staff, make_content, make_media, make_staff


@pytest.fixture()
def staff(db_session: Session) -> Staff:
    return make_staff(slug="bakery", name="The Bakery")


def published(staff: Staff, **kwargs: Any) -> Content:
    return make_content(staff.org.id, staff.creator.id, status="published", **kwargs)


def listing(client: FlaskClient, org: str = "bakery", query: str = "") -> Any:
    r = client.get(f"/api/v1/orgs/{org}/catalog{query}")
    assert r.status_code == 200, r.json
    return r


def titles(client: FlaskClient, org: str = "bakery", query: str = "") -> list[str]:
    return [item["title"] for item in listing(client, org, query).json["items"]]


def sneak(db_session: Session, content: Content, **values: Any) -> None:
    """Change a row behind every writer's back (no generation replaced)."""
    db_session.execute(update(Content).where(Content.id == content.id).values(**values))
    db_session.flush()


def test_a_warm_list_is_the_cached_body_with_the_schemas_bytes_and_headers(
    app: Flask, client: FlaskClient, db_session: Session, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = make_media(staff.org.id, staff.creator.id)
    bread = published(staff, media=media, title="Bread", tags=["yeast"], price_cents=500, category="baking")
    first = listing(client)
    assert first.headers["Cache-Control"] == "public, max-age=60"
    assert first.headers["Content-Type"] == "application/json"
    item = {
        **{c: getattr(bread, c) for c in ("id", "organization_id", "title", "slug", "description", "content_type")},
        **{c: getattr(bread, c) for c in ("price_cents", "currency", "category", "tags", "published_at")},
        "is_free": False,
        "duration_seconds": media.duration_seconds,
        "thumbnail_url": first.json["items"][0]["thumbnail_url"],
    }
    assert item["thumbnail_url"].startswith("http://localhost:5000/storage/download/")
    with app.test_request_context():
        envelope = page_envelope([item], 1, 20, 1)
        expected = jsonify(list_schema(CatalogItemSchema)().dump(envelope)).get_data()
    assert first.get_data() == expected  # what flask-smorest would have sent

    sneak(db_session, bread, title="Changed behind the cache")

    def not_parsed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a warm page is served before its query string is parsed")

    monkeypatch.setattr(routes.LIST_ARGS, "load", not_parsed)
    again = listing(client)
    assert again.get_data() == expected and again.headers["Cache-Control"] == "public, max-age=60"
    # Another process (its own pages) reads the same page from Redis.
    app.extensions["catalog_pages"].clear()
    assert listing(client).get_data() == expected


WRITES: dict[str, Callable[[FlaskClient, Staff, Content, Content], Any]] = {
    "edit title": lambda c, s, item, draft: c.patch(
        f"/api/v1/content/{item.id}", json={"title": "Sourdough"}, headers=s.owner.headers
    ),
    "price change": lambda c, s, item, draft: c.patch(
        f"/api/v1/content/{item.id}", json={"price_cents": 0}, headers=s.owner.headers
    ),
    "media swap": lambda c, s, item, draft: c.patch(
        f"/api/v1/content/{item.id}",
        json={"media_id": str(make_media(s.org.id, s.creator.id, duration_seconds=99).id)},
        headers=s.owner.headers,
    ),
    "publish": lambda c, s, item, draft: c.post(f"/api/v1/content/{draft.id}/publish", headers=s.owner.headers),
    "unpublish": lambda c, s, item, draft: c.post(f"/api/v1/content/{item.id}/unpublish", headers=s.owner.headers),
    "archive": lambda c, s, item, draft: c.post(f"/api/v1/content/{item.id}/archive", headers=s.owner.headers),
    "delete": lambda c, s, item, draft: c.delete(f"/api/v1/content/{item.id}", headers=s.owner.headers),
}


def view(client: FlaskClient, query: str = "") -> list[tuple[Any, ...]]:
    return [
        (i["title"], i["price_cents"], i["is_free"], i["duration_seconds"])
        for i in listing(client, query=query).json["items"]
    ]


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("query", ["", "?q=bread&sort=title&order=asc"])
def test_every_content_writer_changes_the_next_answer(
    client: FlaskClient, db_session: Session, staff: Staff, write: str, query: str
) -> None:
    item = published(staff, title="Bread", price_cents=500)
    draft = make_content(staff.org.id, staff.creator.id, title="Bread rolls", price_cents=500)
    before = view(client, query)
    assert before == [("Bread", 500, False, 4)]

    r = WRITES[write](client, staff, item, draft)
    assert r.status_code in (200, 204), r.json

    expected = {
        "edit title": [("Sourdough", 500, False, 4)] if not query else [],
        "price change": [("Bread", 0, True, 4)],
        "media swap": [("Bread", 500, False, 99)],
        "publish": [("Bread rolls", 500, False, 4), ("Bread", 500, False, 4)],
        "unpublish": [],
        "archive": [],
        "delete": [],
    }[write]
    if write == "publish" and query:
        expected = sorted(expected)
    assert view(client, query) == expected


def test_a_media_item_that_becomes_ready_changes_the_catalogue(
    app: Flask, client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: list[Any]
) -> None:
    media = make_media(staff.org.id, staff.creator.id, ready=False, status="processing", job_id="j1", attempts=1)
    published(staff, title="Bread", media=media)
    item = listing(client).json["items"][0]
    assert (item["duration_seconds"], item["thumbnail_url"]) == (None, None)

    with app.app_context():
        result = IngestResult(
            renditions=["360p"],
            hls_master_key=storage_keys.hls_master_key(staff.org.id, media.id, 1),
            hls_preview_key=storage_keys.hls_preview_playlist_key(staff.org.id, media.id, 1),
            duration=42.0,
            thumbnail_key=storage_keys.thumbnail_key(staff.org.id, media.id, 1),
            width=640,
            height=360,
        )
        assert complete(db.session, Job.from_media(media, "j1"), result, MediaSettings.from_config(app.config))
        db.session.commit()

    item = listing(client).json["items"][0]
    assert item["duration_seconds"] == 42 and item["thumbnail_url"]


def test_an_org_slug_change_moves_the_catalogue(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    published(staff, title="Bread")
    assert titles(client) == ["Bread"] and titles(client, str(staff.org.id)) == ["Bread"]
    r = client.patch(f"/api/v1/orgs/{staff.org.id}", json={"slug": "new-bakery"}, headers=staff.owner.headers)
    assert r.status_code == 200, r.json
    gone = client.get("/api/v1/orgs/bakery/catalog")
    assert gone.status_code == 404 and gone.json["error"]["code"] == "ORG_NOT_FOUND"
    assert titles(client, "new-bakery") == ["Bread"] and titles(client, str(staff.org.id)) == ["Bread"]
    # A new org that takes the old slug gets its own catalogue, not the cached one.
    make_staff(slug="bakery")
    assert titles(client) == []


def test_a_write_racing_a_fill_never_leaves_a_stale_page(
    client: FlaskClient, db_session: Session, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    bread = published(staff, title="Bread")
    build = service.build_list
    raced: list[bool] = []

    def build_then_a_write_commits(*args: Any, **kwargs: Any) -> Any:
        built = build(*args, **kwargs)  # the old rows, read after the generation
        if not raced:
            raced.append(True)
            # A writer commits its change and replaces the generation (its after-commit) before this
            # fill stores the old rows. (The row itself is changed just after this request: this
            # request's own savepoint is rolled back at its end, and nothing reads in between.)
            replace_generations([staff.org.id])
        return built

    monkeypatch.setattr(service, "build_list", build_then_a_write_commits)
    assert titles(client) == ["Bread"]  # (began before the write: the old answer is right for it)
    sneak(db_session, bread, title="Sourdough")
    assert titles(client) == ["Sourdough"]
    assert titles(client) == ["Sourdough"]


def test_pages_are_per_org(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    other = make_staff(slug="cafe")
    bread = published(staff, title="Bread")
    coffee = published(other, title="Coffee")
    assert titles(client) == ["Bread"] and titles(client, "cafe") == ["Coffee"]

    sneak(db_session, coffee, title="Tea")  # (not announced: the cafe's page stays cached)
    r = client.patch(f"/api/v1/content/{bread.id}", json={"title": "Sourdough"}, headers=staff.owner.headers)
    assert r.status_code == 200
    assert titles(client) == ["Sourdough"]
    assert titles(client, "cafe") == ["Coffee"]  # the bakery's write left the cafe's page alone
    assert cache.page_key("bakery", b"") != cache.page_key("cafe", b"")


def test_another_process_sees_the_write_at_once(
    app: Flask, client: FlaskClient, db_session: Session, staff: Staff, as_other_process: Any
) -> None:
    bread = published(staff, title="Bread")
    mine = app.extensions["catalog_pages"] if "catalog_pages" in app.extensions else cache.LocalPages()
    theirs = cache.LocalPages()

    @contextmanager
    def other() -> Iterator[None]:
        with as_other_process():
            app.extensions["catalog_pages"] = theirs
            try:
                yield
            finally:
                app.extensions["catalog_pages"] = mine

    with other():
        assert titles(client) == ["Bread"] and titles(client) == ["Bread"]  # warm there
    r = client.patch(f"/api/v1/content/{bread.id}", json={"title": "Sourdough"}, headers=staff.owner.headers)
    assert r.status_code == 200
    with other():
        assert titles(client) == ["Sourdough"]


def test_a_flushed_redis_never_revives_an_old_page(
    app: Flask, client: FlaskClient, db_session: Session, staff: Staff, redis: redis_lib.Redis
) -> None:
    bread = published(staff, title="Bread")
    assert titles(client) == ["Bread"]
    sneak(db_session, bread, title="Sourdough")
    redis.flushdb()  # the generation is gone; this process still holds the page
    assert titles(client) == ["Sourdough"] and titles(client) == ["Sourdough"]
    assert redis.get(keys.catalog_generation(staff.org.id))  # a fresh random one, never "absent"


def test_an_unknown_org_is_not_cached(client: FlaskClient, db_session: Session, redis: redis_lib.Redis) -> None:
    assert client.get("/api/v1/orgs/nowhere/catalog").status_code == 404
    assert not redis.keys(keys.CATALOG_PAGE_PREFIX + "*")
    make_staff(slug="nowhere")
    assert titles(client, "nowhere") == []
    assert [key.decode() for key in redis.keys(keys.CATALOG_PAGE_PREFIX + "*")] == [cache.page_key("nowhere", b"")]


def test_pages_are_per_query_string_and_bad_queries_still_fail(
    client: FlaskClient, db_session: Session, staff: Staff
) -> None:
    bread = published(staff, title="Bread", price_cents=500)
    published(staff, title="Apple pie", price_cents=100)
    assert titles(client) == ["Apple pie", "Bread"] == titles(client, query="?order=desc&sort=published_at")
    assert titles(client, query="?sort=title&order=asc") == ["Apple pie", "Bread"]
    assert titles(client, query="?q=bread") == ["Bread"]
    for bad in ("?per_page=101", "?sort=created_at", "?q="):
        r = client.get(f"/api/v1/orgs/bakery/catalog{bad}")
        assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", bad
    r = client.patch(f"/api/v1/content/{bread.id}", json={"title": "Sourdough"}, headers=staff.owner.headers)
    assert r.status_code == 200
    assert titles(client, query="?q=bread") == [] and titles(client, query="?q=sour") == ["Sourdough"]
    assert titles(client, query="?sort=title&order=asc") == ["Apple pie", "Sourdough"]


def test_an_item_is_cached_with_a_fresh_preview_token_and_follows_its_writers(
    app: Flask, client: FlaskClient, db_session: Session, staff: Staff
) -> None:
    bread = published(staff, title="Bread")
    first = client.get(f"/api/v1/catalog/{bread.id}")
    assert first.status_code == 200 and first.headers["Cache-Control"] == "public, max-age=60"
    body = first.json
    with app.test_request_context():  # the schema's own bytes for the same values
        values = {**body, "published_at": bread.published_at}
        values["preview"] = {**body["preview"], "expires_at": datetime.fromisoformat(body["preview"]["expires_at"])}
        dumped = CatalogDetailSchema().dump(values)
        assert jsonify(dumped).get_data() == first.get_data()

    sneak(db_session, bread, title="Changed behind the cache")
    second = client.get(f"/api/v1/catalog/{bread.id}").json
    assert second["title"] == "Bread"  # cached facts ...
    assert second["preview"]["manifest_url"] != body["preview"]["manifest_url"] or (
        second["preview"]["expires_at"] == body["preview"]["expires_at"]
    )  # ... and a token minted per request (the same only within one second)

    r = client.patch(f"/api/v1/orgs/{staff.org.id}", json={"name": "The Good Bakery"}, headers=staff.owner.headers)
    assert r.status_code == 200
    after = client.get(f"/api/v1/catalog/{bread.id}").json
    assert after["organization"]["name"] == "The Good Bakery" and after["title"] == "Changed behind the cache"

    r = client.post(f"/api/v1/content/{bread.id}/unpublish", headers=staff.owner.headers)
    assert r.status_code == 200
    gone = client.get(f"/api/v1/catalog/{bread.id}")
    assert gone.status_code == 404 and gone.json["error"]["code"] == "CONTENT_NOT_FOUND"


def test_without_redis_the_catalogue_reads_postgres(
    client: FlaskClient, db_session: Session, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    bread = published(staff, title="Bread")
    assert titles(client) == ["Bread"]  # (a page cached while Redis was up)
    down = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(cache, "get_redis", lambda: down)
    monkeypatch.setattr(cache, "get_near_cache", lambda: None)
    sneak(db_session, bread, title="Sourdough")
    assert titles(client) == ["Sourdough"]  # nothing is served without a current generation
    assert client.get(f"/api/v1/catalog/{bread.id}").json["title"] == "Sourdough"
    down.close()


def test_totals_whether_or_not_the_first_page_is_full(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    for title in ("Bread", "Bread rolls", "Cake"):
        published(staff, title=title)
    counts = {
        query: (len(body["items"]), body["total"], body["pages"])
        for query in ("", "?q=bread", "?per_page=2", "?per_page=2&page=2", "?q=pie", "?per_page=3")
        for body in [listing(client, query=query).json]
    }
    assert counts == {
        "": (3, 3, 1),
        "?q=bread": (2, 2, 1),  # a partial first page is the whole answer (no count)
        "?per_page=2": (2, 3, 2),  # a full one is counted
        "?per_page=2&page=2": (1, 3, 2),
        "?q=pie": (0, 0, 0),
        "?per_page=3": (3, 3, 1),
    }
    missing = client.get("/api/v1/orgs/no-such-org/catalog?q=bread")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "ORG_NOT_FOUND"


def test_a_full_page_cache_drops_its_oldest_pages_only() -> None:
    body = b"x" * 1000
    pages = cache.LocalPages(max_bytes=8 * (1000 + 40 + cache._ENTRY_OVERHEAD))
    for n in range(8):
        pages.keep(f"page-{n:02d}", cache.Page("org", b"gen", body, time.monotonic() + 60))
    assert all(pages.get(f"page-{n:02d}") is not None for n in range(8))
    pages.keep("page-08", cache.Page("org", b"gen", body, time.monotonic() + 60))  # no room: the oldest go
    kept = [n for n in range(9) if pages.get(f"page-{n:02d}") is not None]
    assert kept[-1] == 8 and kept[0] > 0 and len(kept) >= 6  # the newest stay
    assert pages._bytes == len(kept) * (1000 + 7 + cache._ENTRY_OVERHEAD)  # the byte count follows
