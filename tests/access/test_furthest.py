"""The furthest position (``playback_progress.max_position_seconds``, data-model.md): kept by the
heartbeat script and the flush, never lowered whatever order heartbeats and flushes arrive in,
clamped to the duration, and never a database write on the heartbeat request path."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis as redis_lib
from flask import Flask
from sqlalchemy.orm import Session

from app.access import progress
from app.access.models import PlaybackProgress
from app.content.models import Content
from tasks.playback import flush
from tests.access.helpers import World, headers
from tests.access.test_progress import iso, statements, writes

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def beat(session: Session, client: Any, user_id: uuid.UUID, content: Content, position: int, ts: datetime,
         duration: int = 600) -> str:  # fmt: skip
    hb = progress.normalise(position, duration, False, ts, datetime.now(UTC))
    return progress.record(
        session, client, user_id=user_id, content_id=content.id, organization_id=content.organization_id,
        heartbeat=hb, now=datetime.now(UTC),
    )  # fmt: skip


def stored(session: Session, world: World) -> PlaybackProgress:
    session.expire_all()
    row = session.get(PlaybackProgress, (world.buyer.id, world.content.id))
    assert row is not None
    return row


def hash_max(client: redis_lib.Redis, world: World) -> int:
    return int(client.hget(f"pb:p:{world.buyer.id}:{world.content.id}", "max") or -1)


def test_a_late_heartbeat_raises_the_furthest_position_but_not_the_position(
    world: World, db_session: Session, redis: Any
) -> None:
    user, item = world.buyer.id, world.content
    assert beat(db_session, redis, user, item, 100, T0) == "applied"
    assert beat(db_session, redis, user, item, 50, T0 + timedelta(seconds=60)) == "applied"  # a seek back
    assert hash_max(redis, world) == 100
    # Sent at T0 + 30 s (the viewer had reached 300 before seeking back), delivered last.
    assert beat(db_session, redis, user, item, 300, T0 + timedelta(seconds=30)) == "ignored"
    assert hash_max(redis, world) == 300
    assert flush(db_session, redis).entries == 1
    row = stored(db_session, world)
    assert (row.position_seconds, row.max_position_seconds, row.client_ts) == (50, 300, T0 + timedelta(seconds=60))


def test_an_older_lower_heartbeat_changes_nothing_and_dirties_nothing(
    world: World, db_session: Session, redis: Any
) -> None:
    user, item = world.buyer.id, world.content
    beat(db_session, redis, user, item, 200, T0 + timedelta(seconds=60))
    flush(db_session, redis)
    assert beat(db_session, redis, user, item, 100, T0) == "ignored"
    assert redis.scard("pb:dirty") == 0  # nothing new to flush
    assert hash_max(redis, world) == 200


def test_the_furthest_position_survives_a_lost_buffer_and_seeks_back(
    world: World, db_session: Session, redis: Any
) -> None:
    user, item = world.buyer.id, world.content
    for seconds, position in ((0, 10), (30, 40), (60, 420), (90, 450), (100, 100)):  # the last one: a seek back
        beat(db_session, redis, user, item, position, T0 + timedelta(seconds=seconds))
    flush(db_session, redis)
    row = stored(db_session, world)
    assert (row.position_seconds, row.max_position_seconds) == (100, 450)
    redis.flushdb()  # Redis restarted: the next heartbeat initialises the hash from the row
    beat(db_session, redis, user, item, 5, T0 + timedelta(seconds=120))  # watching again from the start
    beat(db_session, redis, user, item, 35, T0 + timedelta(seconds=150))
    assert hash_max(redis, world) == 100  # the hash starts from the row's position, a lower bound …
    flush(db_session, redis)
    row = stored(db_session, world)
    assert (row.position_seconds, row.max_position_seconds) == (35, 450)  # … the flush keeps the greater


def test_the_furthest_position_is_clamped_to_the_duration(world: World, db_session: Session, redis: Any) -> None:
    user, item = world.buyer.id, world.content
    beat(db_session, redis, user, item, 9000, T0, duration=600)  # past the end: clamped like the position
    flush(db_session, redis)
    row = stored(db_session, world)
    assert (row.position_seconds, row.max_position_seconds) == (600, 600)
    # A stale entry (a slow flusher) with a furthest position past its duration cannot exceed it either.
    rows = progress.Rows()
    rows.add(str(user), str(item.id), 10, 600, False, None, progress.to_ms(T0 - timedelta(days=1)), 9999)
    progress.write_rows(db_session, rows)
    db_session.commit()
    assert stored(db_session, world).max_position_seconds == 600


def test_a_stale_flush_raises_only_the_furthest_position(world: World, db_session: Session, redis: Any) -> None:
    user, item = world.buyer.id, world.content
    beat(db_session, redis, user, item, 100, T0)
    beat(db_session, redis, user, item, 400, T0 + timedelta(seconds=20))  # a seek forward
    slow = progress.claim_batch(redis)  # a slow flusher holds (pos 400, furthest 400, ts T0 + 20 s) …
    beat(db_session, redis, user, item, 30, T0 + timedelta(seconds=60))  # … the viewer seeks back
    redis.hdel(f"pb:p:{user}:{item.id}", "max")  # (as a hash written before this field existed)
    flush(db_session, redis)
    assert stored(db_session, world).max_position_seconds == 30
    progress.write_rows(db_session, slow.rows)  # … and commits last: older, so only the furthest moves
    db_session.commit()
    row = stored(db_session, world)
    assert (row.position_seconds, row.max_position_seconds, row.client_ts) == (30, 400, T0 + timedelta(seconds=60))


def test_redis_down_writes_the_furthest_position_with_the_same_guards(
    world: World, db_session: Session, redis: Any
) -> None:
    user, item = world.buyer.id, world.content
    down = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    assert beat(db_session, down, user, item, 300, T0) == "database"
    assert beat(db_session, down, user, item, 20, T0 + timedelta(seconds=30)) == "database"
    row = stored(db_session, world)
    assert (row.position_seconds, row.max_position_seconds) == (20, 300)


def test_the_heartbeat_request_writes_nothing_to_postgres(
    app: Flask, client: Any, world: World, db_session: Session, redis: Any
) -> None:
    url = f"/api/v1/content/{world.content.id}/progress"
    body = {"position_seconds": 10, "duration_seconds": 600, "client_ts": iso(datetime.now(UTC))}
    hdrs = headers(world.buyer)
    with statements(app) as cold:
        assert client.put(url, json=body, headers=hdrs).status_code == 204
    assert writes(cold) == []  # reads to warm the caches, no write
    later = {**body, "position_seconds": 5, "client_ts": iso(datetime.now(UTC) + timedelta(seconds=1))}
    with statements(app) as warm:
        assert client.put(url, json=later, headers=hdrs).status_code == 204
    assert warm == []  # a seek back keeps the furthest position without a single SQL statement
    assert hash_max(redis, world) == 10


def test_a_late_heartbeat_during_the_library_flush_stays_dirty(world: World, db_session: Session, redis: Any) -> None:
    """The library flushes the caller's buffer, then marks the entries clean that still hold what it
    wrote. A late heartbeat landing in between changes the furthest position but not ``ts``: its
    entry must stay dirty, or that furthest position would never reach Postgres."""
    user, item = world.buyer.id, world.content
    beat(db_session, redis, user, item, 170, T0 + timedelta(seconds=60))
    flushed = progress.flush_user(db_session, redis, user)  # the library's flush reads (170, ts T0 + 60 s) …
    db_session.commit()
    assert beat(db_session, redis, user, item, 344, T0) == "ignored"  # … a late heartbeat raises max …
    progress.forget_user_flushed(redis, user, flushed)  # … then the library marks what it wrote clean
    assert redis.smembers("pb:dirty") == {f"{user}:{item.id}".encode()}
    assert flush(db_session, redis).entries == 1
    row = stored(db_session, world)
    assert (row.position_seconds, row.max_position_seconds) == (170, 344)


def test_a_same_ts_heartbeat_during_the_library_flush_stays_dirty(
    world: World, db_session: Session, redis: Any
) -> None:
    """Two heartbeats with the same client clock (a player that stamps per second) and different
    positions: the second one, applied while the library flushed the first, is still flushed."""
    user, item = world.buyer.id, world.content
    beat(db_session, redis, user, item, 100, T0)
    flushed = progress.flush_user(db_session, redis, user)
    db_session.commit()
    assert beat(db_session, redis, user, item, 90, T0) == "applied"  # the same ts: applied, ts unchanged
    progress.forget_user_flushed(redis, user, flushed)
    assert redis.scard(f"pb:dirty:u:{user}") == 1
    flush(db_session, redis)
    assert stored(db_session, world).position_seconds == 90
    # With nothing new in between, the library's flush does mark the entry clean.
    beat(db_session, redis, user, item, 95, T0 + timedelta(seconds=5))
    flushed = progress.flush_user(db_session, redis, user)
    db_session.commit()
    progress.forget_user_flushed(redis, user, flushed)
    assert redis.scard("pb:dirty") == 0 and redis.scard(f"pb:dirty:u:{user}") == 0
