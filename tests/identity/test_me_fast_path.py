"""The ``/auth/me`` fast path (app/identity/fast_path.py): a warm ``GET /auth/me`` answered below
Flask exactly as the route answers it, every change seen at once, limits counted once, and
everything else left to the route."""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import metrics
from app.identity import fast_path as me_fast_path
from app.identity.fast_path import MeFastPath
from app.identity.sessions import COOKIE_NAME
from tests import fast_paths
from tests.fast_paths import header_variants, layer_of, request_lines
from tests.identity.conftest import bound_client
from tests.identity.helpers import auth, make_org, make_user, signed_in

ME = "/api/v1/auth/me"


def me_path(app: Flask) -> MeFastPath:
    """The /me middleware in the app's WSGI chain."""
    return layer_of(app, MeFastPath)


def flask_only(app: Flask) -> AbstractContextManager[None]:
    """Inside, /me requests skip the fast path (as with FAST_PATH_ENABLED off)."""
    return fast_paths.flask_only(me_path(app))


def get_fast(client: FlaskClient, token: str, **headers: str) -> TestResponse:
    """A /me answered below Flask, asking again until one is: the first ones are the route's (the
    session from Postgres into Redis, the body built, both into this process's near cache)."""
    send = lambda: client.get(ME, headers=auth(token, **headers))  # noqa: E731
    return fast_paths.answered_fast(me_path(client.application), "answered", send, 200, "/me")


def header_bag(response: TestResponse) -> Counter[tuple[str, str]]:
    return fast_paths.header_bag(response, fast_paths.LIMIT_COUNTERS)


@header_variants("page-load.7")
def test_a_warm_me_is_answered_below_flask_exactly_as_the_route_answers(
    app: Flask, client: FlaskClient, extra: dict[str, str]
) -> None:
    user = make_user(name="Ana")
    make_org(user, name="Bakery")
    token = signed_in(user)
    fast = get_fast(client, token, **extra)
    before = me_path(app).answered
    with flask_only(app):
        routed = client.get(ME, headers=auth(token, **extra))
    assert me_path(app).answered == before
    assert (fast.status_code, fast.data) == (routed.status_code, routed.data)
    assert fast.json["name"] == "Ana" and fast.json["memberships"][0]["organization_name"] == "Bakery"
    assert header_bag(fast) == header_bag(routed)
    assert fast.headers["Cache-Control"] == "no-store" and "Content-Security-Policy" in fast.headers
    if "X-Request-ID" in extra:
        assert fast.headers["X-Request-ID"] == routed.headers["X-Request-ID"] == extra["X-Request-ID"]


def test_every_change_to_the_body_is_seen_at_once(app: Flask, client: FlaskClient, db_session: Any) -> None:
    user = make_user(name="Ana")
    token = signed_in(user)
    get_fast(client, token)
    with app.app_context():  # (the after-commit hooks run in one, as in a request or a task)
        user.name = "Ana Maria"  # an ORM write: its generation is replaced after the commit
        db_session.commit()
    assert client.get(ME, headers=auth(token)).json["name"] == "Ana Maria"
    with app.app_context():
        make_org(user, name="Second shop")  # a membership: the same
        db_session.commit()
    names = [m["organization_name"] for m in client.get(ME, headers=auth(token)).json["memberships"]]
    assert names == ["Second shop"]
    assert get_fast(client, token).json["name"] == "Ana Maria"


def test_a_logout_reaches_the_fast_path_at_once(app: Flask, client: FlaskClient) -> None:
    token = signed_in(make_user())
    get_fast(client, token)
    before = me_path(app).answered
    assert client.post("/api/v1/auth/logout", headers=auth(token)).status_code == 204
    response = client.get(ME, headers=auth(token))
    assert response.status_code == 401 and response.json["error"]["code"] == "UNAUTHENTICATED"
    assert me_path(app).answered == before


def test_everything_else_is_the_routes_answer(app: Flask, client: FlaskClient, db_session: Any) -> None:
    user = make_user()
    token = signed_in(user)
    get_fast(client, token)
    before = me_path(app).answered
    assert client.get(ME).status_code == 401  # nobody
    assert client.get(ME, headers={"Authorization": "Bearer not a token"}).status_code == 401
    assert client.get(ME, headers={"Authorization": f"Basic {token}"}).status_code == 401
    assert client.post(ME, headers=auth(token)).status_code == 405
    client.set_cookie(COOKIE_NAME, token)  # a cookie session: the route's (with its cookie handling)
    assert client.get(ME).status_code == 200
    client.delete_cookie(COOKIE_NAME)
    due = signed_in(user, last_seen_ago=timedelta(minutes=10))  # due to slide: the route slides it
    for _ in range(2):
        assert client.get(ME, headers=auth(due)).status_code == 200
    assert me_path(app).answered == before


def test_with_rate_limits_on_every_me_is_counted_once_and_the_301st_is_refused(
    app_factory: Any, db_session: Any
) -> None:
    limited = app_factory(RATELIMIT_ENABLED=True)
    with bound_client(limited, db_session) as client:
        token = signed_in(make_user())
        middleware = me_path(limited)
        assert middleware.near.wait_usable(5.0)
        remaining = []
        for _ in range(300):
            response = client.get(ME, headers=auth(token))
            assert response.status_code == 200
            assert response.headers["X-RateLimit-Limit"] == "300"
            remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert remaining == list(range(299, -1, -1))  # each counted once, whichever path answered
        assert middleware.answered >= 1  # (the first ones fill the caches; see get_fast)
        for _ in range(8):  # every further one is refused; until one is refused below Flask
            assert middleware.near.wait_usable(5.0)
            refused = client.get(ME, headers=auth(token))
            assert refused.status_code == 429
            if middleware.refused:
                break
        with flask_only(limited):
            routed = client.get(ME, headers=auth(token))
    assert middleware.refused == 1
    for response in (refused, routed):
        assert response.status_code == 429
        assert response.json["error"]["code"] == "RATE_LIMITED"
        assert int(response.headers["Retry-After"]) >= 1 and response.headers["X-RateLimit-Remaining"] == "0"
    assert refused.json["error"]["details"].keys() == routed.json["error"]["details"].keys() == {"retry_after"}
    assert {k for k, _ in header_bag(refused)} == {k for k, _ in header_bag(routed)}


def test_the_fast_path_counts_in_the_request_metric_and_logs_the_routes_line(app_factory: Any, db_session: Any) -> None:
    verbose = app_factory(LOG_LEVEL="INFO")
    labels = ("GET", me_fast_path.ENDPOINT, "200")
    with request_lines() as lines, bound_client(verbose, db_session) as client:
        user = make_user()
        token = signed_in(user)
        get_fast(client, token)
        counted = metrics.HTTP_REQUESTS.labels(*labels)._value.get()
        get_fast(client, token, **{"X-Request-ID": "me-fast"})
        assert metrics.HTTP_REQUESTS.labels(*labels)._value.get() == counted + 1
        with flask_only(verbose):
            assert client.get(ME, headers=auth(token, **{"X-Request-ID": "me-routed"})).status_code == 200
    fast, routed = lines["me-fast"], lines["me-routed"]
    assert fast == routed and fast["status"] == 200 and fast["user_id"] == str(user.id)


def test_off_switch(app_factory: Any) -> None:
    with pytest.raises(AssertionError):
        me_path(app_factory(FAST_PATH_ENABLED=False))
