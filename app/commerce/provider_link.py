"""What commerce hands the payments adapter (wired by ``create_app``).

The adapter knows Stripe's shapes, not our tables, and never imports commerce. Commerce registers:

- the event sink: a signed delivery produced in-process (the local provider's Pay and refund)
  goes to ``webhooks.ingest`` in the caller's transaction, exactly like a webhook's;
- the local store: the local provider's reads of our rows (the stored checkout session, whether
  its completion event was delivered, the purchase a refund is for, the test page's labels),
  answered in the provider's terms.
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from app import db, payments
from app.commerce import records, webhooks
from app.commerce.models import CheckoutSession, Purchase, StripeEvent
from app.content.models import Content
from app.notifications.rendering import format_money
from app.payments import local_provider
from app.payments.local_provider import PageLabels, StoredPayment, StoredSession


def init_app(app: Flask) -> None:
    payments.register_event_sink(app, deliver_local_event)
    local_provider.register_local_store(app, CommerceLocalStore())


def deliver_local_event(body: bytes, signature: str) -> None:
    # ``webhooks.ingest`` looked up at call time, so a test can watch what the provider sends.
    webhooks.ingest(db.session, body, signature, source="local")


def _stored(row: CheckoutSession) -> StoredSession:
    return StoredSession(
        id=row.id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        status=row.status,
        payment_status=row.payment_status,
        client_reference_id=str(row.customer_id),
        metadata=records.session_metadata(row.customer_id, row.content_id, row.organization_id),
        success_url=row.success_url,
        cancel_url=row.cancel_url,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


class CommerceLocalStore:
    """``local_provider.LocalStore`` over ``checkout_sessions``, ``stripe_events`` and ``purchases``."""

    def session(
        self, provider: str, session_id: str, *, reread: bool = False, lock: bool = False
    ) -> StoredSession | None:
        if reread or lock:
            stmt = select(CheckoutSession).where(CheckoutSession.id == session_id, CheckoutSession.provider == provider)
            if lock:
                stmt = stmt.with_for_update()
            row = db.session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
        else:
            row = db.session.get(CheckoutSession, session_id)
            if row is not None and row.provider != provider:
                row = None
        return None if row is None else _stored(row)

    def completion_delivered(self, session_id: str) -> bool:
        event_id = db.session.scalar(
            select(StripeEvent.id)
            .where(StripeEvent.object_id == session_id, StripeEvent.type == "checkout.session.completed")
            .limit(1)
        )
        return event_id is not None

    def payment(self, payment_intent_id: str) -> StoredPayment | None:
        purchase = db.session.scalars(select(Purchase).where(Purchase.payment_intent_id == payment_intent_id)).first()
        if purchase is None:
            return None
        return StoredPayment(
            amount_cents=purchase.amount_cents,
            refunded_amount_cents=purchase.refunded_amount_cents,
            currency=purchase.currency,
            paid_at=purchase.purchased_at,
        )

    def page_labels(self, stored: StoredSession) -> PageLabels:
        row = db.session.get(CheckoutSession, stored.id)  # the one ``session`` just read
        content = db.session.get(Content, row.content_id) if row is not None else None
        return PageLabels(
            title=content.title if content is not None else "",
            price=format_money(stored.amount_cents, stored.currency),
        )
