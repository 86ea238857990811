"""The table of security.md §3 on the hot routes, through the fast path and through Flask."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask

from app import keys
from app.identity.sessions import COOKIE_NAME, hash_token
from tests.access.helpers import World
from tests.access.test_fast_path import ALLOWED_ORIGIN, Player, Viewer, fast_path, flask_only
from tests.conftest import free_port
from tests.identity.conftest import bound_client
from tests.identity.helpers import auth, signed_in
from tests.ratelimit.helpers import assert_limited, commands_of


def test_the_121st_heartbeat_of_a_minute_is_refused_by_the_fast_path(
    limited_app: Flask, world: World, db_session: Any
) -> None:
    with bound_client(limited_app, db_session) as client:
        player = Player(client, world)
        player.warm()  # (the first ones are the route's: the session and snapshot load)
        assert fast_path(limited_app).heartbeats >= 1
        while player.sent < 120:
            response = player.put()
            assert response.status_code == 204
            assert int(response.headers["X-RateLimit-Remaining"]) == 120 - player.sent
        refused_before = fast_path(limited_app).refused
        refused = player.put()
        assert_limited(refused, 120)
        assert fast_path(limited_app).refused == refused_before + 1  # answered below Flask
        assert refused.headers["Cache-Control"] == "no-store" and refused.headers["X-Request-ID"]
        with flask_only(limited_app):  # the route agrees, and counts nothing more
            assert_limited(player.put(), 120)
        # another user has a budget of their own
        other = Player(client, world, token=signed_in(world.owner))
        assert other.put().status_code in {204, 403, 404}
        assert other.put().headers["X-RateLimit-Limit"] == "120"


def test_the_121st_heartbeat_of_a_cookie_session_is_refused_by_the_route(
    limited_app: Flask, world: World, db_session: Any
) -> None:
    with bound_client(limited_app, db_session) as client:
        player = Player(client, world)
        client.set_cookie(COOKIE_NAME, player.token)
        player.token = ""  # the cookie alone: always the route (CSRF)
        before = fast_path(limited_app).heartbeats
        for _ in range(120):
            response = player.put(Origin=ALLOWED_ORIGIN)
            assert response.status_code == 204, response.json
            assert int(response.headers["X-RateLimit-Remaining"]) == 120 - player.sent
        assert_limited(player.put(Origin=ALLOWED_ORIGIN), 120)
        # a refused attempt consumed nothing, and attempts the route refuses still count
        assert_limited(player.put(Origin="https://evil.example"), 120)
        assert fast_path(limited_app).heartbeats == before


def test_a_heartbeat_the_route_refuses_before_its_script_still_counts(
    limited_app: Flask, world: World, db_session: Any
) -> None:
    with bound_client(limited_app, db_session) as client:
        player = Player(client, world)
        denied = player.put(body={"position_seconds": "x"})  # 400 in the view, before the script
        assert denied.status_code == 400 and denied.headers["X-RateLimit-Remaining"] == "119"
        assert player.put().headers["X-RateLimit-Remaining"] == "118"


def test_the_61st_stream_url_of_a_minute_is_429(limited_app: Flask, world: World, db_session: Any) -> None:
    with bound_client(limited_app, db_session) as client:
        viewer = Viewer(client, world.buyer)
        before = fast_path(limited_app).streams
        for n in range(1, 61):
            assert limited_app.extensions["near_cache"].wait_usable(5.0)
            response = viewer.get(world.content.id)
            assert response.status_code == 200, (n, response.json)
            assert response.headers["X-RateLimit-Limit"] == "60"
            assert int(response.headers["X-RateLimit-Remaining"]) == 60 - n
        assert fast_path(limited_app).streams > before  # the warm ones were the fast path's
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert_limited(viewer.get(world.content.id), 60)
        with flask_only(limited_app):
            assert_limited(viewer.get(world.content.id), 60)


def test_every_other_api_request_shares_300_per_minute_per_user(
    limited_app: Flask, world: World, db_session: Any
) -> None:
    with bound_client(limited_app, db_session) as client:
        token = signed_in(world.buyer)
        for _ in range(300):
            response = client.get("/api/v1/auth/me", headers=auth(token))
            assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "300" and response.headers["X-RateLimit-Remaining"] == "0"
        assert_limited(client.get("/api/v1/auth/me", headers=auth(token)), 300)
        assert_limited(client.get("/api/v1/me/library", headers=auth(token)), 300)  # one budget
        # a route with a limit of its own does not draw on it ("every other /api/v1 request")
        assert Player(client, world, token=token).put().status_code == 204
        # another user, same IP: their own budget; anonymous callers are counted per IP
        assert client.get("/api/v1/auth/me", headers=auth(signed_in(world.owner))).status_code == 200
        anonymous = client.get("/api/v1/auth/me")
        assert anonymous.status_code == 401 and anonymous.headers["X-RateLimit-Remaining"] == "299"


def test_health_metrics_and_preflights_cost_the_limiter_nothing(limited_app: Flask, redis: Any) -> None:
    client = limited_app.test_client()
    url = limited_app.config["REDIS_URL"]

    def probes() -> None:
        for path in ("/health", "/health/ready", "/metrics"):
            response = client.get(path)
            assert "X-RateLimit-Limit" not in response.headers, path
        preflight = client.options(
            "/api/v1/auth/me", headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET"}
        )
        assert preflight.status_code == 204 and "X-RateLimit-Limit" not in preflight.headers

    sent = commands_of(url, probes, inside_scripts=True)
    assert "EVALSHA" not in sent and not [c for c in sent if c.startswith(("lua:Z", "lua:TIME"))], sent
    assert redis.keys("rl:*") == []


def warm_commands(url: str, action: Callable[[], Any], attempts: int = 5, *, inside_scripts: bool = False) -> list[str]:
    """The round trips of ``action`` once warm: repeated (at most ``attempts`` times) while a
    request still fills a near-cache entry (more than one call: a fill is dropped when its key
    changed during the read, and read again)."""
    sent: list[str] = []
    for _ in range(attempts):
        sent = commands_of(url, action, inside_scripts=inside_scripts)
        if len([command for command in sent if not command.startswith("lua:")]) <= 1:
            break
    return sent


def test_one_round_trip_per_hot_request_with_limits_on(limited_app: Flask, world: World, db_session: Any) -> None:
    url = limited_app.config["REDIS_URL"]
    with bound_client(limited_app, db_session) as client:
        player, viewer = Player(client, world), Viewer(client, world.buyer)
        player.warm()
        viewer.get_fast(world.content.id)
        token = player.token
        client.get("/api/v1/auth/me", headers=auth(token))
        before = (fast_path(limited_app).heartbeats, fast_path(limited_app).streams)
        # Warm means the near cache holds the entries; under load a fill can be dropped by a late
        # invalidation (it is then read again), so a request may have to repeat before it is warm.
        assert warm_commands(url, lambda: player.put()) == ["EVALSHA"]  # the heartbeat's script, limits in it
        assert warm_commands(url, lambda: viewer.get(world.content.id)) == ["EVALSHA"]  # the limiter alone
        assert warm_commands(url, lambda: client.get("/api/v1/auth/me", headers=auth(token))) == ["EVALSHA"]
        after = (fast_path(limited_app).heartbeats, fast_path(limited_app).streams)
        assert after[0] > before[0] and after[1] > before[1]  # both answered below Flask
        with flask_only(limited_app):  # the routes: the same single call
            assert commands_of(url, lambda: player.put()) == ["EVALSHA"]
            assert commands_of(url, lambda: viewer.get(world.content.id)) == ["EVALSHA"]
        # a cookie heartbeat (always the route) counts in its script too
        cookie_player = Player(client, world, token=token)
        cookie_player.token = ""  # no Authorization header
        client.set_cookie(COOKIE_NAME, token)
        assert commands_of(url, lambda: cookie_player.put(Origin=ALLOWED_ORIGIN)) == ["EVALSHA"]
        client.delete_cookie(COOKIE_NAME)
        # the near cache without the session (as in a process that has not seen it yet): the
        # session read goes to Redis, and carries the limits
        user = world.buyer.id
        limited_app.extensions["near_cache"].evict(
            [keys.session(hash_token(token)), keys.me_body(user), keys.me_generation(user)]
        )
        assert commands_of(url, lambda: client.get("/api/v1/auth/me", headers=auth(token))) == ["EVALSHA"]
        content = world.content.id
        limited_app.extensions["near_cache"].evict(
            [keys.session(hash_token(viewer.token)), keys.access_entry(user, content), keys.content_generation(content)]
        )
        with flask_only(limited_app):  # session, access entry, content token and the limits: one call
            assert commands_of(url, lambda: viewer.get(content)) == ["EVALSHA"]


def test_with_limits_off_the_limiter_sends_nothing(app: Flask, client: Any, world: World) -> None:
    player = Player(client, world)
    player.warm()
    url = app.config["REDIS_URL"]
    token = player.token
    for _ in range(2):  # (the /me body cached in Redis, then in the near cache: warm)
        client.get("/api/v1/auth/me", headers=auth(token))

    def requests() -> None:
        assert player.put().status_code == 204
        client.get("/api/v1/auth/me", headers=auth(token))
        client.get("/health")

    sent = warm_commands(url, requests, inside_scripts=True)
    # the heartbeat's script alone (a warm /auth/me is answered from the near cache)
    assert [c for c in sent if not c.startswith("lua:")] == ["EVALSHA"]
    assert not [c for c in sent if c.startswith(("lua:Z", "lua:TIME"))], sent  # no limiter work inside it
    assert app.extensions["redis"].keys("rl:*") == []
    assert "X-RateLimit-Limit" not in player.put().headers


def test_redis_down_lets_requests_through_and_warns(app_factory: Any, capsys: Any) -> None:
    down = app_factory(RATELIMIT_ENABLED=True, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    client = down.test_client()
    capsys.readouterr()
    for _ in range(3):
        response = client.get("/api/v1/openapi.json")
        assert response.status_code == 200 and "X-RateLimit-Limit" not in response.headers
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    events = [line for line in lines if line["event"] == "ratelimit.unavailable"]
    assert len(events) == 3 and all(e["level"] == "warning" and e["logger"] == "app.ratelimit.limiter" for e in events)
