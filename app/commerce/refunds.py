"""Refunds: the org's request (API), its submission to the provider (worker), the provider's
``charge.refunded`` event, the sweeper.

The request only records intent (``refund_status = requested``) and queues the submission;
access is revoked when the provider's refund event arrives (``apply_refund``), whatever
started the refund (this app, the Stripe dashboard, a duplicate purchase). Submission is at
most one provider refund per request: the row is claimed with ``FOR UPDATE SKIP LOCKED`` and
the provider call carries the idempotency key ``refund:{purchase_id}:{epoch(refund_requested_at)}``,
stable across retries and sweeps.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app import audit, errors
from app.access import grants
from app.access.cache import invalidate_access_after_commit
from app.commerce.emails import queue_refund_email
from app.commerce.fulfilment import purchase_by_intent, self_heal
from app.commerce.models import Purchase
from app.commerce.pipeline import REFUND_TASK, EventContext, PermanentEventError, cents, describe, payment_intent_of
from app.db import enqueue_after_commit
from app.payments import PermanentProviderError, ProviderError, get_provider

log = structlog.get_logger(__name__)

SUBMIT_MAX_ATTEMPTS = 5
SUBMIT_BACKOFF_SECONDS = 60
SWEEP_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500
REFUND_ERROR_MAX = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


def refund_idempotency_key(purchase: Purchase) -> str:
    assert purchase.refund_requested_at is not None
    return f"refund:{purchase.id}:{int(purchase.refund_requested_at.timestamp())}"


def request_refund(
    session: Session,
    *,
    organization_id: uuid.UUID,
    purchase_id: uuid.UUID,
    requested_by: uuid.UUID,
    actor_role: str,
    reason: str | None,
) -> Purchase:
    """``completed`` with no refund in flight -> ``refund_status = requested`` (guarded; a second
    request gets 409 ``PURCHASE_NOT_REFUNDABLE``); audit ``refund.request``; submit after commit."""
    now = utcnow()
    updated = session.execute(
        update(Purchase)
        .where(
            Purchase.id == purchase_id,
            Purchase.organization_id == organization_id,
            Purchase.status == "completed",
            Purchase.refunded_amount_cents < Purchase.amount_cents,
            or_(Purchase.refund_status.is_(None), Purchase.refund_status == "failed"),
        )
        .values(
            refund_status="requested",
            refund_requested_at=now,
            refund_requested_by=requested_by,
            refund_reason=reason,
            refund_attempts=0,
            refund_last_error=None,
            provider_refund_id=None,
            updated_at=now,
        )
        .returning(Purchase.id)
        .execution_options(synchronize_session=False)
    ).first()
    if updated is None:
        raise errors.Conflict(
            "The purchase is already refunded, charged back, or has a refund in progress.",
            code="PURCHASE_NOT_REFUNDABLE",
        )
    purchase = session.execute(
        select(Purchase).where(Purchase.id == purchase_id).execution_options(populate_existing=True)
    ).scalar_one()
    audit.record(
        session,
        organization_id=organization_id,
        actor_user_id=requested_by,
        actor_role=actor_role,
        action="refund.request",
        target_type="purchase",
        target_id=purchase.id,
        metadata={
            "reason": reason,
            "amount_cents": purchase.amount_cents - purchase.refunded_amount_cents,
            "currency": purchase.currency,
        },
    )
    enqueue_after_commit(session, REFUND_TASK, str(purchase.id))
    return purchase


def submit_refund(session: Session, purchase_id: uuid.UUID) -> str | None:
    """Claim a ``requested`` refund and ask the provider for it. Returns the new refund_status
    (``requested`` again when a transient error schedules a retry), or None when there was
    nothing to claim. The caller commits."""
    purchase = session.execute(
        select(Purchase)
        .where(Purchase.id == purchase_id, Purchase.refund_status == "requested")
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if purchase is None:
        return None
    now = utcnow()
    purchase.refund_attempts += 1
    purchase.updated_at = now
    attempt = purchase.refund_attempts
    remaining = purchase.amount_cents - purchase.refunded_amount_cents
    if remaining <= 0:
        # Fully refunded while the request waited (e.g. from the Stripe dashboard).
        purchase.refund_status = "submitted"
        return purchase.refund_status
    try:
        result = get_provider().create_refund(
            payment_intent_id=purchase.payment_intent_id,
            amount_cents=remaining,
            metadata={"purchase_id": str(purchase.id)},
            idempotency_key=refund_idempotency_key(purchase),
        )
    except PermanentProviderError as exc:
        if exc.already_refunded:
            purchase.refund_status = "submitted"
            purchase.refund_last_error = None
            log.info("refund.already_refunded", purchase_id=str(purchase.id))
            return purchase.refund_status
        purchase.refund_status = "failed"
        purchase.refund_last_error = describe(exc)[:REFUND_ERROR_MAX]
        log.error("refund.failed", purchase_id=str(purchase.id), error=purchase.refund_last_error)
        return purchase.refund_status
    except ProviderError as exc:
        purchase.refund_last_error = describe(exc)[:REFUND_ERROR_MAX]
        if attempt >= SUBMIT_MAX_ATTEMPTS:
            purchase.refund_status = "failed"
            log.error("refund.failed", purchase_id=str(purchase.id), attempts=attempt, error=purchase.refund_last_error)
            return purchase.refund_status
        delay = SUBMIT_BACKOFF_SECONDS * 2 ** (attempt - 1)
        enqueue_after_commit(session, REFUND_TASK, str(purchase.id), countdown=delay)
        log.warning("refund.retry", purchase_id=str(purchase.id), attempts=attempt, retry_in=delay)
        return purchase.refund_status
    purchase.refund_status = "submitted"
    purchase.provider_refund_id = result.refund_id
    purchase.refund_last_error = None
    log.info("refund.submitted", purchase_id=str(purchase.id), provider_refund_id=result.refund_id)
    return purchase.refund_status


def charge_refunded(ctx: EventContext) -> str:
    """The ``charge.refunded`` handler."""
    apply_refund(ctx, ctx.object)
    return "processed"


def apply_refund(ctx: EventContext, charge: dict[str, Any]) -> None:
    """charge.refunded: the cumulative refunded amount only grows; full -> refunded + access revoked."""
    session = ctx.session
    payment_intent_id = payment_intent_of(charge)
    if payment_intent_id is None:
        raise PermanentEventError("charge without payment_intent")
    amount_refunded = cents(charge.get("amount_refunded"), "amount_refunded")
    charge_amount = cents(charge.get("amount"), "amount")
    purchase = purchase_by_intent(session, payment_intent_id)
    if purchase is None:
        fully_refunded = bool(charge.get("refunded")) or amount_refunded >= charge_amount
        purchase = self_heal(ctx, payment_intent_id, send_emails=not fully_refunded)
    previous = purchase.refunded_amount_cents
    new = max(previous, min(amount_refunded, purchase.amount_cents))
    if new == previous:
        return
    now = utcnow()
    purchase.refunded_amount_cents = new
    purchase.updated_at = now
    if new == purchase.amount_cents:
        if purchase.status == "completed":
            purchase.status = "refunded"
        purchase.refunded_at = purchase.refunded_at or now
        purchase.refund_status = "succeeded"
        grants.revoke_purchase_grant(
            session, purchase.id, user_id=purchase.customer_id, content_id=purchase.content_id, reason="refund"
        )
    session.flush()
    queue_refund_email(session, purchase, previous, now)
    invalidate_access_after_commit(session, purchase.customer_id, purchase.content_id)
    log.info(
        "commerce.refund_recorded", purchase_id=str(purchase.id), refunded_cents=new, full=new == purchase.amount_cents
    )


def sweep_refunds(session: Session, limit: int = SWEEP_BATCH) -> int:
    """Re-enqueue ``requested`` refunds nobody touched for 60 s (lost message, crashed worker)."""
    due = session.scalars(
        select(Purchase.id)
        .where(Purchase.refund_status == "requested", Purchase.updated_at < func.now() - SWEEP_AFTER)
        .order_by(Purchase.refund_requested_at)
        .limit(limit)
    ).all()
    for purchase_id in due:
        enqueue_after_commit(session, REFUND_TASK, str(purchase_id))
    return len(due)
