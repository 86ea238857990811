"""The two rows money turns on, each built here and nowhere else.

- ``checkout_sessions``: stored when checkout creates the provider's session
  (``service.start_checkout``), or, when that insert failed, from the provider's own copy of the
  session (``fulfilment.read_back``). Every session carries ``session_metadata``.
- ``purchases``: inserted by fulfilment, together with its grant for a first purchase
  (``fulfilment.fulfil``) or alone for a duplicate that is refunded at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.commerce.models import CheckoutSession

# ---- checkout_sessions --------------------------------------------------------------------------


def session_metadata(customer_id: uuid.UUID, content_id: uuid.UUID, organization_id: uuid.UUID) -> dict[str, str]:
    """The ids this app puts on every provider session (only ids: the price comes from our tables)."""
    return {
        "customer_id": str(customer_id),
        "content_id": str(content_id),
        "organization_id": str(organization_id),
    }


def store_checkout_session(
    session: Session,
    *,
    session_id: str,
    provider: str,
    customer_id: uuid.UUID,
    content_id: uuid.UUID,
    organization_id: uuid.UUID,
    amount_cents: int,
    currency: str,
    url: str,
    success_url: str,
    cancel_url: str,
    expires_at: datetime,
) -> None:
    """An ``open``, ``unpaid`` row for a session the provider created; a row already stored under
    that id (a replayed idempotent create, a concurrent read-back) is kept as it is."""
    session.execute(
        pg_insert(CheckoutSession)
        .values(
            id=session_id,
            provider=provider,
            customer_id=customer_id,
            content_id=content_id,
            organization_id=organization_id,
            amount_cents=amount_cents,
            currency=currency,
            status="open",
            payment_status="unpaid",
            url=url,
            success_url=success_url,
            cancel_url=cancel_url,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing(index_elements=[CheckoutSession.id])
    )


# ---- purchases ----------------------------------------------------------------------------------

# One statement text for every purchase, plain SQL because fulfilment is the worker's hot path.
# It returns what the purchase's grant is made of (``access.grants.grant_with_purchase``).
INSERT_PURCHASE = """
        INSERT INTO purchases (id, customer_id, content_id, organization_id, provider, checkout_session_id,
            payment_intent_id, amount_cents, currency, status, purchased_at, refunded_amount_cents,
            is_duplicate, refund_status, refund_reason, refund_requested_at)
        VALUES (%(id)s, %(customer_id)s, %(content_id)s, %(organization_id)s, %(provider)s,
            %(checkout_session_id)s, %(payment_intent_id)s, %(amount_cents)s, %(currency)s, 'completed',
            %(purchased_at)s, 0, %(is_duplicate)s, %(refund_status)s, %(refund_reason)s, %(refund_requested_at)s)
        RETURNING id, customer_id, content_id, organization_id, purchased_at
"""

DUPLICATE_REFUND_REASON = "duplicate_purchase"


def purchase_params(
    *,
    purchase_id: uuid.UUID,
    customer_id: uuid.UUID,
    content_id: uuid.UUID,
    organization_id: uuid.UUID,
    provider: str,
    checkout_session_id: str,
    payment_intent_id: str,
    amount_cents: int,
    currency: str,
    purchased_at: datetime,
    duplicate: bool,
) -> dict[str, Any]:
    """The ``INSERT_PURCHASE`` parameters of a ``completed`` purchase, nothing refunded yet. A
    duplicate (a second payment for content already bought) is born with its refund requested."""
    return {
        "id": purchase_id,
        "customer_id": customer_id,
        "content_id": content_id,
        "organization_id": organization_id,
        "provider": provider,
        "checkout_session_id": checkout_session_id,
        "payment_intent_id": payment_intent_id,
        "amount_cents": amount_cents,
        "currency": currency,
        "purchased_at": purchased_at,
        "is_duplicate": duplicate,
        "refund_status": "requested" if duplicate else None,
        "refund_reason": DUPLICATE_REFUND_REASON if duplicate else None,
        "refund_requested_at": purchased_at if duplicate else None,
    }


def insert_purchase(session: Session, params: dict[str, Any]) -> None:
    """A purchase without a grant (a duplicate: the customer's access comes from the first one)."""
    session.connection().exec_driver_sql(INSERT_PURCHASE, params).close()
