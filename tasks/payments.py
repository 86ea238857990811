"""``payments.*`` tasks (jobs.md §3, §4): thin wrappers that own the commits around the services.

``process_stripe_event`` is the two-phase claim of jobs.md §4.2: the claim is committed on its
own (a counted attempt with a timestamp the sweeper can judge), then the effects and the
``processed`` status are committed together; on any error the work is rolled back and the
outcome (``failed`` with backoff and a self re-enqueue, or ``dead``) is committed separately.
"""

from __future__ import annotations

import uuid

import structlog
from celery import shared_task
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app import db
from app.commerce import processing, reconciliation, refunds
from app.commerce.pipeline import describe
from app.payments import ProviderError
from tasks.base import singleton

log = structlog.get_logger(__name__)


def process_event(session: Session, event_id: str) -> str | None:
    """Claim (commit), handle (commit) or record the failure (commit). Returns the final status,
    or None when there was nothing to claim or the claim was lost."""
    claim = processing.claim_event_committed(session, event_id)
    if claim is None:
        return None
    try:
        status = processing.process_claimed(session, claim)
        session.commit()  # effects + processed together; emails/refunds/cache follow the commit
        return status
    except Exception as exc:  # every failure is recorded on the row, never lost in the broker
        session.rollback()
        try:
            status = processing.record_failure(session, claim, exc)
            session.commit()
        except SQLAlchemyError:
            session.rollback()
            # The claim stays ``processing``; the sweeper takes it back after the lease.
            log.error("stripe.record_failure_failed", event_id=event_id, exc_info=True)
            return "processing"
        return status


@shared_task(
    name="payments.process_stripe_event", acks_late=True, reject_on_worker_lost=True, soft_time_limit=60, time_limit=90
)
def process_stripe_event(event_id: str) -> str | None:
    return process_event(db.session, str(event_id))


def submit(session: Session, purchase_id: uuid.UUID) -> str | None:
    status = refunds.submit_refund(session, purchase_id)
    session.commit()  # a transient retry is published after this commit
    return status


@shared_task(
    name="payments.submit_refund", acks_late=True, reject_on_worker_lost=True, soft_time_limit=30, time_limit=45
)
def submit_refund(purchase_id: str) -> str | None:
    try:
        row_id = uuid.UUID(purchase_id)
    except (TypeError, ValueError):
        log.error("refund.bad_task_argument")
        return None
    return submit(db.session, row_id)


@shared_task(name="payments.reconcile_checkouts", soft_time_limit=300, time_limit=360)
@singleton("payments.reconcile_checkouts", 360)
def reconcile_checkouts() -> int:
    session = db.session
    try:
        inserted = reconciliation.reconcile_checkouts(session)
    except ProviderError as exc:
        session.rollback()
        log.warning("stripe.reconcile_failed", error=describe(exc))
        return 0
    session.commit()
    return inserted


@shared_task(name="payments.sweep_stripe_events", soft_time_limit=30, time_limit=45)
@singleton("payments.sweep_stripe_events", 45)
def sweep_stripe_events() -> int:
    session = db.session
    _, enqueued = processing.sweep_events(session)
    session.commit()
    return enqueued


@shared_task(name="payments.sweep_refunds", soft_time_limit=30, time_limit=45)
@singleton("payments.sweep_refunds", 45)
def sweep_refunds() -> int:
    session = db.session
    enqueued = refunds.sweep_refunds(session)
    session.commit()
    return enqueued


@shared_task(name="payments.expire_checkout_sessions", soft_time_limit=30, time_limit=45)
@singleton("payments.expire_checkout_sessions", 45)
def expire_checkout_sessions() -> int:
    session = db.session
    expired = reconciliation.expire_checkout_sessions(session)
    session.commit()
    return expired
