"""Retention of finished emails (jobs.md §9, run daily by ``maintenance.cleanup``).

``email_outbox`` rows that reached ``sent`` or ``dead`` and were last updated more than ``KEEP``
ago are deleted; queued, sending and failed rows (still to be delivered) are never touched. The
dashboard's email log (api.md §11) therefore shows about six months.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.notifications.models import EmailOutbox

KEEP = timedelta(days=180)


def delete_finished(session: Session, now: datetime) -> int:
    """Delete ``sent``/``dead`` outbox rows last updated before ``now - KEEP``; how many."""
    result = session.execute(
        delete(EmailOutbox).where(EmailOutbox.status.in_(("sent", "dead")), EmailOutbox.updated_at < now - KEEP)
    )
    return int(getattr(result, "rowcount", 0) or 0)
