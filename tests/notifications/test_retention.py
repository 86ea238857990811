"""jobs.md §9: sent and dead emails go 180 days after their last update; undelivered ones stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.notifications import retention
from app.notifications.models import EmailOutbox
from tests.factories import OutboxFactory

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_finished_emails_older_than_180_days_go(db_session: Session) -> None:
    old = NOW - 181 * DAY
    recent = NOW - 179 * DAY
    kept = [
        OutboxFactory(status="sent", updated_at=recent),
        OutboxFactory(status="dead", updated_at=recent),
        OutboxFactory(status="queued", updated_at=old),  # still to deliver: never deleted
        OutboxFactory(status="failed", updated_at=old),
    ]
    OutboxFactory(status="sent", updated_at=old)
    OutboxFactory(status="dead", updated_at=old)
    db_session.flush()
    ids = {row.id for row in kept}

    assert retention.delete_finished(db_session, NOW) == 2
    left = set(db_session.scalars(select(EmailOutbox.id).where(EmailOutbox.dedupe_key.like("test:%"))))
    assert ids <= left and len(left & ids) == 4
    assert retention.delete_finished(db_session, NOW) == 0
