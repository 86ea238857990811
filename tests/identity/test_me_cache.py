"""The cached ``GET /auth/me`` body (app/identity/me_cache.py): served warm, never stale."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import redis as redis_lib
from sqlalchemy import text

from app.identity import me_cache
from tests.identity.helpers import add_member, auth, make_org, make_user, signed_in
from tests.orgs.helpers import make_invitation

ME = "/api/v1/auth/me"
ORGS = "/api/v1/orgs"


def me(client, token: str) -> dict:
    r = client.get(ME, headers=auth(token))
    assert r.status_code == 200, r.json
    return r.json


@contextmanager
def redis_commands(client: redis_lib.Redis) -> Iterator[list[str]]:
    """The names of the commands ``client`` sends meanwhile."""
    commands: list[str] = []
    original = client.execute_command

    def counting(*args, **kwargs):
        commands.append(str(args[0]))
        return original(*args, **kwargs)

    client.execute_command = counting  # type: ignore[method-assign]
    try:
        yield commands
    finally:
        del client.execute_command


def test_a_warm_me_is_the_cached_body_read_with_the_session_in_one_call(client, db_session, redis, app) -> None:
    user = make_user(name="Ana")
    make_org(user, name="Bakery")
    token = signed_in(user)
    first = client.get(ME, headers=auth(token))
    stored = redis.get(f"me:{user.id}")
    assert stored is not None and stored.endswith(first.get_data())  # "<generation>\n<body>"
    # A change that bypasses the ORM (no generation bump) shows the body really is served from Redis...
    db_session.execute(text("UPDATE users SET name = 'Changed' WHERE id = :id"), {"id": user.id})
    db_session.commit()
    with redis_commands(redis) as commands:
        warm = client.get(ME, headers=auth(token))
    assert warm.get_data() == first.get_data() and warm.json["name"] == "Ana"
    assert commands == ["EVALSHA"]  # session + body + generation: one round trip
    assert warm.headers["Content-Type"] == "application/json"
    assert warm.headers["Cache-Control"] == "no-store"
    # ...and a bump (what every ORM write of a user, membership or org does) makes it re-read.
    with app.app_context():
        me_cache.bump([user.id])
    assert me(client, token)["name"] == "Changed"


def test_a_warm_me_makes_no_redis_call_once_the_near_cache_holds_it(client, db_session, redis, app) -> None:
    user = make_user(name="Ana")
    token = signed_in(user)
    me(client, token)  # the session from Postgres, cached; the body built, cached
    me(client, token)  # read from Redis in one call, kept by this process's near cache
    with redis_commands(redis) as commands:
        assert me(client, token)["name"] == "Ana"
    assert commands == []
    # A change made by another process (its generation bump) is reported by Redis: read again.
    redis.set(f"me:gen:{user.id}", "another-process-bumped-it")
    db_session.execute(text("UPDATE users SET name = 'Changed' WHERE id = :id"), {"id": user.id})
    db_session.commit()
    assert me(client, token)["name"] == "Changed"


def test_memberships_follow_every_change_at_once(client, db_session, redis) -> None:
    owner = make_user(name="Olga")
    org = make_org(owner, name="Bakery")
    nina = make_user(name="Nina", email="nina@example.com", email_verified_at=datetime.now(UTC))
    owner_token, nina_token = signed_in(owner), signed_in(nina)
    assert me(client, nina_token)["memberships"] == []
    assert [m["organization_name"] for m in me(client, owner_token)["memberships"]] == ["Bakery"]

    members = f"{ORGS}/{org.id}/members"
    _invitation, invitation_token = make_invitation(org, owner, email="nina@example.com")
    r = client.post("/api/v1/invitations/accept", json={"token": invitation_token}, headers=auth(nina_token))
    assert r.status_code == 200
    assert [(m["organization_name"], m["role"]) for m in me(client, nina_token)["memberships"]] == [
        ("Bakery", "creator")
    ]

    r = client.patch(f"{members}/{nina.id}", json={"role": "admin"}, headers=auth(owner_token))
    assert r.status_code == 200
    assert me(client, nina_token)["memberships"][0]["role"] == "admin"

    # A rename reaches every member's cached view, not only the caller's.
    r = client.patch(f"{ORGS}/{org.id}", json={"name": "Bakehouse", "slug": "bakehouse"}, headers=auth(owner_token))
    assert r.status_code == 200
    for token in (owner_token, nina_token):
        (membership,) = me(client, token)["memberships"]
        assert (membership["organization_name"], membership["organization_slug"]) == ("Bakehouse", "bakehouse")

    assert client.delete(f"{members}/{nina.id}", headers=auth(owner_token)).status_code == 204
    assert me(client, nina_token)["memberships"] == []

    r = client.post(ORGS, json={"name": "Atelier", "slug": "atelier"}, headers=auth(nina_token))
    assert r.status_code == 201
    assert [(m["organization_name"], m["role"]) for m in me(client, nina_token)["memberships"]] == [
        ("Atelier", "owner")
    ]


def test_email_verification_shows_at_once(client, db_session, redis) -> None:
    r = client.post("/api/v1/auth/register", json={"email": "ana@example.com", "password": "Str0ngpass", "name": "Ana"})
    assert r.status_code == 201
    login = client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": "Str0ngpass"})
    token = login.json["token"]
    assert me(client, token)["email_verified"] is False
    from app.identity import service

    with client.application.app_context():
        from app import db

        user = service.get_user_by_email(db.session, "ana@example.com")
        raw = service.issue_token(db.session, user.id, service.EMAIL_VERIFICATION)[1]
        db.session.commit()
    assert client.post("/api/v1/auth/verify-email", json={"token": raw}).status_code == 200
    assert me(client, token)["email_verified"] is True


def test_a_body_read_before_a_concurrent_write_is_never_served(app, db_session, redis) -> None:
    user = make_user()
    with app.app_context():
        before = me_cache.lookup(user.id)  # a reader sees the generation, then reads Postgres...
        me_cache.bump([user.id])  # ...a writer commits and bumps...
        me_cache.store(user.id, before.generation, b'{"stale": true}')  # ...the reader stores late
        assert me_cache.lookup(user.id).body is None
        fresh = me_cache.lookup(user.id)
        me_cache.store(user.id, fresh.generation, b'{"fresh": true}')
        assert me_cache.lookup(user.id).body == b'{"fresh": true}'
        # The generation key outlives every body stored under it.
        assert redis.ttl(f"me:gen:{user.id}") > redis.ttl(f"me:{user.id}") > 0


def test_a_rolled_back_write_bumps_nothing(app, db_session, redis) -> None:
    user = make_user()
    org = make_org(user)
    with app.app_context():
        from app import db

        fresh = me_cache.lookup(user.id)
        me_cache.store(user.id, fresh.generation, b"{}")
        add_member(org, make_user())  # another user's membership, committed: not this user's view
        assert me_cache.lookup(user.id).body == b"{}"
        row = db.session.get(type(org), org.id)
        row.name = "Renamed"
        db.session.flush()
        db.session.rollback()
        assert me_cache.lookup(user.id).body == b"{}"
        assert not redis.exists(f"me:gen:{user.id}")


def test_redis_down_me_answers_from_the_database(client, db_session, app, monkeypatch) -> None:
    user = make_user(name="Ana")
    token = signed_in(user)

    def broken(*args, **kwargs):
        raise redis_lib.ConnectionError("down")

    monkeypatch.setattr(app.extensions["redis"], "execute_command", broken)
    monkeypatch.setattr(app.extensions["redis"], "pipeline", broken)
    assert me(client, token)["name"] == "Ana"
    assert client.get(ME, headers=auth("y" * 43)).status_code == 401
