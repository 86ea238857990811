"""Disputes (``charge.dispute.created`` / ``closed``): access follows the dispute's state.

A dispute opened revokes the purchase's grant; won (or closed with a warning) restores it unless
the purchase was refunded meanwhile; lost makes the purchase ``charged_back``. The events may
arrive out of order: the newest ``created`` time seen wins (``dispute_event_at``).
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.orm import Session

from app.access import grants
from app.commerce.fulfilment import purchase_by_intent, self_heal
from app.commerce.models import Purchase
from app.commerce.pipeline import (
    EventContext,
    PermanentEventError,
    TransientEventError,
    lock_payment,
    payment_intent_of,
    short_str,
    utcnow,
)
from app.payments.base import ProviderError

log = structlog.get_logger(__name__)


def dispute_created(ctx: EventContext) -> str:
    apply_dispute(ctx, ctx.object, closed=False)
    return "processed"


def dispute_closed(ctx: EventContext) -> str:
    apply_dispute(ctx, ctx.object, closed=True)
    return "processed"


def apply_dispute(ctx: EventContext, dispute: dict[str, Any], *, closed: bool) -> None:
    session = ctx.session
    payment_intent_id = payment_intent_of(dispute)
    if payment_intent_id is None:
        charge = dispute.get("charge")
        charge_id = charge.get("id") if isinstance(charge, dict) else charge
        if not isinstance(charge_id, str):
            raise PermanentEventError("dispute without payment_intent or charge")
        try:
            payment_intent_id = ctx.provider.payment_intent_for_charge(charge_id)
        except ProviderError as exc:
            raise TransientEventError(f"charge lookup failed: {exc}") from exc
        if payment_intent_id is None:
            raise TransientEventError("charge of the dispute not found")
        lock_payment(session, payment_intent_id)
    purchase = purchase_by_intent(session, payment_intent_id)
    if purchase is None:
        purchase = self_heal(ctx, payment_intent_id, send_emails=True)
    event_at = ctx.event.stripe_created_at
    if purchase.dispute_event_at is not None and event_at <= purchase.dispute_event_at:
        log.info("stripe.dispute_stale", event_id=ctx.event.id, purchase_id=str(purchase.id))
        return
    status = short_str(dispute.get("status"), 30)
    now = utcnow()
    purchase.dispute_id = short_str(dispute.get("id"), 255)
    purchase.dispute_status = status
    purchase.dispute_event_at = event_at
    # Also on "closed": when closed arrives first the older "created" is stale, and the final
    # state must still say the purchase was disputed.
    purchase.disputed_at = purchase.disputed_at or now
    purchase.updated_at = now
    if not closed:
        _revoke(session, purchase)
    elif status in ("won", "warning_closed"):
        if purchase.status == "completed" and purchase.refunded_amount_cents < purchase.amount_cents:
            grants.restore_purchase_grant(
                session, purchase.id, user_id=purchase.customer_id, content_id=purchase.content_id
            )
    elif status == "lost":
        if purchase.status == "completed":
            purchase.status = "charged_back"
        _revoke(session, purchase)
    session.flush()
    log.warning(
        "stripe.dispute",
        event_id=ctx.event.id,
        purchase_id=str(purchase.id),
        dispute_status=status,
        phase="closed" if closed else "created",
    )


def _revoke(session: Session, purchase: Purchase) -> None:
    grants.revoke_purchase_grant(
        session, purchase.id, user_id=purchase.customer_id, content_id=purchase.content_id, reason="dispute"
    )
