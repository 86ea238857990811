"""What Stripe never delivered (jobs.md §4.5): ``recon_`` events for paid sessions without a
purchase, and open sessions nobody completed.

A paid Checkout Session found without a purchase (by the hourly reconciliation, or by the
customer's status page) is stored as a ``checkout.session.completed`` event named
``recon_{session_id}``: the normal pipeline then fulfils it, under the same locks, exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.commerce.models import CheckoutSession, Purchase, StripeEvent
from app.commerce.pipeline import EVENT_ID, PROCESS_TASK, payment_intent_of, utcnow
from app.commerce.webhooks import initial_status
from app.db import enqueue_after_commit
from app.payments import get_provider
from app.payments.base import StripeObject

log = structlog.get_logger(__name__)

RECONCILE_WINDOW = timedelta(hours=72)
EXPIRE_GRACE = timedelta(hours=1)


def insert_recon_event(session: Session, obj: StripeObject) -> bool:
    """Store ``recon_{session_id}`` as a ``checkout.session.completed`` event (reconciliation and the
    status page): the normal pipeline then fulfils it, under the same locks. True when new."""
    session_id = obj.get("id")
    event_id = f"recon_{session_id}"
    if not isinstance(session_id, str) or not EVENT_ID.match(event_id):
        log.warning("stripe.recon_skipped", reason="session id unusable")
        return False
    livemode = bool(obj.get("livemode", False))
    created = obj.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        created = int(utcnow().timestamp())
    payload = {
        "id": event_id,
        "type": "checkout.session.completed",
        "created": created,
        "livemode": livemode,
        "data": {"object": obj},
    }
    status, reason = initial_status("checkout.session.completed", livemode)
    inserted = session.execute(
        pg_insert(StripeEvent)
        .values(
            id=event_id,
            type="checkout.session.completed",
            source="reconcile",
            livemode=livemode,
            api_version=None,
            stripe_created_at=datetime.fromtimestamp(created, UTC),
            object_id=session_id,
            payment_intent_id=payment_intent_of(obj),
            payload=payload,
            status=status,
            last_error=reason,
        )
        .on_conflict_do_nothing(index_elements=[StripeEvent.id])
        .returning(StripeEvent.id)
    ).scalar_one_or_none()
    if inserted is None:
        return False
    if status == "received":
        enqueue_after_commit(session, PROCESS_TASK, event_id)
    log.info("stripe.recon_event", event_id=event_id, status=status)
    return True


def has_purchase(session: Session, obj: StripeObject) -> bool:
    conditions = [Purchase.checkout_session_id == obj.get("id")]
    payment_intent_id = payment_intent_of(obj)
    if payment_intent_id:
        conditions.append(Purchase.payment_intent_id == payment_intent_id)
    return session.scalar(select(Purchase.id).where(or_(*conditions)).limit(1)) is not None


def reconcile_checkouts(session: Session) -> int:
    """Paid Checkout Sessions of the last 72 h without a purchase get a ``recon_`` event.

    Stripe only: the local provider's events never leave the process. Returns how many events
    were inserted. Provider errors propagate (the next hourly run tries again).
    """
    provider = get_provider()
    if provider.name != "stripe":
        return 0
    inserted = 0
    for obj in provider.list_recent_complete_sessions(utcnow() - RECONCILE_WINDOW):
        if obj.get("mode") != "payment" or obj.get("payment_status") != "paid":
            continue
        if has_purchase(session, obj):
            continue
        if insert_recon_event(session, obj):
            inserted += 1
    if inserted:
        log.warning("stripe.reconciled", inserted=inserted)
    return inserted


def expire_checkout_sessions(session: Session) -> int:
    """Open sessions an hour past ``expires_at`` -> ``expired`` (their expired event may never come)."""
    result = session.execute(
        update(CheckoutSession)
        .where(CheckoutSession.status == "open", CheckoutSession.expires_at < func.now() - EXPIRE_GRACE)
        .values(status="expired", updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
