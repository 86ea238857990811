"""enqueue_after_commit: published only after a successful commit, dropped on rollback."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import db
from app.db import enqueue_after_commit, pending_tasks
from app.system.models import WorkerPing
from app.system.service import create_ping


def _broker_messages(flask_app: Flask, queue: str) -> list[dict[str, Any]]:
    raw = flask_app.extensions["broker_redis"].lrange(queue, 0, -1)
    return [json.loads(item) for item in raw]


def test_message_is_published_to_the_broker_after_commit(committed_db: Flask) -> None:
    with committed_db.app_context():
        ping = create_ping(db.session)
        assert _broker_messages(committed_db, "default") == []  # nothing before the commit
        db.session.commit()
    messages = _broker_messages(committed_db, "default")
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == "system.ping"
    assert str(ping.id) in messages[0]["headers"]["argsrepr"]


def test_message_is_dropped_when_the_transaction_rolls_back(committed_db: Flask) -> None:
    with committed_db.app_context():
        create_ping(db.session)
        assert len(pending_tasks(db.session)) == 1
        db.session.rollback()
        assert pending_tasks(db.session) == []
        db.session.commit()  # a later commit must not resurrect the dropped message
        assert db.session.scalar(select(func.count()).select_from(WorkerPing)) == 0
    assert _broker_messages(committed_db, "default") == []


def test_a_released_savepoint_publishes_nothing_before_the_outer_commit(committed_db: Flask) -> None:
    """SQLAlchemy fires after_commit when a savepoint is released too; the row is not committed then."""
    with committed_db.app_context():
        session: Session = db.session
        with session.begin_nested():
            create_ping(session)
        assert _broker_messages(committed_db, "default") == []
        assert len(pending_tasks(session)) == 1  # still waiting for the real commit
        session.commit()
    assert len(_broker_messages(committed_db, "default")) == 1


def test_work_queued_inside_a_rolled_back_savepoint_is_forgotten(committed_db: Flask) -> None:
    with committed_db.app_context():
        session: Session = db.session
        create_ping(session)  # queued before the savepoint: kept
        savepoint = session.begin_nested()
        enqueue_after_commit(session, "system.ping", "00000000-0000-0000-0000-000000000001")
        savepoint.rollback()
        assert len(pending_tasks(session)) == 1
        with session.begin_nested():  # a released savepoint keeps its work
            enqueue_after_commit(session, "system.ping", "00000000-0000-0000-0000-000000000002")
        session.commit()
    messages = _broker_messages(committed_db, "default")
    assert len(messages) == 2
    assert not any("00000000-0000-0000-0000-000000000001" in m["headers"]["argsrepr"] for m in messages)


def test_failed_commit_publishes_nothing(committed_db: Flask) -> None:
    with committed_db.app_context():
        session: Session = db.session
        ping = create_ping(session)
        session.commit()
        committed_db.extensions["broker_redis"].flushdb()
        duplicate = WorkerPing(id=ping.id)  # primary key clash: the commit fails
        session.add(duplicate)
        enqueue_after_commit(session, "system.ping", str(ping.id))
        try:
            session.commit()
        except Exception:
            session.rollback()
        else:  # pragma: no cover - the commit must fail
            raise AssertionError("duplicate primary key was accepted")
    assert _broker_messages(committed_db, "default") == []


def test_tasks_are_routed_to_their_queue(committed_db: Flask) -> None:
    with committed_db.app_context():
        enqueue_after_commit(db.session, "email.send", "00000000-0000-0000-0000-000000000001")
        enqueue_after_commit(db.session, "media.ingest", "00000000-0000-0000-0000-000000000002", countdown=120)
        db.session.commit()
    assert len(_broker_messages(committed_db, "email")) == 1
    # A countdown message waits in the unacked/eta path or the queue depending on the transport;
    # either way it is not on the email queue and is addressed to the media queue.
    media = _broker_messages(committed_db, "media")
    assert len(media) == 1 and media[0]["headers"]["eta"] is not None


def test_broker_failure_is_logged_and_swallowed(app_factory: Any, committed_db: Flask) -> None:
    broken = app_factory(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    calls: list[str] = []

    def failing_sender(name: str, args: tuple[Any, ...], countdown: float | None) -> None:
        calls.append(name)
        raise ConnectionError("broker down")

    broken.extensions["task_sender"] = failing_sender
    with broken.app_context():
        ping = create_ping(db.session)
        db.session.commit()  # must not raise: the row is committed, the sweeper will find it
        assert db.session.get(WorkerPing, ping.id) is not None
    assert calls == ["system.ping"]


def test_savepoint_rollback_keeps_outer_messages(db_session: Session, sent_tasks: list[Any], app: Flask) -> None:
    with app.app_context():
        session = db.session
        enqueue_after_commit(session, "system.ping", "outer")
        nested = session.begin_nested()
        nested.rollback()
        session.commit()
    assert [name for name, _, _ in sent_tasks] == ["system.ping"]
