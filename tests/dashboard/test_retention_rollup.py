"""``dashboard_content_retention`` (migration 0015) always equals the same figures taken over
``playback_progress`` directly: after every kind of change, and after heartbeats, flushes and the
library's own flush racing each other on real connections."""

from __future__ import annotations

import random
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.access import progress
from app.access.models import PlaybackProgress
from app.content.models import Content
from app.dashboard.models import ContentRetention
from app.identity.models import User
from tasks.playback import flush
from tests import factories
from tests.dashboard.seed import World, viewed
from tests.identity.helpers import make_org

DIRECT = """
    SELECT content_id,
           LEAST(20, 20 * LEAST(max_position_seconds, duration_seconds) / duration_seconds) AS bucket,
           count(*), count(*) FILTER (WHERE completed),
           sum(1000000::bigint * LEAST(max_position_seconds, duration_seconds) / duration_seconds)
    FROM playback_progress GROUP BY 1, 2
"""


def assert_consistent(session: Session) -> None:
    session.flush()
    rollup = session.execute(
        select(
            ContentRetention.content_id,
            ContentRetention.bucket,
            ContentRetention.viewers,
            ContentRetention.completions,
            ContentRetention.fraction_micros,
        )
    ).all()
    kept = {tuple(r) for r in rollup if any(r[2:])}
    assert kept == {tuple(r) for r in session.execute(text(DIRECT)).all()}


def test_the_rollup_follows_every_change(db_session: Session, world: World) -> None:
    assert_consistent(db_session)  # the seed's inserts
    c1, c4 = world.content["C1"], world.content["C4"]
    bob, cid = world.u("Bob").id, world.u("Cid").id

    def change(user_id: uuid.UUID, content: Content, **values: Any) -> None:
        db_session.execute(
            update(PlaybackProgress)
            .where(PlaybackProgress.user_id == user_id, PlaybackProgress.content_id == content.id)
            .values(**values)
        )
        assert_consistent(db_session)

    change(bob, c1, max_position_seconds=155)  # inside its bucket: only the fractions move
    change(cid, c1, max_position_seconds=590)  # across buckets
    change(bob, c1, completed=True, completed_at=datetime.now(UTC))
    change(cid, c1, position_seconds=12)  # a seek back: nothing counted moves
    # Several rows in one statement, across items (a duration reported twice as long).
    db_session.execute(update(PlaybackProgress).values(duration_seconds=PlaybackProgress.duration_seconds * 2))
    assert_consistent(db_session)
    # The flush's upsert: one statement inserting some rows and updating others.
    rows = progress.Rows()
    now_ms = progress.to_ms(datetime.now(UTC) + timedelta(minutes=1))
    for user in (world.u("Eve"), world.u("Fay"), world.u("Ana")):
        rows.add(str(user.id), str(c1.id), 300, 600, False, None, now_ms, 450)
    progress.write_rows(db_session, rows)
    assert_consistent(db_session)
    # A user deleted (the database cascades to the progress rows; the API never does this).
    newcomer = factories.UserFactory()
    viewed(newcomer, c1, 200, 600)
    assert_consistent(db_session)
    db_session.execute(delete(User).where(User.id == newcomer.id))
    assert_consistent(db_session)
    # Content deleted outright takes its rollup rows along, and its progress rows contribute nothing.
    viewed(world.u("Eve"), c4, 10, 100)
    assert_consistent(db_session)
    db_session.execute(delete(Content).where(Content.id == c4.id))
    db_session.expire_all()
    assert db_session.scalars(select(ContentRetention).where(ContentRetention.content_id == c4.id)).all() == []
    assert_consistent(db_session)


def test_rebuild_restores_a_damaged_rollup(db_session: Session, world: World) -> None:
    from app.dashboard.rollups import rebuild

    db_session.execute(text("UPDATE dashboard_content_retention SET viewers = viewers + 3"))
    db_session.execute(text("DELETE FROM dashboard_content_retention WHERE bucket = 20"))
    rebuild(db_session, world.org_a.id)
    rebuild(db_session, world.org_b.id)
    assert_consistent(db_session)


# ---- exact under concurrency -------------------------------------------------------------------------------

VIEWERS = 30
DURATION = 600


def test_exact_under_racing_heartbeats_and_flushes(committed_db: Flask, redis: Any) -> None:
    """Heartbeats out of order (seeks, late deliveries) through the real script, two flush loops
    and the library's per-user flush, all at once: every furthest position is the greatest one
    sent, and the rollup equals the direct aggregate."""
    app = committed_db
    make = app.extensions["db"].sessionmaker
    setup = make()
    factories.bind(setup)
    try:
        owner = factories.UserFactory()
        org = make_org(owner)
        items = [factories.PaidContentFactory(organization_id=org.id, created_by=owner.id) for _ in range(2)]
        users = [factories.UserFactory() for _ in range(VIEWERS)]
        setup.commit()
    finally:
        factories.bind(None)
    pairs = [(u.id, c) for u in users for c in items]
    furthest: dict[tuple[uuid.UUID, uuid.UUID], int] = defaultdict(int)
    sent = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    t0 = datetime.now(UTC) - timedelta(hours=1)

    def guard(work: Any) -> Any:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # surfaced by the main thread
                errors.append(exc)

        return run

    def viewer(seed: int) -> None:
        rng = random.Random(seed)
        session = make()
        try:
            for _ in range(150):
                user_id, item = rng.choice(pairs)
                position = rng.choice([rng.randrange(0, DURATION + 1), rng.randrange(0, 60), DURATION + 30])
                at = t0 + timedelta(milliseconds=rng.randrange(0, 3_600_000))  # any order
                hb = progress.normalise(position, DURATION, False, at, datetime.now(UTC))
                with sent:
                    key = (user_id, item.id)
                    furthest[key] = max(furthest[key], min(position, DURATION))
                progress.record(session, redis, user_id=user_id, content_id=item.id,
                                organization_id=org.id, heartbeat=hb, now=datetime.now(UTC))  # fmt: skip
                session.rollback()  # the init read's snapshot: each heartbeat sees the latest row
        finally:
            session.close()

    def flusher() -> None:
        session = make()
        try:
            while not stop.is_set():
                flush(session, redis, batch_size=7)
        finally:
            session.close()

    def library(seed: int) -> None:
        rng = random.Random(seed)
        session = make()
        try:
            while not stop.is_set():
                user = rng.choice(users)
                try:
                    rows = progress.flush_user(session, redis, user.id)
                    session.commit()
                except DBAPIError:  # a deadlock with a flush batch: the library request would fail, retry
                    session.rollback()
                    continue
                progress.forget_user_flushed(redis, user.id, rows)
        finally:
            session.close()

    viewers = [threading.Thread(target=guard(lambda s=s: viewer(s))) for s in range(4)]
    others = [threading.Thread(target=guard(flusher)) for _ in range(2)]
    others += [threading.Thread(target=guard(lambda: library(99)))]
    for thread in viewers + others:
        thread.start()
    for thread in viewers:
        thread.join(60)
    stop.set()
    for thread in others:
        thread.join(60)
    assert errors == []
    final = make()
    try:
        while flush(final, redis).entries:
            pass
        stored = {
            (r.user_id, r.content_id): r.max_position_seconds
            for r in final.scalars(
                select(PlaybackProgress).where(PlaybackProgress.content_id.in_([c.id for c in items]))
            )
        }
        assert stored == dict(furthest)
        assert_consistent(final)
        totals = final.execute(
            select(ContentRetention.content_id, ContentRetention.viewers).where(ContentRetention.viewers != 0)
        ).all()
        assert sum(v for _, v in totals) == len(stored)
    finally:
        final.close()
