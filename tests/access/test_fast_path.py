"""The fast path (app/access/fast_path.py): warm heartbeats and stream URLs answered below Flask
exactly as the routes answer them, and everything else left to the routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import metrics, ratelimit
from app.access import fast_path as fast_path_module
from app.access import progress
from app.access.fast_path import FastPath
from app.identity.sessions import COOKIE_NAME
from app.speed.nearcache import MISS
from tests import fast_paths
from tests.access.helpers import World
from tests.fast_paths import ALLOWED_ORIGIN, answered_fast, header_bag, header_variants, request_lines
from tests.identity.conftest import bound_client
from tests.identity.helpers import signed_in


def fast_path(app: Flask) -> FastPath:
    return fast_paths.layer_of(app, FastPath)


@contextmanager
def flask_only(app: Flask) -> Iterator[None]:
    """Requests inside go straight to Flask, as with FAST_PATH_ENABLED off."""
    with fast_paths.flask_only(fast_path(app)):
        yield


class Player:
    """One signed-in player sending heartbeats with an advancing position and clock."""

    def __init__(self, client: FlaskClient, world: World, token: str | None = None) -> None:
        self.client, self.world = client, world
        self.token = token or signed_in(world.buyer)
        self.position = 100
        self.clock = datetime.now(UTC) - timedelta(minutes=1)
        self.sent = 0

    def body(self) -> dict[str, Any]:
        self.position += 5
        self.clock += timedelta(seconds=5)
        return {
            "position_seconds": self.position,
            "duration_seconds": 1800,
            "client_ts": self.clock.isoformat().replace("+00:00", "Z"),
        }

    def put(self, body: Any = None, content_id: Any = None, **headers: str) -> TestResponse:
        self.sent += 1
        raw = json.dumps(self.body() if body is None else body)
        path = f"/api/v1/content/{content_id or self.world.content.id}/progress"
        bearer = f"Bearer {self.token}" if self.token else ""
        all_headers = {"Authorization": bearer, "Content-Type": "application/json", **headers}
        return self.client.put(path, data=raw, headers={k: v for k, v in all_headers.items() if v})

    def put_fast(self, body: Any = None, **headers: str) -> TestResponse:
        """A heartbeat answered below Flask, sending it again (a later position) until one is.

        The first ones are the route's: the session goes from Postgres into Redis and from Redis
        into the near cache, the content snapshot and the access entry are loaded. A near cache
        can also be briefly unusable under load (a late PONG, app/speed/nearcache.py), and its
        lookups then miss, so a test never relies on one particular request taking the fast path."""
        middleware = fast_path(self.client.application)
        return answered_fast(middleware, "heartbeats", lambda: self.put(body, **headers), 204, "heartbeat")

    def warm(self) -> None:
        self.put_fast()


@header_variants("player-42.beat_7")
def test_a_warm_heartbeat_is_answered_below_flask_exactly_as_the_route_answers(
    app: Flask, client: FlaskClient, world: World, redis: redis_lib.Redis, extra: dict[str, str]
) -> None:
    player = Player(client, world)
    player.warm()
    fast = player.put_fast(**extra)
    before = fast_path(app).heartbeats
    with flask_only(app):
        routed = player.put(**extra)
    assert fast_path(app).heartbeats == before
    assert (fast.status_code, fast.data) == (routed.status_code, routed.data) == (204, b"")
    assert header_bag(fast) == header_bag(routed)
    assert "Content-Security-Policy" in fast.headers and fast.headers["Cache-Control"] == "no-store"
    if "X-Request-ID" in extra:
        assert fast.headers["X-Request-ID"] == routed.headers["X-Request-ID"] == extra["X-Request-ID"]
    else:
        assert (
            len(fast.headers["X-Request-ID"]) == 32 and fast.headers["X-Request-ID"] != routed.headers["X-Request-ID"]
        )


def test_both_paths_write_the_same_progress(app: Flask, client: FlaskClient, world: World, redis: Any) -> None:
    """The same heartbeats, once each way: the same hash, dirty marks and watch counters."""

    def two_heartbeats(route_only: bool) -> tuple[Any, int]:
        redis.flushdb()  # (the near cache forgets everything too: the warm-up is the route's again)
        player = Player(client, world)
        player.warm()  # (how many heartbeats that took varies: start the counters afresh)
        member = f"{world.buyer.id}:{world.content.id}"
        day = progress.day_stamp(datetime.now(UTC).date())
        seen = f"pb:seen:{day}:{world.content.id}:{world.buyer.id}"
        redis.delete(f"pb:stats:{day}:{world.content.id}", seen, "pb:dirty", f"pb:dirty:u:{world.buyer.id}")
        player.position, player.clock = 100, datetime.now(UTC)
        answered = fast_path(app).heartbeats
        with flask_only(app) if route_only else nullcontext():
            for _ in range(2):
                assert player.put().status_code == 204
        stored = {k: v for k, v in redis.hgetall(f"pb:p:{member}").items() if k not in (b"upd", b"ts")}
        stats = redis.hgetall(f"pb:stats:{day}:{world.content.id}")
        dirty = (redis.sismember("pb:dirty", member), redis.smembers(f"pb:dirty:u:{world.buyer.id}"))
        return (stored, dirty, stats), fast_path(app).heartbeats - answered

    routed, none_fast = two_heartbeats(route_only=True)
    assert none_fast == 0
    for _ in range(5):  # until both went below Flask (see Player.put_fast)
        fast, answered = two_heartbeats(route_only=False)
        if answered == 2:
            break
    assert answered == 2 and fast == routed
    stored, dirty, stats = fast
    assert stored[b"pos"] == b"110" and dirty[0] and dirty[1] == {str(world.content.id).encode()}
    assert stats[b"views_started"] == b"1" and stats[b"seconds_watched"] == b"5"  # 105 -> 110 in 5 s


def _content_of_nobody() -> str:
    return "00000000-0000-4000-8000-000000000000"


CASES: dict[str, Any] = {
    # name: (body or None for a good one, headers, content id or None, expected status, error code)
    "bad input": ({"position_seconds": -1, "duration_seconds": 10}, {}, None, 400, "VALIDATION_ERROR"),
    "not json": ("{not json", {}, None, 400, "INVALID_JSON"),
    "wrong type": (None, {"Content-Type": "text/plain"}, None, 415, None),
    "malformed token": (None, {"Authorization": "Bearer !!"}, None, 401, "UNAUTHENTICATED"),
    "unknown token": (None, {"Authorization": "Bearer " + "a" * 43}, None, 401, "UNAUTHENTICATED"),
    "no such content": (None, {}, _content_of_nobody(), 404, "CONTENT_NOT_FOUND"),
    "upper-case id": (None, {}, "upper", 204, None),
    "a large body": ("padded", {}, None, 204, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_everything_else_is_the_routes_answer(
    app: Flask, client: FlaskClient, world: World, redis: Any, case: str
) -> None:
    body, headers, content_id, status, code = CASES[case]
    player = Player(client, world)
    player.warm()
    if content_id == "upper":
        content_id = str(world.content.id).upper()
    if body == "padded":  # valid, but above the fast path's 4 KiB: Flask reads it (body put back)
        good = player.body()
        body = json.loads(json.dumps(good))
        raw = json.dumps(good) + " " * (fast_path_module.MAX_BODY + 10)
        before = fast_path(app).heartbeats
        response = client.put(
            f"/api/v1/content/{world.content.id}/progress",
            data=raw,
            headers={"Authorization": f"Bearer {player.token}", "Content-Type": "application/json"},
        )
    else:
        before = fast_path(app).heartbeats
        if body == "{not json":
            response = client.put(
                f"/api/v1/content/{world.content.id}/progress",
                data=body,
                headers={"Authorization": f"Bearer {player.token}", "Content-Type": "application/json"},
            )
        else:
            response = player.put(body, content_id, **headers)
    assert fast_path(app).heartbeats == before
    assert response.status_code == status, response.get_data(as_text=True)
    if code is not None:
        assert response.json["error"]["code"] == code


def test_a_heartbeat_without_access_is_refused_by_the_route(app: Flask, client: FlaskClient, world: World) -> None:
    buyer = Player(client, world)
    buyer.warm()
    stranger = Player(client, world, token=signed_in(world.stranger))
    for _ in range(2):  # the second time the session and snapshot are warm: still the route's 403
        before = fast_path(app).heartbeats
        response = stranger.put()
        assert response.status_code == 403 and response.json["error"]["code"] == "ACCESS_DENIED"
        assert fast_path(app).heartbeats == before


def test_cookie_sessions_go_through_the_route_and_its_csrf_check(app: Flask, client: FlaskClient, world: World) -> None:
    player = Player(client, world)
    player.warm()
    client.set_cookie(COOKIE_NAME, player.token)
    player.token = ""  # no Authorization header
    before = fast_path(app).heartbeats
    assert player.put(Origin=ALLOWED_ORIGIN).status_code == 204
    refused = player.put(Origin="https://evil.example")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "CSRF_FAILED"
    assert fast_path(app).heartbeats == before


def test_a_session_due_to_slide_goes_through_the_route_which_slides_it(
    app: Flask, client: FlaskClient, world: World, db_session: Any
) -> None:
    from app.identity.models import AuthSession

    token = signed_in(world.buyer, last_seen_ago=timedelta(minutes=10))
    player = Player(client, world, token=token)
    before = fast_path(app).heartbeats
    for _ in range(2):  # the first fills the caches; the second would be warm but is due to slide
        assert player.put().status_code == 204
    assert fast_path(app).heartbeats == before
    db_session.expire_all()
    seen = max(s.last_seen_at for s in db_session.query(AuthSession).filter_by(user_id=world.buyer.id))
    assert datetime.now(UTC) - seen < timedelta(minutes=1)
    player.put_fast()  # slid, cached again: warm


def test_logout_reaches_the_fast_path_at_once(app: Flask, client: FlaskClient, world: World) -> None:
    player = Player(client, world)
    player.warm()
    before = fast_path(app).heartbeats
    assert client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {player.token}"}).status_code == 204
    response = player.put()
    assert response.status_code == 401 and response.json["error"]["code"] == "UNAUTHENTICATED"
    assert fast_path(app).heartbeats == before


def test_with_rate_limits_on_every_heartbeat_is_counted_once_fast_or_routed(
    app_factory: Any, world: World, db_session: Any, redis: Any
) -> None:
    limited = app_factory(RATELIMIT_ENABLED=True)
    assert limited.extensions["near_cache"].wait_usable(5.0)
    with bound_client(limited, db_session) as client:
        player = Player(client, world)
        remaining = []
        for _ in range(4):  # the route's (cold), then the fast path's
            response = player.put()
            assert response.status_code == 204
            assert response.headers["X-RateLimit-Limit"] == "120"
            remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        fast = player.put_fast()  # answered below Flask, with the limiter's headers
        assert fast.headers["X-RateLimit-Limit"] == "120"
        assert int(fast.headers["X-RateLimit-Remaining"]) == 120 - player.sent  # every one counted once
        with flask_only(limited):
            routed = player.put()
        assert int(routed.headers["X-RateLimit-Remaining"]) == 120 - player.sent
        assert {name for name, _ in header_bag(fast)} == {name for name, _ in header_bag(routed)}
    assert remaining == [119, 118, 117, 116]
    assert fast_path(limited).heartbeats >= 1


def test_redis_trouble_leaves_the_heartbeat_to_the_route(
    app: Flask, client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    player = Player(client, world)
    player.warm()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise redis_lib.ConnectionError("gone")

    monkeypatch.setattr(progress, "record_warm_heartbeat", broken)
    before = fast_path(app).heartbeats
    assert player.put().status_code == 204  # the route wrote it (Redis itself is fine here)
    assert fast_path(app).heartbeats == before


def test_the_fast_path_counts_in_the_request_metrics(app: Flask, client: FlaskClient, world: World) -> None:
    player = Player(client, world)
    player.warm()
    labels = ("PUT", fast_path_module.HEARTBEAT_ENDPOINT, "204")
    counted, sent = metrics.HTTP_REQUESTS.labels(*labels)._value.get(), player.sent
    player.put_fast()
    # One count per heartbeat, under the same label whichever path answered (the route's rule)
    assert metrics.HTTP_REQUESTS.labels(*labels)._value.get() == counted + player.sent - sent
    assert [r.rule for r in app.url_map.iter_rules() if r.rule == fast_path_module.HEARTBEAT_ENDPOINT]


def test_off_switch(app_factory: Any) -> None:
    assert not isinstance(app_factory(FAST_PATH_ENABLED=False).wsgi_app, FastPath)


# ---- stream URLs ------------------------------------------------------------------------------------


class Viewer:
    """One signed-in viewer asking for stream URLs with a single session (as a player does)."""

    def __init__(self, client: FlaskClient, user: Any) -> None:
        self.client = client
        self.token = signed_in(user)

    def get(self, content_id: Any, query: str = "", **headers: str) -> TestResponse:
        path = f"/api/v1/content/{content_id}/stream" + (f"?{query}" if query else "")
        return self.client.get(path, headers={"Authorization": f"Bearer {self.token}", **headers})

    def get_fast(self, content_id: Any, query: str = "", **headers: str) -> TestResponse:
        """A stream URL answered below Flask, asking again until one is (see Player.put_fast)."""
        middleware = fast_path(self.client.application)
        send = lambda: self.get(content_id, query, **headers)  # noqa: E731
        return answered_fast(middleware, "streams", send, 200, "stream URL")


def _token(manifest_url: str) -> str:
    return manifest_url.split("/api/v1/stream/", 1)[1].split("/", 1)[0]


@pytest.mark.parametrize("query", ["", "expires_in=600"])
@pytest.mark.parametrize("origin", [None, ALLOWED_ORIGIN])
def test_a_warm_stream_url_is_answered_below_flask_exactly_as_the_route_answers(
    app: Flask, client: FlaskClient, world: World, query: str, origin: str | None
) -> None:
    viewer = Viewer(client, world.buyer)
    extra = {"Origin": origin} if origin else {}
    fast = viewer.get_fast(world.content.id, query, **extra)
    before = fast_path(app).streams
    with flask_only(app):
        routed = viewer.get(world.content.id, query, **extra)
    assert fast_path(app).streams == before
    assert fast.status_code == routed.status_code == 200
    assert header_bag(fast) == header_bag(routed)  # Content-Type and Content-Length included
    mine, theirs = fast.json, routed.json
    for body in (mine, theirs):  # the token (and so the URL) carries its own expiry
        expires_at = datetime.fromisoformat(body.pop("expires_at").replace("Z", "+00:00"))
        wanted = 600 if query else 3600
        assert abs((expires_at - datetime.now(UTC)).total_seconds() - wanted) < 5
        assert body.pop("manifest_url").startswith("http://localhost:5000/api/v1/stream/")
    assert mine == theirs and mine["renditions"] and mine["thumbnail_url"]
    # The fast path's token is a real one: its master playlist plays.
    playlist = client.get(f"/api/v1/stream/{_token(fast.json['manifest_url'])}/master.m3u8")
    assert playlist.status_code == 200 and b"#EXTM3U" in playlist.data


STREAM_CASES: dict[str, tuple[str, int, str]] = {
    "expires_in too short": ("expires_in=10", 400, "VALIDATION_ERROR"),
    "unknown parameter": ("other=1", 400, "VALIDATION_ERROR"),
    "repeated parameter": ("expires_in=600&expires_in=700", 400, "VALIDATION_ERROR"),
}


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_stream_queries_the_fast_path_does_not_take_get_the_routes_answer(
    app: Flask, client: FlaskClient, world: World, case: str
) -> None:
    query, status, code = STREAM_CASES[case]
    viewer = Viewer(client, world.buyer)
    viewer.get_fast(world.content.id)
    before = fast_path(app).streams
    response = viewer.get(world.content.id, query)
    assert (response.status_code, response.json["error"]["code"]) == (status, code)
    assert fast_path(app).streams == before


def test_stream_refusals_are_the_routes_even_when_warm(
    app: Flask, client: FlaskClient, world: World, db_session: Any
) -> None:
    from tests import factories

    stranger = Viewer(client, world.stranger)
    media = factories.MediaItemFactory(organization_id=world.org.id, created_by=world.owner.id, status="processing")
    not_ready = world.add_content(media_id=media.id, price_cents=None)
    draft = world.add_content(status="draft", published_at=None)
    before = fast_path(app).streams
    for _ in range(3):  # the first fills the caches; the rest are warm and still refused
        denied = stranger.get(world.content.id)
        assert denied.status_code == 403 and denied.json["error"]["code"] == "ACCESS_DENIED"
        waiting = stranger.get(not_ready.id)
        assert waiting.status_code == 422 and waiting.json["error"]["code"] == "MEDIA_NOT_READY"
        hidden = stranger.get(draft.id)
        assert hidden.status_code == 404 and hidden.json["error"]["code"] == "CONTENT_NOT_FOUND"
    assert fast_path(app).streams == before
    # Staff of the org stream the draft, warm ones below Flask.
    creator = Viewer(client, world.owner)
    assert creator.get_fast(draft.id).status_code == 200


def test_a_revoked_grant_reaches_the_fast_stream_at_once(
    app: Flask, client: FlaskClient, world: World, db_session: Any
) -> None:
    from sqlalchemy import select

    from app.access.cache import invalidate_access_after_commit
    from app.access.models import ContentAccess

    viewer = Viewer(client, world.buyer)
    viewer.get_fast(world.content.id)
    grant = db_session.scalars(
        select(ContentAccess).filter_by(user_id=world.buyer.id, content_id=world.content.id)
    ).one()
    grant.revoked_at, grant.revoke_reason = datetime.now(UTC), "refund"
    with app.app_context():  # (the eviction runs after the commit, in the app)
        invalidate_access_after_commit(db_session, world.buyer.id, world.content.id)
        db_session.commit()
    before = fast_path(app).streams
    response = viewer.get(world.content.id)
    assert response.status_code == 403 and response.json["error"]["code"] == "ACCESS_DENIED"
    assert fast_path(app).streams == before


def test_a_stream_url_whose_access_entry_is_only_in_redis_is_fast_and_counted_once(
    app_factory: Any, world: World, db_session: Any, redis: Any
) -> None:
    """The near cache does not hold the access entry (it lives 60 s in Redis): the fast path reads
    it with the limits in one call and answers; missing in Redis too, the route answers (the
    database), and the request is still counted once."""
    from app.access.cache import access_cache_key

    limited = app_factory(RATELIMIT_ENABLED=True)
    near = limited.extensions["near_cache"]
    assert near.wait_usable(5.0)
    key = access_cache_key(world.buyer.id, world.content.id)
    with bound_client(limited, db_session) as client:
        viewer = Viewer(client, world.buyer)
        viewer.get_fast(world.content.id)
        remaining = int(viewer.get(world.content.id).headers["X-RateLimit-Remaining"])
        near.evict([key])  # (as when its near-cache entry has aged out)
        before = fast_path(limited).streams
        fast = viewer.get(world.content.id)
        assert fast.status_code == 200 and fast_path(limited).streams == before + 1
        assert int(fast.headers["X-RateLimit-Remaining"]) == remaining - 1
        again = viewer.get(world.content.id)  # kept from that read: fast again
        assert again.status_code == 200 and fast_path(limited).streams == before + 2
        redis.delete(key)  # expired in Redis too: the route reads the database
        routed = viewer.get(world.content.id)
        assert routed.status_code == 200 and fast_path(limited).streams == before + 2
        assert int(routed.headers["X-RateLimit-Remaining"]) == remaining - 3
        names = [{name for name, _ in header_bag(response)} for response in (fast, routed)]
        assert names[0] == names[1] and "X-RateLimit-Reset" in names[0]


def test_a_session_this_process_does_not_hold_is_read_from_redis_by_the_fast_path(
    app: Flask, client: FlaskClient, world: World
) -> None:
    """A returning user's first heartbeat or stream URL in a process: the session entry is in
    Redis only. The fast path reads it (a stream URL: with its access keys, in one call) and
    keeps it."""
    from app import keys
    from app.access.cache import access_cache_key
    from app.identity.sessions import hash_token

    player, viewer = Player(client, world), Viewer(client, world.buyer)
    player.warm()
    viewer.get_fast(world.content.id)
    near = app.extensions["near_cache"]
    access_key = access_cache_key(world.buyer.id, world.content.id)
    for token in (player.token, viewer.token):
        near.evict([keys.session(hash_token(token)), access_key])
        assert near.get(keys.session(hash_token(token))) is MISS
    heartbeats, streams = fast_path(app).heartbeats, fast_path(app).streams
    assert player.put().status_code == 204
    cold = viewer.get(world.content.id)
    assert cold.status_code == 200
    assert (fast_path(app).heartbeats, fast_path(app).streams) == (heartbeats + 1, streams + 1)
    assert near.get(keys.session(hash_token(viewer.token))) is not MISS and near.get(access_key) is not MISS
    with flask_only(app):
        routed = viewer.get(world.content.id)
    assert header_bag(cold) == header_bag(routed)
    assert viewer.get(world.content.id).status_code == 200
    assert fast_path(app).streams == streams + 2
    # ... and kept: a logout still reaches the fast path at once
    assert client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {player.token}"}).status_code == 204
    assert player.put().status_code == 401
    assert fast_path(app).heartbeats == heartbeats + 1


def test_a_stream_url_whose_session_is_only_in_redis_is_counted_once_in_its_one_call(
    app_factory: Any, world: World, db_session: Any, redis: Any
) -> None:
    """With limits on, the cold stream URL's one call counts the user's limit: answered there, or
    handed to the route (session not in Redis, or refused) without being counted again."""
    from app import keys
    from app.identity.sessions import hash_token

    limited = app_factory(RATELIMIT_ENABLED=True)
    near = limited.extensions["near_cache"]
    assert near.wait_usable(5.0)
    with bound_client(limited, db_session) as client:
        viewer = Viewer(client, world.buyer)
        viewer.get_fast(world.content.id)
        session_key = keys.session(hash_token(viewer.token))
        remaining = int(viewer.get(world.content.id).headers["X-RateLimit-Remaining"])
        near.evict([session_key])
        before = fast_path(limited).streams
        fast = viewer.get(world.content.id)
        assert fast.status_code == 200 and fast_path(limited).streams == before + 1
        assert int(fast.headers["X-RateLimit-Remaining"]) == remaining - 1
        # Not in Redis either: the script counts nothing, the route reads Postgres and counts it.
        near.evict([session_key])
        redis.delete(session_key)
        routed = viewer.get(world.content.id)
        assert routed.status_code == 200 and fast_path(limited).streams == before + 1
        assert int(routed.headers["X-RateLimit-Remaining"]) == remaining - 2
        names = [{name for name, _ in header_bag(response)} for response in (fast, routed)]
        assert names[0] == names[1] and "X-RateLimit-Reset" in names[0]
        # Spend the rest of the minute's budget, then a cold request is refused: the route's 429.
        while int(viewer.get(world.content.id).headers["X-RateLimit-Remaining"]) > 0:
            pass
        near.evict([session_key])
        refused = viewer.get(world.content.id)
        assert refused.status_code == 429 and refused.json["error"]["code"] == "RATE_LIMITED"
        assert refused.headers["X-RateLimit-Limit"] == "60" and int(refused.headers["Retry-After"]) >= 1
        rules = fast_path(limited).rules("GET", fast_path_module.STREAM_ENDPOINT)
        (log_key,) = ratelimit.bind(rules, "unused", str(world.buyer.id)).names
        assert redis.zcard(log_key) == 60  # the refused attempt logged nothing


def test_the_request_log_line_is_the_routes(app_factory: Any, world: World, db_session: Any) -> None:
    verbose = app_factory(LOG_LEVEL="INFO")
    assert verbose.extensions["near_cache"].wait_usable(5.0)
    with request_lines() as lines, bound_client(verbose, db_session) as client:
        player = Player(client, world)
        player.put_fast(**{"X-Request-ID": "beat-fast"})
        with flask_only(verbose):
            assert player.put(**{"X-Request-ID": "beat-routed"}).status_code == 204
    fast, routed = lines["beat-fast"], lines["beat-routed"]
    assert fast == routed and fast["status"] == 204 and fast["user_id"] == str(world.buyer.id)
