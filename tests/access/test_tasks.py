"""The playback tasks: watch statistics rollup (jobs.md §7.3), registration, queues and beat."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.access import progress, stats
from app.access.models import ContentDailyStats, PlaybackProgress
from app.content.models import Content
from app.jobs import queue_for
from tasks.playback import rollup
from tasks.schedule import beat_schedule
from tests import factories
from tests.access.helpers import World


def beat(session: Session, client: Any, user_id: uuid.UUID, content: Content, position: int, at: datetime,
         *, completed: bool = False) -> str:  # fmt: skip
    hb = progress.normalise(position, 600, completed, at, datetime.now(UTC))
    return progress.record(
        session, client, user_id=user_id, content_id=content.id, organization_id=content.organization_id,
        heartbeat=hb, now=datetime.now(UTC),
    )  # fmt: skip


def day_rows(session: Session) -> list[ContentDailyStats]:
    session.expire_all()
    return list(session.scalars(select(ContentDailyStats).order_by(ContentDailyStats.content_id)))


def counts(row: ContentDailyStats) -> tuple[int, int, int]:
    return row.views_started, row.seconds_watched, row.completions


def watch(session: Session, client: Any, world: World) -> None:
    """Two viewers: 50 s watched and one completion by the first, a start by the second."""
    t = datetime.now(UTC) - timedelta(minutes=10)
    user = world.buyer
    beat(session, client, user.id, world.content, 0, t)
    beat(session, client, user.id, world.content, 30, t + timedelta(seconds=30))  # +30 s
    beat(session, client, user.id, world.content, 400, t + timedelta(seconds=40))  # a seek: not watched time
    beat(session, client, user.id, world.content, 420, t + timedelta(seconds=60))  # +20 s
    beat(session, client, user.id, world.content, 410, t + timedelta(seconds=35))  # stale: ignored
    beat(session, client, user.id, world.content, 420, t + timedelta(seconds=70), completed=True)
    beat(session, client, user.id, world.content, 420, t + timedelta(seconds=80), completed=True)  # once only
    other = factories.UserFactory()
    beat(session, client, other.id, world.content, 0, t)


def test_counters_and_rollup(world: World, db_session: Session, redis: Any) -> None:
    watch(db_session, redis, world)
    today = datetime.now(UTC).date()
    live = redis.hgetall(f"pb:stats:{today:%Y%m%d}:{world.content.id}")
    assert {k: int(v) for k, v in live.items() if k != b"org"} == {
        b"views_started": 2, b"seconds_watched": 50, b"completions": 1,
    }  # fmt: skip
    report = rollup(db_session, redis)
    assert (report.batches, report.entries, report.failed) == (1, 1, False)
    [row] = day_rows(db_session)
    assert (row.content_id, row.day, row.organization_id) == (world.content.id, today, world.org.id)
    assert counts(row) == (2, 50, 1)
    assert redis.exists(f"pb:stats:{today:%Y%m%d}:{world.content.id}") == 0 and redis.scard("pb:stats:dirty") == 0


def test_rerunning_the_rollup_adds_nothing_new(world: World, db_session: Session, redis: Any) -> None:
    watch(db_session, redis, world)
    rollup(db_session, redis)
    assert rollup(db_session, redis).entries == 0
    assert rollup(db_session, redis).entries == 0
    [row] = day_rows(db_session)
    assert counts(row) == (2, 50, 1)
    # More watching the same day is added to the same row.
    beat(db_session, redis, world.buyer.id, world.content, 430, datetime.now(UTC) - timedelta(seconds=1))
    rollup(db_session, redis)
    [row] = day_rows(db_session)
    assert counts(row) == (2, 60, 1)


def test_a_failed_write_merges_the_counters_back(
    world: World, db_session: Session, redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch(db_session, redis, world)
    db_session.commit()  # the failed batch's rollback must not take the test's rows with it

    def broken(session: Session, counters: Any) -> int:
        raise OperationalError("INSERT", {}, Exception("connection lost"))

    monkeypatch.setattr(stats, "write_counters", broken)
    assert rollup(db_session, redis).failed
    assert day_rows(db_session) == [] and redis.scard("pb:stats:dirty") == 1
    assert list(redis.scan_iter(match="pb:stats:inflight:*")) == []
    # Heartbeats keep counting meanwhile; the next run writes everything once.
    beat(db_session, redis, factories.UserFactory().id, world.content, 0, datetime.now(UTC))
    monkeypatch.undo()
    rollup(db_session, redis)
    [row] = day_rows(db_session)
    assert counts(row) == (3, 50, 1)


def test_counters_left_by_a_crashed_run_are_counted_once(world: World, db_session: Session, redis: Any) -> None:
    watch(db_session, redis, world)
    _, claimed = stats.claim(redis, "deadrun")  # a run renamed the counters, then died
    assert claimed and redis.scard("pb:stats:dirty") == 0
    beat(db_session, redis, factories.UserFactory().id, world.content, 0, datetime.now(UTC))  # new live counters
    rollup(db_session, redis)
    [row] = day_rows(db_session)
    assert counts(row) == (3, 50, 1)
    assert list(redis.scan_iter(match="pb:stats:inflight:*")) == []
    assert rollup(db_session, redis).entries == 0 and counts(day_rows(db_session)[0]) == (3, 50, 1)


def test_stats_of_several_days_and_contents(world: World, db_session: Session, redis: Any) -> None:
    other = world.add_content(price_cents=None)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    for content, day, views in [(world.content, yesterday, 4), (other, yesterday, 1)]:
        redis.hset(f"pb:stats:{day:%Y%m%d}:{content.id}", mapping={"views_started": views, "org": str(world.org.id)})
        redis.sadd("pb:stats:dirty", f"{day:%Y%m%d}:{content.id}")
    redis.hset(f"pb:stats:{yesterday:%Y%m%d}:{uuid.uuid4()}", mapping={"views_started": 9})  # content gone
    redis.sadd("pb:stats:dirty", f"{yesterday:%Y%m%d}:{uuid.uuid4()}", "not-a-member")
    beat(db_session, redis, world.buyer.id, world.content, 0, datetime.now(UTC))
    rollup(db_session, redis, batch_size=2)
    found = {(r.content_id, r.day): r.views_started for r in day_rows(db_session)}
    assert found == {
        (world.content.id, yesterday): 4,
        (other.id, yesterday): 1,
        (world.content.id, datetime.now(UTC).date()): 1,
    }


# ---- tasks, queues, beat ------------------------------------------------------------------------


def task(flask_app: Flask, name: str) -> Any:
    import tasks.playback  # noqa: F401 - registers the tasks

    return flask_app.extensions["celery"].tasks[name]


def test_tasks_are_registered_on_the_playback_queue_with_their_limits(app: Flask) -> None:
    for name, soft, hard in [("playback.flush_progress", 20, 30), ("playback.rollup_daily_stats", 60, 90)]:
        registered = task(app, name)
        assert queue_for(name) == "playback"
        assert (registered.soft_time_limit, registered.time_limit) == (soft, hard)
        assert not registered.acks_late  # these tasks claim nothing in Postgres


def test_beat_runs_flush_every_interval_and_rollup_every_5_minutes(app: Flask) -> None:
    schedule = beat_schedule(app.extensions["codex_config"])
    assert schedule["playback.flush_progress"]["schedule"] == 15.0
    assert schedule["playback.rollup_daily_stats"]["schedule"] == 300.0


def test_tasks_flush_and_roll_up_and_respect_the_beat_lock(
    app: Flask, world: World, db_session: Session, redis: Any
) -> None:
    watch(db_session, redis, world)
    db_session.commit()
    redis.set("lock:beat:playback.flush_progress", "1", ex=30)
    assert task(app, "playback.flush_progress").apply().get() is None  # another run holds the lock
    redis.delete("lock:beat:playback.flush_progress")
    assert task(app, "playback.flush_progress").apply().get() == 2
    assert task(app, "playback.rollup_daily_stats").apply().get() == 1
    db_session.expire_all()
    assert len(list(db_session.scalars(select(PlaybackProgress)))) == 2
    assert counts(day_rows(db_session)[0]) == (2, 50, 1)
    assert redis.exists("lock:beat:playback.flush_progress") == 0
