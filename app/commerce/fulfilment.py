"""Fulfilment (jobs.md §4.3 "Fulfil"): a paid Checkout Session becomes exactly one purchase.

The checkout-session events in the order a payment meets them: ``completed`` (paid, or complete
and unpaid for async methods), ``async_payment_succeeded`` / ``failed``, ``expired``. A paid
session is checked against what this app stored (security.md §9 "Money must match"), completed,
and turned into a purchase and its grant in one statement; a second payment for content already
bought is recorded as a duplicate and refunded. Refunds and disputes for a payment never seen
completing rebuild its purchase from the provider here too (``self_heal``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import audit
from app.access import grants
from app.commerce import records
from app.commerce.emails import queue_purchase_emails
from app.commerce.models import CheckoutSession, Purchase
from app.commerce.pipeline import (
    REFUND_TASK,
    AmountMismatch,
    EventContext,
    PermanentEventError,
    SessionFacts,
    TransientEventError,
    cents,
    lock_payment,
    note_lock_held,
    payment_intent_of,
    short_str,
    utcnow,
)
from app.content.models import Content
from app.db import enqueue_after_commit
from app.identity.models import User
from app.payments import get_provider
from app.payments.base import ProviderError, StripeObject

log = structlog.get_logger(__name__)

SELF_HEAL_FROM_ATTEMPT = 3
_CURRENCY = re.compile(r"^[a-z]{3}$")
MIN_SESSION_CENTS = 50  # checkout_sessions.amount_cents CHECK (Stripe's own minimum)


# ---- the checkout.session.* handlers ------------------------------------------------------------


def session_completed(ctx: EventContext) -> str:
    obj = ctx.object
    if obj.get("mode") != "payment":
        return "ignored"
    if obj.get("payment_status") == "paid":
        fulfil(ctx.session, obj)
    else:
        # Async payment methods: complete now, paid (or failed) in a later event.
        record_session(ctx.session, obj)
    return "processed"


def async_succeeded(ctx: EventContext) -> str:
    obj = ctx.object
    if obj.get("mode") != "payment":
        return "ignored"
    fulfil(ctx.session, obj)
    return "processed"


def async_failed(ctx: EventContext) -> str:
    ctx.session.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == ctx.object.get("id"), CheckoutSession.payment_status == "unpaid")
        .values(payment_status="failed", updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return "processed"


def session_expired(ctx: EventContext) -> str:
    # Guarded: a completed session is never downgraded.
    ctx.session.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == ctx.object.get("id"), CheckoutSession.status == "open")
        .values(status="expired", updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return "processed"


# ---- step 1: the session's facts ----------------------------------------------------------------


def _uuid_field(meta: dict[str, Any], name: str) -> uuid.UUID:
    value = meta.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError
        return uuid.UUID(value)
    except ValueError:
        raise PermanentEventError(f"metadata.{name} is not a UUID") from None


# Customer, content (whatever its status or deletion: money was taken), its org and the org's owner
# (at most one, ``ux_memberships_one_owner``) in one round trip; {lock} optionally takes the
# (customer, content) advisory lock in the same statement.
_FACTS = """
    SELECT u.id, u.email, u.name, c.id, c.title, c.slug, c.organization_id, o.slug, ow.id, ow.email, ow.name{lock}
    FROM users u
    JOIN content c ON c.id = %(content_id)s AND c.organization_id = %(organization_id)s
    JOIN organizations o ON o.id = c.organization_id
    LEFT JOIN memberships m ON m.organization_id = o.id AND m.role = 'owner'
    LEFT JOIN users ow ON ow.id = m.user_id
    WHERE u.id = %(customer_id)s
"""
_FACTS_LOCKING = _FACTS.format(lock=", pg_advisory_xact_lock(hashtext(%(lock_key)s))")
_FACTS_PLAIN = _FACTS.format(lock="")


def session_facts(session: Session, obj: StripeObject, *, lock_purchase: bool = False) -> SessionFacts:
    session_id = obj.get("id")
    if not isinstance(session_id, str) or not session_id.startswith("cs_") or len(session_id) > 255:
        raise PermanentEventError("checkout session id missing or invalid")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise PermanentEventError("checkout session has no metadata")
    customer_id = _uuid_field(meta, "customer_id")
    content_id = _uuid_field(meta, "content_id")
    organization_id = _uuid_field(meta, "organization_id")
    lock_key = f"purchase:{customer_id}:{content_id}"
    row = (
        session.connection()
        .exec_driver_sql(
            _FACTS_LOCKING if lock_purchase else _FACTS_PLAIN,
            {
                "customer_id": customer_id,
                "content_id": content_id,
                "organization_id": organization_id,
                "lock_key": lock_key,
            },
        )
        .first()
    )
    if row is None:
        if session.get(User, customer_id) is None:
            raise PermanentEventError("metadata.customer_id is not a known user")
        raise PermanentEventError("metadata.content_id is not content of metadata.organization_id")
    if lock_purchase:
        note_lock_held(session, lock_key)
    currency = obj.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency.lower()):
        raise PermanentEventError("currency missing or invalid")
    return SessionFacts(
        session_id=session_id,
        customer_id=row[0],
        customer_email=row[1],
        customer_name=row[2],
        content_id=row[3],
        content_title=row[4],
        content_slug=row[5],
        organization_id=row[6],
        org_slug=row[7],
        owner_id=row[8],
        owner_email=row[9],
        owner_name=row[10],
        amount_cents=cents(obj.get("amount_total"), "amount_total"),
        currency=currency.lower(),
    )


def _timestamp(value: Any, default: datetime) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**11:
        return datetime.fromtimestamp(value, UTC)
    return default


# ---- step 2: the stored session, completed ------------------------------------------------------


@dataclass(frozen=True)
class CompletedSession:
    """The ``checkout_sessions`` row after ``complete_session``, and the purchases that matter to fulfil."""

    id: str
    provider: str
    amount_cents: int
    currency: str
    # (id, payment_intent_id) of purchases with this payment intent, or completed non-duplicate
    # purchases of the same content by the same customer.
    purchases: list[tuple[uuid.UUID, str]]


# Fulfil step 2 and the purchase lookup of steps 3/5 in one statement. The lookup sees every
# purchase committed before the statement began, which is after the payment's and the
# (customer, content) advisory locks were taken. No row: nothing is returned (see ``read_back``).
_COMPLETE_SESSION = """
    WITH cs AS (
        UPDATE checkout_sessions AS t SET
            status = 'complete',
            completed_at = coalesce(t.completed_at, %(now)s),
            payment_status = CASE WHEN %(paid)s THEN 'paid' ELSE t.payment_status END,
            payment_intent_id = coalesce(t.payment_intent_id, %(payment_intent_id)s),
            updated_at = now()
        WHERE t.id = %(id)s
        RETURNING t.id, t.provider, t.customer_id, t.content_id, t.amount_cents, t.currency
    )
    SELECT cs.id, cs.provider, cs.customer_id, cs.content_id, cs.amount_cents, cs.currency, p.id, p.payment_intent_id
    FROM cs LEFT JOIN purchases p
      ON p.payment_intent_id = %(payment_intent_id)s
      OR (p.customer_id = cs.customer_id AND p.content_id = cs.content_id
          AND p.status = 'completed' AND NOT p.is_duplicate)
"""


def complete_session(
    session: Session, facts: SessionFacts, *, paid: bool, payment_intent_id: str | None
) -> CompletedSession:
    """The ``checkout_sessions`` row this app created, now ``complete`` (and ``paid``), locked for
    this transaction, after checking that the event's money is the row's (security.md §9).

    One statement, ``UPDATE … RETURNING``: ``open``/``expired`` -> ``complete`` (money was taken,
    so an expiry recorded first yields), ``completed_at`` and ``payment_intent_id`` kept once set,
    ``payment_status`` only ever raised to ``paid``. A missing row (the insert after creating the
    session failed) is stored from the provider's own copy of the session, never from the event.
    Raises ``AmountMismatch`` when the event's ``amount_total`` or currency differ from the row.
    """
    params = {
        "id": facts.session_id,
        "paid": paid,
        "payment_intent_id": payment_intent_id,
        "now": utcnow(),
    }
    connection = session.connection()
    rows = connection.exec_driver_sql(_COMPLETE_SESSION, params).all()
    if not rows:
        read_back(session, facts)
        rows = connection.exec_driver_sql(_COMPLETE_SESSION, params).all()
    first = rows[0]
    if first[2] != facts.customer_id or first[3] != facts.content_id:
        raise PermanentEventError("checkout session metadata does not match the stored session")
    if (facts.amount_cents, facts.currency) != (first[4], first[5]):
        raise AmountMismatch("amount_total or currency differs from the checkout session", facts, (first[4], first[5]))
    purchases = [(row[6], row[7]) for row in rows if row[6] is not None]
    return CompletedSession(first[0], first[1], first[4], first[5], purchases)


def read_back(session: Session, facts: SessionFacts) -> None:
    """No ``checkout_sessions`` row: ask the provider for the session (``GET
    /v1/checkout/sessions/{id}``) and store the row from its answer, but only when the session
    carries this deployment's metadata (the event's, already checked against our tables) and an
    ``amount_total`` of at least the content's current price in the content's currency.

    Raises ``AmountMismatch`` otherwise (unknown to the provider, other metadata, less money,
    another currency), ``TransientEventError`` when the provider cannot answer now, and
    ``PermanentEventError`` when it refuses the call (a 4xx other than 404).
    """
    provider = get_provider()
    try:
        remote = provider.retrieve_checkout_session(facts.session_id)
    except ProviderError as exc:
        if exc.transient:
            raise TransientEventError(f"checkout session read-back failed: {exc}") from exc
        raise PermanentEventError(f"checkout session read-back refused: {exc}") from exc
    if remote is None or remote.get("id") != facts.session_id:
        raise AmountMismatch("checkout session unknown here and at the provider", facts)
    meta = remote.get("metadata")
    ours = records.session_metadata(facts.customer_id, facts.content_id, facts.organization_id)
    if not isinstance(meta, dict) or {key: meta.get(key) for key in ours} != ours:
        raise AmountMismatch("the provider's session does not carry this deployment's metadata", facts)
    content = session.get(Content, facts.content_id)
    assert content is not None  # session_facts found it
    least = (max(content.price_cents or 0, MIN_SESSION_CENTS), content.currency)
    amount, currency = remote.get("amount_total"), remote.get("currency")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int)
        or not isinstance(currency, str)
        or currency.lower() != content.currency
        or amount < least[0]
    ):
        raise AmountMismatch("the provider's session is below the content's price or in another currency", facts, least)
    records.store_checkout_session(
        session,
        session_id=facts.session_id,
        provider=provider.name,
        customer_id=facts.customer_id,
        content_id=facts.content_id,
        organization_id=facts.organization_id,
        amount_cents=amount,
        currency=content.currency,
        # Stored open and unpaid: complete_session moves it on, as for a row stored at checkout.
        url=short_str(remote.get("url"), 10_000) or "",
        success_url=(short_str(remote.get("success_url"), 10_000) or "")[:2000],
        cancel_url=(short_str(remote.get("cancel_url"), 10_000) or "")[:2000],
        expires_at=_timestamp(remote.get("expires_at"), utcnow()),
    )
    log.warning("stripe.session_read_back", checkout_session_id=facts.session_id, provider=provider.name)


def record_session(session: Session, obj: StripeObject) -> CompletedSession:
    """checkout.session.completed with ``payment_status = unpaid``: complete, not (yet) paid."""
    facts = session_facts(session, obj)
    return complete_session(session, facts, paid=False, payment_intent_id=payment_intent_of(obj))


# ---- steps 3-6: the purchase --------------------------------------------------------------------


def fulfil(session: Session, obj: StripeObject, *, send_emails: bool = True) -> uuid.UUID:
    """Turn a paid Checkout Session into exactly one purchase (jobs.md §4.3 "Fulfil"); its id.

    Idempotent per payment intent: the caller holds the payment's advisory lock and
    ``UNIQUE(payment_intent_id)`` backs it, so completed + async_succeeded + reconciliation +
    replays all end in one purchase, one grant and one receipt. The amount and currency are the
    stored session's; an event that differs is an ``AmountMismatch`` (``complete_session``).
    """
    payment_intent_id = payment_intent_of(obj)
    if payment_intent_id is None:
        raise PermanentEventError("paid checkout session without payment_intent")
    lock_payment(session, payment_intent_id)  # held already when called for an event of this payment
    # Two different payments for the same item must not both become "the" purchase: the facts
    # query also takes the (customer, content) lock, always after the payment's lock.
    facts = session_facts(session, obj, lock_purchase=True)
    row = complete_session(session, facts, paid=True, payment_intent_id=payment_intent_id)
    existing = next((pid for pid, intent in row.purchases if intent == payment_intent_id), None)
    if existing is not None:
        return existing
    original = row.purchases[0][0] if row.purchases else None
    now = utcnow()
    purchase = records.purchase_params(
        purchase_id=uuid.uuid4(),
        customer_id=facts.customer_id,
        content_id=facts.content_id,
        organization_id=facts.organization_id,
        provider=row.provider,
        checkout_session_id=row.id,
        payment_intent_id=payment_intent_id,
        amount_cents=row.amount_cents,  # the stored session's money (the event's was checked against it)
        currency=row.currency,
        purchased_at=now,
        duplicate=original is not None,
    )
    purchase_id: uuid.UUID = purchase["id"]
    if original is not None:
        return _duplicate(session, purchase, original)
    # Step 6: the purchase and its grant in one statement (access writes the grant).
    grants.grant_with_purchase(
        session, records.INSERT_PURCHASE, purchase, user_id=facts.customer_id, content_id=facts.content_id
    )
    if send_emails:
        queue_purchase_emails(session, facts, purchase_id, now)
    log.info(
        "commerce.purchase_completed",
        purchase_id=str(purchase_id),
        checkout_session_id=row.id,
        amount_cents=row.amount_cents,
    )
    return purchase_id


def _duplicate(session: Session, purchase: dict[str, Any], original_id: uuid.UUID) -> uuid.UUID:
    """A second paid session for content already bought: record it and refund it; access untouched."""
    records.insert_purchase(session, purchase)
    purchase_id: uuid.UUID = purchase["id"]
    audit.record(
        session,
        organization_id=purchase["organization_id"],
        actor_user_id=None,
        actor_role="system",
        action="refund.auto_duplicate",
        target_type="purchase",
        target_id=purchase_id,
        metadata={
            "original_purchase_id": str(original_id),
            "amount_cents": purchase["amount_cents"],
            "currency": purchase["currency"],
        },
    )
    enqueue_after_commit(session, REFUND_TASK, str(purchase_id))
    log.warning("commerce.duplicate_purchase", purchase_id=str(purchase_id), original_purchase_id=str(original_id))
    return purchase_id


# ---- a payment we never saw complete (refunds and disputes) -------------------------------------


def purchase_by_intent(session: Session, payment_intent_id: str) -> Purchase | None:
    """The payment's purchase, locked for this transaction."""
    return session.execute(
        select(Purchase)
        .where(Purchase.payment_intent_id == payment_intent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def self_heal(ctx: EventContext, payment_intent_id: str, *, send_emails: bool) -> Purchase:
    """A refund/dispute for a payment we have no purchase for: wait (the completion event is
    probably in flight), then from the 3rd attempt rebuild the purchase from the provider."""
    if ctx.event.attempts < SELF_HEAL_FROM_ATTEMPT:
        raise TransientEventError("purchase not yet recorded")
    try:
        obj = ctx.provider.find_session_for_payment_intent(payment_intent_id)
    except ProviderError as exc:
        raise TransientEventError(f"self-heal lookup failed: {exc}") from exc
    if obj is None or obj.get("mode") != "payment" or obj.get("payment_status") != "paid":
        raise TransientEventError("purchase not yet recorded and no paid checkout session found")
    log.warning("stripe.self_heal", event_id=ctx.event.id, checkout_session_id=obj.get("id"))
    fulfil(ctx.session, obj, send_emails=send_emails)
    purchase = purchase_by_intent(ctx.session, payment_intent_id)
    if purchase is None:  # pragma: no cover - fulfil just inserted it
        raise TransientEventError("purchase not yet recorded")
    return purchase
