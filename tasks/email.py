"""``email.send`` and ``email.sweep_outbox`` (jobs.md §3, §8.2): thin wrappers over the outbox service."""

from __future__ import annotations

import uuid

import structlog
from celery import shared_task
from sqlalchemy.orm import Session

from app import db
from app.notifications import service
from tasks.base import singleton

log = structlog.get_logger(__name__)


def send_outbox_email(session: Session, outbox_id: uuid.UUID) -> str:
    """Claim (commit), render + send, record the outcome (commit). Returns the outcome's status.

    The claim is committed before the SMTP conversation so a worker that dies mid-send leaves a
    counted attempt and a claim that expires after 5 minutes; the sweeper then sends again.
    ``skipped`` when the row is not ours to send (already sent, not due, or claimed elsewhere).
    """
    row = service.claim_email(session, outbox_id)
    session.commit()
    if row is None:
        return "skipped"
    outcome = service.send_claimed(session, row)
    session.commit()  # the retry message (on ``failed``) is published after this commit
    return outcome.status


@shared_task(name="email.send", acks_late=True, reject_on_worker_lost=True, soft_time_limit=30, time_limit=45)
def send(outbox_id: str) -> str:
    try:
        row_id = uuid.UUID(outbox_id)
    except (TypeError, ValueError):
        log.error("email.bad_task_argument")
        return "skipped"
    return send_outbox_email(db.session, row_id)


@shared_task(name="email.sweep_outbox", soft_time_limit=30, time_limit=45)
@singleton("email.sweep_outbox", 45)
def sweep_outbox() -> int:
    session = db.session
    count = service.sweep_outbox(session)
    session.commit()  # publishes the ``email.send`` messages
    return count
