"""Progress: PUT/GET (api.md §10), the Redis write script, the flush (jobs.md §7.1, §7.2)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import keys
from app.access import progress
from app.access.models import PlaybackProgress
from app.content.models import Content
from app.schemas import format_timestamp
from tasks.playback import flush
from tests import factories
from tests.access.helpers import World, give_comp, headers

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)  # a fixed client clock in the past


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def put(client: FlaskClient, user: Any, content_id: Any, token: str | None = None, **body: Any) -> Any:
    return client.put(
        f"/api/v1/content/{content_id}/progress", json=body, headers=headers(user) if token is None else token
    )


def get(client: FlaskClient, user: Any, content_id: Any) -> Any:
    return client.get(f"/api/v1/content/{content_id}/progress", headers=headers(user))


def past(seconds: float) -> str:
    return iso(datetime.now(UTC) - timedelta(seconds=seconds))


def rows(db_session: Session) -> list[PlaybackProgress]:
    db_session.expire_all()
    return list(db_session.scalars(select(PlaybackProgress)))


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement run on the app's engine inside the block."""
    seen: list[str] = []
    engine = app.extensions["db"].engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def writes(seen: list[str]) -> list[str]:
    return [s for s in seen if s.split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}]


# ---- PUT / GET ---------------------------------------------------------------------------------------


def test_put_then_get_from_redis_without_touching_the_database(
    app: Flask, client: FlaskClient, world: World, db_session: Session, redis: Any
) -> None:
    hdrs = headers(world.buyer)
    with statements(app) as seen:
        response = client.put(
            f"/api/v1/content/{world.content.id}/progress",
            json={"position_seconds": 812.9, "duration_seconds": 1800.7, "client_ts": past(5)},
            headers=hdrs,
        )
    assert response.status_code == 204 and response.data == b""
    assert writes(seen) == []  # the request path only reads
    with statements(app) as warm:  # session, content snapshot and access rule all cached now
        again = client.put(
            f"/api/v1/content/{world.content.id}/progress",
            json={"position_seconds": 815, "duration_seconds": 1800.7, "client_ts": past(2)},
            headers=hdrs,
        )
    assert again.status_code == 204 and warm == []  # not a single SQL statement
    assert rows(db_session) == []
    body = get(client, world.buyer, world.content.id).json
    assert body["content_id"] == str(world.content.id)
    assert (body["position_seconds"], body["duration_seconds"], body["completed"]) == (815, 1800, False)
    assert body["percent_complete"] == 45 and body["client_ts"].endswith("Z") and body["updated_at"]
    member = f"{world.buyer.id}:{world.content.id}"
    assert redis.sismember("pb:dirty", member)
    assert redis.sismember(f"pb:dirty:u:{world.buyer.id}", str(world.content.id))
    assert 0 < redis.ttl(f"pb:p:{member}") <= 7 * 86400


def test_get_without_progress_is_null_and_needs_no_grant(client: FlaskClient, world: World) -> None:
    response = get(client, world.stranger, world.content.id)
    assert response.status_code == 200 and response.json is None
    assert get(client, world.stranger, uuid.uuid4()).status_code == 404


def test_out_of_order_heartbeats_keep_the_newest(client: FlaskClient, world: World) -> None:
    newer, older = datetime.now(UTC) - timedelta(seconds=10), datetime.now(UTC) - timedelta(seconds=40)
    assert put(client, world.buyer, world.content.id, position_seconds=300, duration_seconds=600,
               client_ts=iso(newer)).status_code == 204  # fmt: skip
    assert put(client, world.buyer, world.content.id, position_seconds=100, duration_seconds=600,
               client_ts=iso(older)).status_code == 204  # fmt: skip
    body = get(client, world.buyer, world.content.id).json
    assert body["position_seconds"] == 300 and body["client_ts"] == format_timestamp(newer)


def test_completion_is_sticky(client: FlaskClient, world: World) -> None:
    put(client, world.buyer, world.content.id, position_seconds=570, duration_seconds=600, client_ts=past(30))
    assert get(client, world.buyer, world.content.id).json["completed"] is True  # 95 %
    put(client, world.buyer, world.content.id, position_seconds=10, duration_seconds=600, client_ts=past(20))
    body = get(client, world.buyer, world.content.id).json
    assert body["completed"] is True and body["position_seconds"] == 10 and body["percent_complete"] == 2
    other = world.add_content(price_cents=None)
    put(client, world.buyer, other.id, position_seconds=1, duration_seconds=600, completed=True)
    assert get(client, world.buyer, other.id).json["completed"] is True
    almost = world.add_content(price_cents=None)
    put(client, world.buyer, almost.id, position_seconds=569, duration_seconds=600)  # 94.8 %
    assert get(client, world.buyer, almost.id).json["completed"] is False


def test_position_beyond_duration_is_clamped_and_future_client_ts_is_now(client: FlaskClient, world: World) -> None:
    far = iso(datetime.now(UTC) + timedelta(hours=2))
    assert put(client, world.buyer, world.content.id, position_seconds=900, duration_seconds=600,
               client_ts=far).status_code == 204  # fmt: skip
    body = get(client, world.buyer, world.content.id).json
    assert (body["position_seconds"], body["percent_complete"], body["completed"]) == (600, 100, True)
    stored = datetime.fromisoformat(body["client_ts"].replace("Z", "+00:00"))
    assert abs((stored - datetime.now(UTC)).total_seconds()) < 10
    # Because it was clamped, a normal heartbeat a moment later is not locked out by the bogus clock.
    assert put(client, world.buyer, world.content.id, position_seconds=30, duration_seconds=600).status_code == 204
    assert get(client, world.buyer, world.content.id).json["position_seconds"] == 30


@pytest.mark.parametrize(
    "body, field",
    [
        ({"position_seconds": -1, "duration_seconds": 600}, "position_seconds"),
        ({"position_seconds": "12", "duration_seconds": 600}, "position_seconds"),
        ({"position_seconds": True, "duration_seconds": 600}, "position_seconds"),
        ({"duration_seconds": 600}, "position_seconds"),
        ({"position_seconds": 1, "duration_seconds": 0}, "duration_seconds"),
        ({"position_seconds": 1, "duration_seconds": 86401}, "duration_seconds"),
        ({"position_seconds": 1}, "duration_seconds"),
        ({"position_seconds": 1, "duration_seconds": 600, "completed": "yes"}, "completed"),
        ({"position_seconds": 1, "duration_seconds": 600, "client_ts": "yesterday"}, "client_ts"),
        ({"position_seconds": 1, "duration_seconds": 600, "speed": 2}, "speed"),
    ],
)
def test_bad_progress_input_is_400(client: FlaskClient, world: World, body: dict[str, Any], field: str) -> None:
    response = put(client, world.buyer, world.content.id, **body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "VALIDATION_ERROR" and field in response.json["error"]["details"]


def test_a_huge_integer_position_is_400_not_500(client: FlaskClient, world: World) -> None:
    body = b'{"position_seconds": 1' + b"0" * 400 + b', "duration_seconds": 600}'
    response = client.put(
        f"/api/v1/content/{world.content.id}/progress",
        data=body,
        headers={**headers(world.buyer), "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "position_seconds" in response.json["error"]["details"]


_TS = [
    "2025-03-02T12:10:05.000Z",
    "2025-03-02T12:10:05Z",
    "2025-03-02T12:10:05",
    "2025-03-02T12:10:05.123456+02:00",
    "2025-03-02T12:10:05.1Z",
    "2025-02-30T12:10:05Z",
    "2025-03-02T24:10:05Z",
    "2025-03-02T12:10:05+24:00",
    "2025-03-02 12:10:05Z",
    "2025-03-02",
    "\u0662025-03-02T12:10:05Z",
    "2025-03-02T12:10:05.000Z\n",
    "",
    None,
    5,
]
_NUMBERS = [0, 1, 12.5, -1, -0.0, 86400, 86401, 1e12, 1e13, 10**400, float("nan"), float("inf"), True, "12", None]


@pytest.mark.parametrize("position", _NUMBERS)
@pytest.mark.parametrize("duration", [1, 600.5, 0, 86400.0, 86400.5, False])
def test_fast_progress_load_agrees_with_the_schema(position: Any, duration: Any) -> None:
    import marshmallow as ma

    from app.access.schemas import ProgressUpdateSchema, fast_progress

    schema = ProgressUpdateSchema()
    bodies: list[Any] = [{"position_seconds": position, "duration_seconds": duration}]
    bodies += [{**bodies[0], "client_ts": ts} for ts in _TS]
    bodies += [{**bodies[0], "completed": c} for c in (True, False, None, 1, "true")]
    bodies += [{**bodies[0], "speed": 2}, {"position_seconds": position}, [bodies[0]], "x", None]
    for body in bodies:
        fast = fast_progress(body)
        try:
            slow: Any = schema.load(body)
        except (ma.ValidationError, OverflowError) as exc:
            slow = exc
        if fast is not None:  # the fast path only ever answers where the schema loads the same
            assert fast == slow and type(fast["position_seconds"]) is float, body


def test_progress_write_needs_access_and_visibility(client: FlaskClient, world: World) -> None:
    denied = put(client, world.stranger, world.content.id, position_seconds=1, duration_seconds=60)
    assert denied.status_code == 403 and denied.json["error"]["code"] == "ACCESS_DENIED"
    draft = world.add_content(status="draft", published_at=None)
    give_comp(world.stranger, draft)
    assert put(client, world.stranger, draft.id, position_seconds=1, duration_seconds=60).status_code == 404
    assert put(client, world.stranger, "nope", position_seconds=1, duration_seconds=60).status_code == 404
    assert client.put(f"/api/v1/content/{world.content.id}/progress", json={}).status_code == 401


def test_without_redis_the_write_goes_to_postgres_with_the_same_guards(
    app: Flask, client: FlaskClient, world: World, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise redis_lib.ConnectionError("down")

    monkeypatch.setattr(progress, "redis_script", down)
    monkeypatch.setattr(app.extensions["redis"], "hgetall", down)
    put(client, world.buyer, world.content.id, position_seconds=590, duration_seconds=600, client_ts=past(20))
    put(client, world.buyer, world.content.id, position_seconds=5, duration_seconds=600, client_ts=past(60))
    [row] = rows(db_session)
    assert (row.position_seconds, row.completed) == (590, True) and row.completed_at is not None
    put(client, world.buyer, world.content.id, position_seconds=7, duration_seconds=600, client_ts=past(1))
    [row] = rows(db_session)
    assert (row.position_seconds, row.completed) == (7, True)
    assert get(client, world.buyer, world.content.id).json["position_seconds"] == 7


# ---- flush ---------------------------------------------------------------------------------------------


def _heartbeat(session: Session, client: Any, user_id: uuid.UUID, content: Content, position: int, ts: datetime) -> str:
    hb = progress.normalise(position, 600, False, ts, datetime.now(UTC))
    return progress.record(
        session, client, user_id=user_id, content_id=content.id, organization_id=content.organization_id,
        heartbeat=hb, now=datetime.now(UTC),
    )  # fmt: skip


def test_flush_writes_n_dirty_entries_with_one_statement(
    app: Flask, world: World, db_session: Session, redis: Any
) -> None:
    users = [factories.UserFactory() for _ in range(40)]
    contents = [world.content, world.add_content(price_cents=None)]
    for i, user in enumerate(users):
        for content in contents:
            _heartbeat(db_session, redis, user.id, content, 10 + i, T0)
    assert redis.scard("pb:dirty") == 80
    with statements(app) as seen:
        report = flush(db_session, redis)
    assert (report.batches, report.entries, report.failed) == (1, 80, False)
    assert [s for s in writes(seen) if "playback_progress" in s] == [writes(seen)[0]] and len(writes(seen)) == 1
    assert writes(seen)[0].startswith("INSERT INTO playback_progress")
    stored = {(r.user_id, r.content_id): r.position_seconds for r in rows(db_session)}
    assert len(stored) == 80 and stored[(users[7].id, contents[1].id)] == 17
    assert redis.scard("pb:dirty") == 0 and redis.scard(f"pb:dirty:u:{users[0].id}") == 0
    assert flush(db_session, redis).entries == 0


def test_flush_batches_and_limits(world: World, db_session: Session, redis: Any) -> None:
    users = [factories.UserFactory() for _ in range(7)]
    for user in users:
        _heartbeat(db_session, redis, user.id, world.content, 5, T0)
    report = flush(db_session, redis, batch_size=3, max_batches=2)
    assert (report.batches, report.entries) == (2, 6) and redis.scard("pb:dirty") == 1
    assert flush(db_session, redis, batch_size=3).entries == 1 and len(rows(db_session)) == 7


def test_an_older_flush_never_overwrites_newer_data(world: World, db_session: Session, redis: Any) -> None:
    user = world.buyer
    _heartbeat(db_session, redis, user.id, world.content, 100, T0)
    stale = progress.claim_batch(redis)  # a slow flusher took the old value …
    _heartbeat(db_session, redis, user.id, world.content, 200, T0 + timedelta(seconds=30))
    assert flush(db_session, redis).entries == 1  # … a faster one writes the new value first
    progress.write_rows(db_session, stale.rows)  # … then the slow one commits
    db_session.commit()
    [row] = rows(db_session)
    assert row.position_seconds == 200 and row.client_ts == T0 + timedelta(seconds=30)


def test_completed_stays_true_in_postgres(world: World, db_session: Session, redis: Any) -> None:
    _heartbeat(db_session, redis, world.buyer.id, world.content, 599, T0)
    flush(db_session, redis)
    first = rows(db_session)[0].completed_at
    redis.flushdb()  # the buffer is gone; the next write initialises from Postgres
    _heartbeat(db_session, redis, world.buyer.id, world.content, 3, T0 + timedelta(seconds=10))
    flush(db_session, redis)
    [row] = rows(db_session)
    assert (row.position_seconds, row.completed, row.completed_at) == (3, True, first)


def test_a_failed_database_write_puts_the_batch_back(
    world: World, db_session: Session, redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _heartbeat(db_session, redis, world.buyer.id, world.content, 42, T0)
    db_session.commit()  # the failed batch's rollback must not take the test's rows with it

    def broken(session: Session, entries: Any) -> int:
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(progress, "write_rows", broken)
    report = flush(db_session, redis)
    assert report.failed and report.entries == 0
    assert redis.smembers("pb:dirty") == {f"{world.buyer.id}:{world.content.id}".encode()}
    monkeypatch.undo()
    assert flush(db_session, redis).entries == 1 and rows(db_session)[0].position_seconds == 42


def test_losing_redis_loses_only_the_unflushed_window(
    client: FlaskClient, world: World, db_session: Session, redis: Any
) -> None:
    hb = {"duration_seconds": 600}
    put(client, world.buyer, world.content.id, position_seconds=100, client_ts=past(60), **hb)
    assert flush(db_session, redis).entries == 1
    put(client, world.buyer, world.content.id, position_seconds=130, client_ts=past(30), **hb)  # not flushed
    redis.flushdb()  # Redis restarts empty (or is killed) before the next flush
    body = get(client, world.buyer, world.content.id).json
    assert body["position_seconds"] == 100  # the flushed state survives; only the window is lost
    # A late heartbeat older than what Postgres holds cannot roll it back …
    put(client, world.buyer, world.content.id, position_seconds=5, client_ts=past(90), **hb)
    assert get(client, world.buyer, world.content.id).json["position_seconds"] == 100
    flush(db_session, redis)
    assert rows(db_session)[0].position_seconds == 100
    # … and new heartbeats carry on as usual.
    put(client, world.buyer, world.content.id, position_seconds=160, client_ts=past(1), **hb)
    flush(db_session, redis)
    assert rows(db_session)[0].position_seconds == 160


def test_a_hash_started_from_the_row_counts_on_from_it(
    client: FlaskClient, world: World, db_session: Session, redis: Any
) -> None:
    """The script starts a missing hash from the Postgres row and applies the heartbeat over it
    in the same call: the watched seconds count from the row's position and client_ts."""
    hb = {"duration_seconds": 600}
    put(client, world.buyer, world.content.id, position_seconds=100, client_ts=past(60), **hb)
    assert flush(db_session, redis).entries == 1
    redis.flushdb()  # the hash, the day's counters and the seen marker are gone; the row stays
    assert put(client, world.buyer, world.content.id, position_seconds=130, client_ts=past(30), **hb).status_code == 204
    stats = redis.hgetall(keys.daily_stats(progress.day_stamp(datetime.now(UTC).date()), world.content.id))
    assert stats[b"seconds_watched"] == b"30" and stats[b"views_started"] == b"1"
    stored = redis.hgetall(keys.progress(world.buyer.id, world.content.id))
    assert (stored[b"pos"], stored[b"max"], stored[b"completed"]) == (b"130", b"130", b"0")


def test_flush_skips_entries_of_content_that_no_longer_exists(world: World, db_session: Session, redis: Any) -> None:
    ghost = uuid.uuid4()
    redis.hset(f"pb:p:{world.buyer.id}:{ghost}", mapping={"pos": 1, "dur": 10, "completed": "0", "ts": 1})
    redis.sadd("pb:dirty", f"{world.buyer.id}:{ghost}", "garbage")
    _heartbeat(db_session, redis, world.buyer.id, world.content, 9, T0)
    report = flush(db_session, redis)
    assert not report.failed and [r.content_id for r in rows(db_session)] == [world.content.id]
    assert db_session.scalar(select(func.count()).select_from(PlaybackProgress)) == 1


def test_deleted_content_rows_are_not_written(world: World, db_session: Session, redis: Any) -> None:
    _heartbeat(db_session, redis, world.buyer.id, world.content, 9, T0)
    db_session.execute(update(Content).where(Content.id == world.content.id).values(deleted_at=func.now()))
    # Soft-deleted content still exists: its progress is kept (grants and history are kept too).
    assert flush(db_session, redis).entries == 1 and len(rows(db_session)) == 1
