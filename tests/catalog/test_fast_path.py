"""The catalogue fast path (app/catalog/fast_path.py): a warm anonymous page answered below Flask
exactly as the route answers it, every write seen at once, limits counted once per client IP, and
everything else left to the route."""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from app import metrics
from app.catalog import fast_path as catalog_fast_path
from app.catalog.fast_path import CatalogFastPath
from app.content.models import Content
from app.identity.sessions import COOKIE_NAME
from tests import fast_paths
from tests.content.helpers import Staff, make_content, make_staff
from tests.fast_paths import ALLOWED_ORIGIN, layer_of, request_lines
from tests.identity.conftest import bound_client
from tests.identity.helpers import auth, make_user, signed_in

LIST = "/api/v1/orgs/bakery/catalog"


@pytest.fixture()
def staff(db_session: Session) -> Staff:
    return make_staff(slug="bakery", name="The Bakery")


def published(staff: Staff, **kwargs: Any) -> Content:
    return make_content(staff.org.id, staff.creator.id, status="published", **kwargs)


def catalog_path(app: Flask) -> CatalogFastPath:
    """The catalogue middleware in the app's WSGI chain."""
    return layer_of(app, CatalogFastPath)


def flask_only(app: Flask) -> AbstractContextManager[None]:
    """Inside, catalogue pages skip the fast path (as with FAST_PATH_ENABLED off)."""
    return fast_paths.flask_only(catalog_path(app))


def get_fast(client: FlaskClient, path: str = LIST, **headers: str) -> TestResponse:
    """A page answered below Flask, asking again until one is: the first is the route's (it
    builds the page and keeps it in this process)."""
    middleware = catalog_path(client.application)
    return fast_paths.answered_fast(middleware, "answered", lambda: client.get(path, headers=headers), 200, "page")


def header_bag(response: TestResponse) -> Counter[tuple[str, str]]:
    return fast_paths.header_bag(response, fast_paths.LIMIT_COUNTERS)


@pytest.mark.parametrize(
    ("query", "extra"),
    [
        ("", {}),
        ("?sort=price_cents&order=asc", {}),
        ("?q=bread", {"Origin": ALLOWED_ORIGIN}),
        ("", {"Origin": "https://evil.example"}),
        ("", {"X-Request-ID": "visit-9"}),
    ],
    ids=["plain", "sorted", "search-allowed-origin", "other-origin", "request-id"],
)
def test_a_warm_page_is_answered_below_flask_exactly_as_the_route_answers(
    app: Flask, client: FlaskClient, staff: Staff, query: str, extra: dict[str, str]
) -> None:
    published(staff, title="Bread", price_cents=500)
    published(staff, title="Brioche", price_cents=700)
    fast = get_fast(client, LIST + query, **extra)
    before = catalog_path(app).answered
    with flask_only(app):
        routed = client.get(LIST + query, headers=extra)
    assert catalog_path(app).answered == before
    assert (fast.status_code, fast.data) == (routed.status_code, routed.data)
    assert fast.json["items"] and fast.headers["Cache-Control"] == "public, max-age=60"
    assert header_bag(fast) == header_bag(routed)
    if "X-Request-ID" in extra:
        assert fast.headers["X-Request-ID"] == routed.headers["X-Request-ID"] == extra["X-Request-ID"]


def test_a_write_reaches_the_fast_path_at_once(app: Flask, client: FlaskClient, staff: Staff) -> None:
    bread = published(staff, title="Bread")
    assert [i["title"] for i in get_fast(client).json["items"]] == ["Bread"]
    renamed = client.patch(f"/api/v1/content/{bread.id}", json={"title": "Rye"}, headers=staff.owner.headers)
    assert renamed.status_code == 200, renamed.json
    assert [i["title"] for i in client.get(LIST).json["items"]] == ["Rye"]
    assert [i["title"] for i in get_fast(client).json["items"]] == ["Rye"]


def test_everything_else_is_the_routes_answer(app: Flask, client: FlaskClient, staff: Staff) -> None:
    published(staff, title="Bread")
    get_fast(client)
    before = catalog_path(app).answered
    token = signed_in(make_user())
    assert client.get(LIST, headers=auth(token)).status_code == 200  # signed in: keyed by user
    client.set_cookie(COOKIE_NAME, token)
    assert client.get(LIST).status_code == 200
    client.delete_cookie(COOKIE_NAME)
    assert client.get(LIST + "?page=2").status_code == 200  # a query not held yet: the route's
    assert client.get(LIST + "?page=0").status_code == 400  # (never held: it does not parse)
    assert client.get("/api/v1/orgs/nobody/catalog").status_code == 404
    assert client.post(LIST, json={}).status_code == 405
    assert client.head(LIST).status_code == 200
    assert catalog_path(app).answered == before


def test_with_rate_limits_on_every_page_is_counted_once_per_ip_and_the_301st_is_refused(
    app_factory: Any, db_session: Session, staff: Staff
) -> None:
    published(staff, title="Bread")
    limited = app_factory(RATELIMIT_ENABLED=True)
    with bound_client(limited, db_session) as client:
        middleware = catalog_path(limited)
        assert middleware.near.wait_usable(5.0)
        remaining = []
        for _ in range(300):
            response = client.get(LIST)
            assert response.status_code == 200 and response.headers["X-RateLimit-Limit"] == "300"
            remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert remaining == list(range(299, -1, -1))  # each counted once, whichever path answered
        assert middleware.answered >= 1
        other_ip = client.get(LIST, environ_overrides={"REMOTE_ADDR": "10.9.9.9"})
        assert other_ip.status_code == 200 and other_ip.headers["X-RateLimit-Remaining"] == "299"
        for _ in range(8):  # every further one is refused; until one is refused below Flask
            assert middleware.near.wait_usable(5.0)
            refused = client.get(LIST)
            assert refused.status_code == 429
            if middleware.refused:
                break
        with flask_only(limited):
            routed = client.get(LIST)
    assert middleware.refused == 1
    for response in (refused, routed):
        assert response.status_code == 429 and response.json["error"]["code"] == "RATE_LIMITED"
        assert int(response.headers["Retry-After"]) >= 1 and response.headers["Cache-Control"] == "no-store"
    assert {k for k, _ in header_bag(refused)} == {k for k, _ in header_bag(routed)}


def test_the_fast_path_counts_in_the_request_metric_and_logs_the_routes_line(
    app_factory: Any, db_session: Session, staff: Staff
) -> None:
    published(staff, title="Bread")
    verbose = app_factory(LOG_LEVEL="INFO")
    labels = ("GET", catalog_fast_path.ENDPOINT, "200")
    with request_lines() as lines, bound_client(verbose, db_session) as client:
        get_fast(client)
        counted = metrics.HTTP_REQUESTS.labels(*labels)._value.get()
        get_fast(client, **{"X-Request-ID": "list-fast"})
        assert metrics.HTTP_REQUESTS.labels(*labels)._value.get() == counted + 1
        with flask_only(verbose):
            assert client.get(LIST, headers={"X-Request-ID": "list-routed"}).status_code == 200
    fast, routed = lines["list-fast"], lines["list-routed"]
    assert fast == routed and fast["status"] == 200 and fast["user_id"] is None


def test_off_switch(app_factory: Any) -> None:
    with pytest.raises(AssertionError):
        catalog_path(app_factory(FAST_PATH_ENABLED=False))
