"""The worker's side of the pipeline (jobs.md §4.2, §4.5): claim, handle, record the outcome;
the sweeper that recovers lost work; the platform owner's look and replay (api.md §12).

An event is claimed in a committed transaction of its own (a counted attempt with a timestamp
the sweeper can judge), then re-locked together with its payment and handled, and the outcome
is written with the effects (``processed``/``ignored``) or, after a rollback, on its own
(``failed`` with backoff, ``dead``). ``tasks/payments.py`` runs the phases and commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from flask import current_app
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from app import audit, errors
from app.commerce import disputes, fulfilment, refunds
from app.commerce.models import StripeEvent
from app.commerce.pipeline import (
    EVENT_ID,
    HANDLED_TYPES,
    PROCESS_TASK,
    AmountMismatch,
    EventContext,
    EventError,
    EventRow,
    describe,
    expected_livemode,
    note_lock_held,
    utcnow,
)
from app.commerce.webhooks import autocommit_engine
from app.db import after_commit, enqueue_after_commit
from app.metrics import PAYMENT_MISMATCHES

log = structlog.get_logger(__name__)

CLAIM_LEASE = timedelta(minutes=10)  # a processing claim older than this belongs to a dead worker
SWEEP_RECEIVED_AFTER = timedelta(seconds=30)  # give the after-commit message a chance first
SWEEP_BATCH = 500
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
# ``next_attempt_at`` of a failure that must not be retried by itself (a money mismatch): never
# due, so neither the claim nor the sweeper takes it; an admin replay resets it to now.
NOT_RETRIED = datetime(9999, 12, 31, tzinfo=UTC)

Handler = Callable[[EventContext], str]

# jobs.md §4.3, in the order a payment meets them.
HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": fulfilment.session_completed,
    "checkout.session.async_payment_succeeded": fulfilment.async_succeeded,
    "checkout.session.async_payment_failed": fulfilment.async_failed,
    "checkout.session.expired": fulfilment.session_expired,
    "charge.refunded": refunds.charge_refunded,
    "charge.dispute.created": disputes.dispute_created,
    "charge.dispute.closed": disputes.dispute_closed,
}
assert set(HANDLERS) == HANDLED_TYPES


# ---- claim --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    event_id: str
    claimed_at: datetime
    attempts: int


# The worker's hot path runs as plain SQL on the session's connection: the ORM's statement
# building, coercion and unit of work cost several times what Postgres spends on these rows.
_CLAIM = """
    UPDATE stripe_events
    SET status = 'processing', attempts = attempts + 1, claimed_at = clock_timestamp(), updated_at = now()
    WHERE id = %(id)s AND status IN ('received', 'failed') AND next_attempt_at <= now()
    RETURNING claimed_at, attempts
"""

# The row lock and the payment's advisory lock in one round trip (NULL payment intent: no lock,
# the function is strict). Everything else that touches the payment takes the same lock.
_LOCK_EVENT = """
    SELECT id, type, livemode, payload, attempts, stripe_created_at, payment_intent_id, status, claimed_at,
           pg_advisory_xact_lock(hashtext('pi:' || payment_intent_id))
    FROM stripe_events WHERE id = %(id)s
    FOR UPDATE OF stripe_events
"""

_MARK_DONE = """
    UPDATE stripe_events SET status = %(status)s, processed_at = %(now)s, last_error = NULL, updated_at = %(now)s
    WHERE id = %(id)s
"""


def claim_event(session: Session, event_id: str) -> Claim | None:
    """Phase 1: ``received``/``failed`` and due -> ``processing`` (attempts + 1). The caller commits."""
    row = session.connection().exec_driver_sql(_CLAIM, {"id": event_id}).first()
    if row is None:
        return None
    return Claim(event_id, row.claimed_at, row.attempts)


def claim_event_committed(session: Session, event_id: str) -> Claim | None:
    """Phase 1 in a transaction of its own, committed on return.

    One autocommit statement when the app's sessions use the engine (no BEGIN/COMMIT round
    trips); in the caller's session, committed, when they are bound to an outer connection.
    """
    engine = autocommit_engine()
    if engine is None:
        claim = claim_event(session, event_id)
        session.commit()
        return claim
    with engine.connect() as connection:
        row = connection.exec_driver_sql(_CLAIM, {"id": event_id}).first()
    return None if row is None else Claim(event_id, row.claimed_at, row.attempts)


# ---- handle -------------------------------------------------------------------------------------


def process_claimed(session: Session, claim: Claim) -> str | None:
    """Phase 2: re-lock the row, run its handler, record the outcome with the effects.

    Returns the new status, or None when the claim is no longer ours (the sweeper took it back
    from a worker it believed dead, and another worker owns it now). The caller commits.
    """
    connection = session.connection()
    found = connection.exec_driver_sql(_LOCK_EVENT, {"id": claim.event_id}).first()
    if found is None or found.status != "processing" or found.claimed_at != claim.claimed_at:
        log.info("stripe.claim_lost", event_id=claim.event_id)
        return None
    event = EventRow(*found[:7])
    if event.payment_intent_id:
        note_lock_held(session, f"pi:{event.payment_intent_id}")
    status = handle(session, event)
    connection.exec_driver_sql(_MARK_DONE, {"status": status, "now": utcnow(), "id": event.id})
    log.info("stripe.event_processed", event_id=event.id, type=event.type, status=status, attempts=event.attempts)
    return status


def handle(session: Session, event: EventRow) -> str:
    handler = HANDLERS.get(event.type)
    if handler is None:
        return "ignored"
    if event.livemode != expected_livemode():
        # A replayed row stored before the key changed (or an ignored row replayed by hand).
        return "ignored"
    return handler(EventContext(session, event))


# ---- outcome of a failure -----------------------------------------------------------------------


def backoff_seconds(attempts: int) -> int:
    return int(min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS))


def record_failure(session: Session, claim: Claim, exc: BaseException) -> str | None:
    """After a rollback: ``failed`` with backoff (re-enqueued with that countdown) or ``dead``;
    an ``AmountMismatch`` is ``failed`` for good (security.md §9), audited and counted.

    Returns the new status (None when the claim is no longer ours). The caller commits.
    """
    max_attempts = current_app.config["STRIPE_EVENT_MAX_ATTEMPTS"]
    mismatch = exc if isinstance(exc, AmountMismatch) else None
    permanent = isinstance(exc, EventError) and exc.permanent
    dead = mismatch is None and (permanent or claim.attempts >= max_attempts)
    delay = backoff_seconds(claim.attempts)
    status = "dead" if dead else "failed"
    if mismatch is not None:
        next_attempt_at: Any = NOT_RETRIED
    elif dead:
        next_attempt_at = func.now()
    else:
        next_attempt_at = func.now() + timedelta(seconds=delay)
    row = session.execute(
        update(StripeEvent)
        .where(
            StripeEvent.id == claim.event_id,
            StripeEvent.status == "processing",
            StripeEvent.claimed_at == claim.claimed_at,
        )
        .values(
            status=status,
            last_error=describe(exc),
            next_attempt_at=next_attempt_at,
            updated_at=func.now(),
        )
        .returning(StripeEvent.type)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return None
    if mismatch is not None:
        record_mismatch(session, claim.event_id, mismatch)
    elif dead:
        log.error(
            "stripe.event_dead",
            event_id=claim.event_id,
            type=row.type,
            attempts=claim.attempts,
            permanent=permanent,
            error=describe(exc),
        )
    else:
        log.warning(
            "stripe.event_failed", event_id=claim.event_id, type=row.type, attempts=claim.attempts, retry_in=delay
        )
        enqueue_after_commit(session, PROCESS_TASK, claim.event_id, countdown=delay)
    return status


def record_mismatch(session: Session, event_id: str, exc: AmountMismatch) -> None:
    """The rest of a money mismatch, in the transaction that records the failure (the work
    transaction was rolled back): the org's audit row, an ERROR log, the metric once committed."""
    facts = exc.facts
    expected = {"amount_cents": exc.expected[0], "currency": exc.expected[1]} if exc.expected else None
    audit.record(
        session,
        organization_id=facts.organization_id,
        actor_user_id=None,
        actor_role="system",
        action="payment.mismatch",
        target_type="checkout_session",
        target_id=facts.session_id,
        metadata={
            "event_id": event_id,
            "reason": exc.reason,
            "content_id": str(facts.content_id),
            "customer_id": str(facts.customer_id),
            "charged": {"amount_cents": facts.amount_cents, "currency": facts.currency},
            "expected": expected,
        },
    )
    after_commit(session, _count_mismatches, event_id)
    log.error(
        "stripe.amount_mismatch",
        event_id=event_id,
        checkout_session_id=facts.session_id,
        organization_id=str(facts.organization_id),
        reason=exc.reason,
        charged_cents=facts.amount_cents,
        charged_currency=facts.currency,
        expected_cents=exc.expected[0] if exc.expected else None,
        expected_currency=exc.expected[1] if exc.expected else None,
    )


def _count_mismatches(event_ids: list[str]) -> None:
    PAYMENT_MISMATCHES.inc(len(event_ids))


# ---- the sweeper (jobs.md §4.5) -----------------------------------------------------------------


def sweep_events(session: Session, limit: int = SWEEP_BATCH) -> tuple[int, int]:
    """Take back stale claims, then enqueue due rows. Returns (reclaimed, enqueued). The caller commits."""
    max_attempts = current_app.config["STRIPE_EVENT_MAX_ATTEMPTS"]
    stale = (
        select(StripeEvent.id)
        .where(StripeEvent.status == "processing", StripeEvent.claimed_at < func.now() - CLAIM_LEASE)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    reclaimed = _reclaim(session, stale, max_attempts)
    due = session.scalars(
        select(StripeEvent.id)
        .where(
            or_(
                and_(StripeEvent.status == "received", StripeEvent.received_at < func.now() - SWEEP_RECEIVED_AFTER),
                and_(StripeEvent.status == "failed", StripeEvent.next_attempt_at <= func.now()),
            )
        )
        .order_by(StripeEvent.received_at)
        .limit(limit)
    ).all()
    for event_id in due:
        enqueue_after_commit(session, PROCESS_TASK, event_id)
    if reclaimed or due:
        log.info("stripe.sweep", reclaimed=len(reclaimed), enqueued=len(due))
    return len(reclaimed), len(due)


def _reclaim(session: Session, stale: Any, max_attempts: int) -> list[Any]:
    rows = list(
        session.execute(
            update(StripeEvent)
            .where(StripeEvent.id.in_(stale))
            .values(
                status=_dead_or_failed(max_attempts),
                next_attempt_at=func.now(),
                last_error="claim expired: the worker stopped before finishing",
                updated_at=func.now(),
            )
            .returning(StripeEvent.id, StripeEvent.status)
            .execution_options(synchronize_session=False)
        ).all()
    )
    for row in rows:
        if row.status == "dead":
            log.error("stripe.event_dead", event_id=row.id, reason="claim expired with attempts exhausted")
    return rows


def _dead_or_failed(max_attempts: int) -> Any:
    return case((StripeEvent.attempts >= max_attempts, "dead"), else_="failed")


# ---- platform administration (api.md §12) ------------------------------------------------------


def get_event(session: Session, event_id: str, *, for_update: bool = False) -> StripeEvent:
    stmt = select(StripeEvent).where(StripeEvent.id == event_id)
    if for_update:
        stmt = stmt.with_for_update()
    event = session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
    if event is None:
        raise errors.NotFound("The Stripe event was not found.", code="STRIPE_EVENT_NOT_FOUND")
    return event


def replay_event(session: Session, event_id: str) -> StripeEvent:
    """Any status except ``processing`` -> ``received`` with a fresh attempt budget; enqueued after commit."""
    if not EVENT_ID.match(event_id):
        raise errors.NotFound("The Stripe event was not found.", code="STRIPE_EVENT_NOT_FOUND")
    event = get_event(session, event_id, for_update=True)
    if event.status == "processing":
        raise errors.Conflict("The event is being processed; try again once it has finished.")
    now = utcnow()
    event.status = "received"
    event.attempts = 0
    event.next_attempt_at = now
    event.claimed_at = None
    event.last_error = None
    event.processed_at = None
    event.updated_at = now
    session.flush()
    enqueue_after_commit(session, PROCESS_TASK, event.id)
    log.info("stripe.event_replayed", event_id=event.id, type=event.type)
    return event
