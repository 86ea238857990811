"""The ping task round-trips broker -> real worker -> Postgres."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from sqlalchemy import select

from app import db
from app.system.models import WorkerPing
from app.system.service import create_ping


def test_ping_round_trip_through_a_real_worker(committed_db: Flask, celery_worker: Any) -> None:
    with committed_db.app_context():
        ping = create_ping(db.session)
        db.session.commit()
        ping_id = ping.id
    deadline = time.monotonic() + 20
    row = None
    while time.monotonic() < deadline:
        with committed_db.app_context():
            row = db.session.scalar(select(WorkerPing).where(WorkerPing.id == ping_id))
            if row is not None and row.processed_at is not None:
                break
        time.sleep(0.1)
    assert row is not None and row.processed_at is not None
    assert row.worker


def test_duplicate_ping_delivery_changes_nothing(db_session: Any) -> None:
    from app.system.service import record_pong

    ping = WorkerPing()
    db_session.add(ping)
    db_session.flush()
    assert record_pong(db_session, ping.id, "w1") is True
    assert record_pong(db_session, ping.id, "w2") is False
    db_session.refresh(ping)
    assert ping.worker == "w1"
