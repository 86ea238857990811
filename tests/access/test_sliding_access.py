"""The access entry's sliding TTL (app/access/service.py) and the writers that make it safe.

An entry a hot path uses is extended when less than 30 s of its 60 s TTL is left, never past
5 minutes after its database read; so every writer of what it caches must drop it explicitly:
grants (tests/access/test_routes.py, tests/commerce/test_events.py) and staff status, here. Writers
leave a tombstone rather than delete, so a request racing them cannot cache the old answer (here).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app import keys
from app.access import grants, service
from app.access.cache import access_cache_key
from app.access.fast_path import FastPath
from app.access.models import ContentAccess
from app.access.service import decode_reason
from app.identity import access_entries
from app.identity import service as identity_service
from app.identity.access_entries import drop_user_access
from app.notifications.models import EmailOutbox
from app.speed.nearcache import NearCache
from tests.access.helpers import World, headers, staff, stream
from tests.fast_paths import answered_fast, layer_of
from tests.identity.helpers import auth, signed_in

TOMBSTONE = access_entries.TOMBSTONE.encode()  # what a writer leaves in an access entry's place


def heartbeat(client: FlaskClient, user: Any, content_id: Any) -> Any:
    body = {"position_seconds": 12, "duration_seconds": 600}
    return client.put(f"/api/v1/content/{content_id}/progress", json=body, headers=headers(user))


def _entry(redis: Any, world: World, user: Any) -> tuple[Any, int]:
    key = access_cache_key(user.id, world.content.id)
    return redis.get(key), redis.pttl(key)


def _age(redis: Any, world: World, user: Any, *, pttl_ms: int, read_ago_s: float) -> str:
    """Make the user's entry look read from Postgres ``read_ago_s`` ago, ``pttl_ms`` left."""
    key = access_cache_key(user.id, world.content.id)
    raw = redis.get(key)
    assert raw is not None
    born = int((time.time() - read_ago_s) * 1000)
    redis.set(key, f"{decode_reason(raw)}@{born}", px=pttl_ms)
    return key


def test_a_heartbeat_extends_an_entry_with_little_time_left(client: FlaskClient, world: World, redis: Any) -> None:
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204  # reads and caches the entry
    raw, pttl = _entry(redis, world, world.buyer)
    assert decode_reason(raw) == "purchased" and 55_000 < pttl <= 60_000
    key = _age(redis, world, world.buyer, pttl_ms=40_000, read_ago_s=20)
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204
    assert 35_000 < redis.pttl(key) <= 40_000  # more than 30 s left: left alone (no write, no invalidation)
    _age(redis, world, world.buyer, pttl_ms=5_000, read_ago_s=55)
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204
    assert 55_000 < redis.pttl(key) <= 60_000  # extended to a full TTL


def test_an_entry_is_never_extended_past_its_maximum_age(client: FlaskClient, world: World, redis: Any) -> None:
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204
    max_age = service.ACCESS_CACHE_MAX_AGE_SECONDS
    key = _age(redis, world, world.buyer, pttl_ms=5_000, read_ago_s=max_age - 20)
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204
    assert 15_000 < redis.pttl(key) <= 20_000  # up to the maximum age only
    key = _age(redis, world, world.buyer, pttl_ms=5_000, read_ago_s=max_age + 1)
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204
    assert redis.pttl(key) <= 5_000  # too old: expires, and the next request reads Postgres
    redis.set(key, "purchased", px=5_000)  # an entry without its read time (older code) is never extended
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204
    assert redis.pttl(key) <= 5_000


def test_the_fast_stream_path_extends_the_entry_it_reads(
    app: Flask, client: FlaskClient, world: World, redis: Any
) -> None:
    middleware = layer_of(app, FastPath)
    bearer = auth(signed_in(world.buyer))
    url = f"/api/v1/content/{world.content.id}/stream"

    def stream_fast() -> None:
        """One stream URL answered below Flask (the first ones warm the caches; see test_fast_path)."""
        answered = answered_fast(middleware, "streams", lambda: client.get(url, headers=bearer), 200, "stream URL")
        assert answered.status_code == 200

    stream_fast()
    key = _age(redis, world, world.buyer, pttl_ms=10_000, read_ago_s=50)  # (the near cache drops its copy)
    stream_fast()
    assert 55_000 < redis.pttl(key) <= 60_000


def test_the_near_cache_drops_an_access_entry_before_redis_would_expire_it(app: Flask, redis: Any) -> None:
    near: NearCache = app.extensions["near_cache"]
    assert near.wait_usable(5)
    early = keys.NEAR_CACHE_EXPIRE_EARLY[keys.ACCESS_PREFIX]
    entry, other = keys.access_entry("u", "c"), keys.content_generation("c")
    epoch = near.sync()
    assert epoch is not None
    near.fill(epoch, [(entry, b"none@1", early + 0.2), (other, b"g", early + 0.2)])
    assert near.get(entry) == b"none@1" and near.get(other) == b"g"
    time.sleep(0.3)
    near.sync()
    assert near.get(entry) is not None and type(near.get(entry)).__name__ == "Miss"  # gone while Redis still has it
    assert near.get(other) == b"g"


# ---- staff status: every writer drops the user's entries -----------------------------------------


def test_a_removed_member_loses_staff_access_at_once(client: FlaskClient, world: World, redis: Any) -> None:
    member = staff(world)
    assert stream(client, member, world.content.id).status_code == 200
    assert heartbeat(client, member, world.content.id).status_code == 204
    assert decode_reason(_entry(redis, world, member)[0]) == "staff"
    gone = client.delete(f"/api/v1/orgs/{world.org.id}/members/{member.id}", headers=headers(world.owner))
    assert gone.status_code == 204
    assert _entry(redis, world, member)[0] == TOMBSTONE  # buried after the commit
    assert stream(client, member, world.content.id).status_code == 403
    assert heartbeat(client, member, world.content.id).status_code == 403


def test_a_new_member_is_staff_at_once(client: FlaskClient, db_session: Any, world: World, redis: Any) -> None:
    world.stranger.email_verified_at = datetime.now(UTC)
    db_session.flush()
    invite = client.post(
        f"/api/v1/orgs/{world.org.id}/invitations",
        json={"email": world.stranger.email, "role": "creator"},
        headers=headers(world.owner),
    )
    assert invite.status_code == 201, invite.json
    assert stream(client, world.stranger, world.content.id).status_code == 403  # caches "none"
    assert decode_reason(_entry(redis, world, world.stranger)[0]) == "none"
    token = _invitation_token(db_session)
    accepted = client.post("/api/v1/invitations/accept", json={"token": token}, headers=headers(world.stranger))
    assert accepted.status_code in (200, 201), accepted.json
    assert _entry(redis, world, world.stranger)[0] == TOMBSTONE
    assert stream(client, world.stranger, world.content.id).status_code == 200


def test_a_promoted_platform_owner_is_staff_at_once(
    app: Flask, client: FlaskClient, db_session: Any, world: World, redis: Any
) -> None:
    assert stream(client, world.stranger, world.content.id).status_code == 403
    assert decode_reason(_entry(redis, world, world.stranger)[0]) == "none"
    with app.app_context():
        _, outcome = identity_service.set_platform_owner(
            db_session, email=world.stranger.email, password=None, name="Owner"
        )
        db_session.commit()
    assert outcome == "promoted"
    assert _entry(redis, world, world.stranger)[0] == TOMBSTONE


def _invitation_token(db_session: Any) -> str:
    db_session.expire_all()
    email = db_session.scalars(select(EmailOutbox).where(EmailOutbox.template == "org-invitation")).one()
    return str(parse_qs(urlsplit(email.context["accept_url"]).query)["token"][0])


# ---- a change committed while a request reads Postgres ---------------------------------------------


def test_an_answer_read_before_a_revoke_is_not_cached_after_it(
    app: Flask, client: FlaskClient, db_session: Any, world: World, redis: Any, monkeypatch: Any
) -> None:
    """The race a tombstone closes: a request reads Postgres while the grant is live, the revoke
    commits and its after-commit hook runs, then the request caches what it read. The entry stays
    buried, so the next request reads Postgres and sees the revoke. After a plain delete, the old
    "purchased" would have been cached and kept alive by every heartbeat for up to 5 minutes."""
    grant = db_session.scalars(
        select(ContentAccess).where(
            ContentAccess.user_id == world.buyer.id, ContentAccess.content_id == world.content.id
        )
    ).one()
    read = service._entitlement_from_db

    def read_then_revoke(session: Any, user_id: Any, meta: Any) -> Any:
        answer = read(session, user_id, meta)  # the grant is live
        assert grants.revoke_by_admin(session, grant, revoked_by=world.owner.id)
        session.commit()  # (another request's revoke; its after-commit hook buries the entry)
        return answer

    monkeypatch.setattr(service, "_entitlement_from_db", read_then_revoke)
    with app.app_context():
        meta = service.load_snapshot(db_session, world.content.id, "").meta
        assert service.entitlement(db_session, app.extensions["redis"], world.buyer.id, meta) == "purchased"
    monkeypatch.undo()
    assert _entry(redis, world, world.buyer)[0] == TOMBSTONE  # what the request read was not cached
    assert stream(client, world.buyer, world.content.id).status_code == 403
    assert heartbeat(client, world.buyer, world.content.id).status_code == 403
    assert _entry(redis, world, world.buyer)[0] == TOMBSTONE  # (not even the new answer, while it lasts)
    redis.delete(access_cache_key(world.buyer.id, world.content.id))  # the tombstone expired
    assert stream(client, world.buyer, world.content.id).status_code == 403
    assert decode_reason(_entry(redis, world, world.buyer)[0]) == "none"  # cached again


def test_a_heartbeat_over_a_tombstone_asks_postgres(client: FlaskClient, world: World, redis: Any) -> None:
    """A buried entry is a miss for the heartbeat's script too: granted access still plays."""
    redis.set(access_cache_key(world.buyer.id, world.content.id), TOMBSTONE, ex=30)
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204
    assert stream(client, world.buyer, world.content.id).status_code == 200
    assert heartbeat(client, world.stranger, world.content.id).status_code == 403


def test_no_answer_of_a_user_is_cached_just_after_a_staff_change(
    app: Flask, client: FlaskClient, world: World, redis: Any
) -> None:
    """Dropping a user's entries also marks the user for a while: an entry that was not cached when
    the staff status changed (so not in the index the drop reads) cannot be cached by a request that
    read Postgres before the change either."""
    member = staff(world)
    other = world.add_content(title="Not yet watched")
    assert stream(client, member, world.content.id).status_code == 200
    with app.app_context():
        drop_user_access(app.extensions["redis"], member.id)
    assert redis.exists(keys.access_blocked(member.id)) == 1
    assert _entry(redis, world, member)[0] == TOMBSTONE
    assert stream(client, member, other.id).status_code == 200  # still staff in Postgres: served …
    assert redis.get(access_cache_key(member.id, other.id)) is None  # … but not cached while marked
    redis.delete(keys.access_blocked(member.id))
    assert stream(client, member, other.id).status_code == 200
    assert decode_reason(redis.get(access_cache_key(member.id, other.id))) == "staff"
