"""The local payment provider: a built-in test checkout page instead of Stripe (development, tests).

It speaks Stripe's language so that nothing downstream can tell: session ids ``cs_local_`` + 32
hex, Stripe-shaped session/charge/refund objects, and events signed with the first
``STRIPE_WEBHOOK_SECRET`` exactly as Stripe signs them, handed to the same ingest function the
webhook endpoint uses (the signature is verified there too). Ids derived from one session
share its hex part (``cs_local_X`` -> ``pi_local_X``, ``ch_local_X``, ``evt_local_X``), so a
double click on Pay is one event and one payment. Refuses to run in production.

Like Stripe it keeps its own copy of every session it creates, apart from our
``checkout_sessions`` row: a Redis record (``payments:local:session:{id}``, kept 30 days past
``expires_at``), so that a session whose row was never stored (the insert after creation
failed) can still be read back (security.md §9). The row stays the first source: it carries the
session's later state.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from flask import current_app
from sqlalchemy import select

from app import db, errors, keys
from app.commerce.models import CheckoutSession, Purchase, StripeEvent
from app.payments.base import (
    CheckoutRequest,
    PermanentProviderError,
    RefundResult,
    StripeObject,
    TransientProviderError,
)
from app.payments.signature import sign

SESSION_PREFIX = "cs_local_"
# Late events, retries with backoff and admin replays come after a session expired.
RECORD_KEPT_AFTER_EXPIRY = timedelta(days=30)
# What the record keeps: what the session was created with, not the customer's email (no PII
# outside the database); its state (paid, expired) is worked out when it is read.
RECORDED_FIELDS = (
    "id",
    "amount_subtotal",
    "amount_total",
    "cancel_url",
    "client_reference_id",
    "created",
    "currency",
    "expires_at",
    "metadata",
    "success_url",
)


session_record_key = keys.local_payment_session  # the provider's own copy, written and read only here


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _suffix(object_id: str, prefix: str) -> str | None:
    return object_id[len(prefix) :] if object_id.startswith(prefix) else None


def make_event(event_type: str, obj: StripeObject, *, event_id: str, api_version: str) -> dict[str, Any]:
    """A Stripe event envelope around ``obj`` (the shape of ``GET /v1/events/{id}``)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": int(datetime.now(UTC).timestamp()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def signed_body(event: Mapping[str, Any]) -> tuple[bytes, str]:
    """The JSON body and its ``Stripe-Signature`` with the first configured webhook secret."""
    body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return body, sign(body, current_app.config["STRIPE_WEBHOOK_SECRET"][0])


def success_redirect(row: CheckoutSession) -> str:
    return row.success_url.replace("{CHECKOUT_SESSION_ID}", row.id)


class LocalProvider:
    name = "local"

    def __init__(self, config: Mapping[str, Any]) -> None:
        if config["APP_ENV"] == "production":
            raise RuntimeError("the local payment provider must not run in production")
        self.public_base_url = config["PUBLIC_BASE_URL"].rstrip("/")
        self.api_version = config["STRIPE_API_VERSION"]

    @property
    def livemode(self) -> bool:
        return False

    # ---- sessions -----------------------------------------------------------------------

    def checkout_url(self, session_id: str) -> str:
        return f"{self.public_base_url}/payments/local/checkout/{session_id}"

    def create_checkout_session(self, request: CheckoutRequest) -> StripeObject:
        session_id = SESSION_PREFIX + secrets.token_hex(16)
        obj = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": request.amount_cents,
            "amount_total": request.amount_cents,
            "cancel_url": request.cancel_url,
            "client_reference_id": request.client_reference_id,
            "created": int(datetime.now(UTC).timestamp()),
            "currency": request.currency,
            "customer_email": request.customer_email,
            "expires_at": _epoch(request.expires_at),
            "livemode": False,
            "metadata": dict(request.metadata),
            "mode": "payment",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": request.success_url,
            "url": self.checkout_url(session_id),
        }
        self._keep(obj, request.expires_at)
        return obj

    def _keep(self, obj: StripeObject, expires_at: datetime) -> None:
        record = json.dumps({key: obj[key] for key in RECORDED_FIELDS})
        try:
            current_app.extensions["redis"].set(
                session_record_key(obj["id"]), record, exat=expires_at + RECORD_KEPT_AFTER_EXPIRY
            )
        except redis.RedisError as exc:
            # Stripe failing to store a session fails the create call too: checkout answers 503.
            raise TransientProviderError(f"local session store unavailable: {type(exc).__name__}") from exc

    def _record(self, session_id: str) -> StripeObject | None:
        try:
            raw = current_app.extensions["redis"].get(session_record_key(session_id))
        except redis.RedisError as exc:
            raise TransientProviderError(f"local session store unavailable: {type(exc).__name__}") from exc
        if raw is None:
            return None
        record: StripeObject = json.loads(raw)
        return record

    def session_object(self, row: CheckoutSession, *, paid: bool) -> StripeObject:
        """``row`` as Stripe would show it; ``paid`` once its Pay button produced the event."""
        hex_part = _suffix(row.id, SESSION_PREFIX) or row.id
        expired = row.status == "expired" or row.expires_at <= datetime.now(UTC)
        return {
            "id": row.id,
            "object": "checkout.session",
            "amount_subtotal": row.amount_cents,
            "amount_total": row.amount_cents,
            "cancel_url": row.cancel_url,
            "client_reference_id": str(row.customer_id),
            "created": _epoch(row.created_at),
            "currency": row.currency,
            "expires_at": _epoch(row.expires_at),
            "livemode": False,
            "metadata": {
                "customer_id": str(row.customer_id),
                "content_id": str(row.content_id),
                "organization_id": str(row.organization_id),
            },
            "mode": "payment",
            "payment_intent": f"pi_local_{hex_part}" if paid else None,
            "payment_status": "paid" if paid else "unpaid",
            "status": "complete" if paid else ("expired" if expired else "open"),
            "success_url": row.success_url,
            "url": None if paid or expired else self.checkout_url(row.id),
        }

    def _row(self, session_id: str) -> CheckoutSession | None:
        row = db.session.get(CheckoutSession, session_id)
        return row if row is not None and row.provider == "local" else None

    def is_paid(self, row: CheckoutSession) -> bool:
        """Paid once a completion event exists for it (the Pay button ran), processed or not."""
        return row.payment_status == "paid" or self._completion_event_exists(row.id)

    def _completion_event_exists(self, session_id: str) -> bool:
        event_id = db.session.scalar(
            select(StripeEvent.id)
            .where(StripeEvent.object_id == session_id, StripeEvent.type == "checkout.session.completed")
            .limit(1)
        )
        return event_id is not None

    def retrieve_checkout_session(self, session_id: str) -> StripeObject | None:
        """From the ``checkout_sessions`` row; without one, from the provider's own record.

        Raises ``TransientProviderError`` when the record cannot be read (Redis unreachable).
        """
        row = self._row(session_id)
        if row is not None:
            return self.session_object(row, paid=self.is_paid(row))
        if not session_id.startswith(SESSION_PREFIX):
            return None
        record = self._record(session_id)
        if record is None:
            return None
        return self.recorded_object(record, paid=self._completion_event_exists(session_id))

    def recorded_object(self, record: StripeObject, *, paid: bool) -> StripeObject:
        """A session known only from the provider's record, as Stripe would show it now."""
        session_id = record["id"]
        hex_part = _suffix(session_id, SESSION_PREFIX) or session_id
        expired = record["expires_at"] <= int(datetime.now(UTC).timestamp())
        return {
            **record,
            "object": "checkout.session",
            "livemode": False,
            "mode": "payment",
            "payment_intent": f"pi_local_{hex_part}" if paid else None,
            "payment_status": "paid" if paid else "unpaid",
            "status": "complete" if paid else ("expired" if expired else "open"),
            "url": None if paid or expired else self.checkout_url(session_id),
        }

    def find_session_for_payment_intent(self, payment_intent_id: str) -> StripeObject | None:
        hex_part = _suffix(payment_intent_id, "pi_local_")
        if hex_part is None:
            return None
        obj = self.retrieve_checkout_session(SESSION_PREFIX + hex_part)
        return obj if obj is not None and obj["payment_status"] == "paid" else None

    def payment_intent_for_charge(self, charge_id: str) -> str | None:
        hex_part = _suffix(charge_id, "ch_local_")
        return f"pi_local_{hex_part}" if hex_part else None

    def list_recent_complete_sessions(self, created_since: datetime) -> Iterator[StripeObject]:
        # Local events are produced in-process and stored before the page answers: nothing to reconcile.
        return iter(())

    # ---- the test page's buttons ----------------------------------------------------------

    def pay(self, row: CheckoutSession) -> str:
        """Pay: a signed ``checkout.session.completed`` into the ingest function; the redirect URL.

        The caller holds ``row`` locked (FOR UPDATE) and commits. Already paid: no new event.
        """
        from app.commerce.events import ingest  # commerce imports payments, not the reverse

        if self.is_paid(row):
            return success_redirect(row)
        if row.status == "expired" or row.expires_at <= datetime.now(UTC):
            raise errors.Conflict("This checkout session has expired.")
        hex_part = _suffix(row.id, SESSION_PREFIX) or secrets.token_hex(16)
        event = make_event(
            "checkout.session.completed",
            self.session_object(row, paid=True),
            event_id=f"evt_local_{hex_part}",
            api_version=self.api_version,
        )
        body, signature = signed_body(event)
        ingest(db.session, body, signature, source="local")
        return success_redirect(row)

    # ---- refunds ----------------------------------------------------------------------------

    def create_refund(
        self, *, payment_intent_id: str, amount_cents: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundResult:
        """A signed ``charge.refunded`` (cumulative ``amount_refunded``) into the ingest function,
        in the caller's transaction: the event exists exactly when the submission is recorded."""
        from app.commerce.events import ingest

        session = db.session
        purchase = session.scalars(select(Purchase).where(Purchase.payment_intent_id == payment_intent_id)).first()
        if purchase is None:
            raise PermanentProviderError("No such payment_intent.", code="resource_missing", status=404)
        if purchase.refunded_amount_cents >= purchase.amount_cents:
            raise PermanentProviderError(
                "Charge has already been refunded.", code="charge_already_refunded", status=400
            )
        total = min(purchase.amount_cents, purchase.refunded_amount_cents + amount_cents)
        # Derived from the idempotency key: a retried submission is the same refund and the same event.
        digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
        hex_part = _suffix(payment_intent_id, "pi_local_") or digest
        charge_id = f"ch_local_{hex_part}"
        refund_id = f"re_local_{digest}"
        charge = {
            "id": charge_id,
            "object": "charge",
            "amount": purchase.amount_cents,
            "amount_captured": purchase.amount_cents,
            "amount_refunded": total,
            "captured": True,
            "created": _epoch(purchase.purchased_at),
            "currency": purchase.currency,
            "livemode": False,
            "metadata": {},
            "paid": True,
            "payment_intent": payment_intent_id,
            "refunded": total >= purchase.amount_cents,
            "refunds": {
                "object": "list",
                "data": [
                    {
                        "id": refund_id,
                        "object": "refund",
                        "amount": total - purchase.refunded_amount_cents,
                        "charge": charge_id,
                        "currency": purchase.currency,
                        "metadata": dict(metadata),
                        "payment_intent": payment_intent_id,
                        "reason": None,
                        "status": "succeeded",
                    }
                ],
                "has_more": False,
                "total_count": 1,
                "url": f"/v1/charges/{charge_id}/refunds",
            },
            "status": "succeeded",
        }
        event = make_event("charge.refunded", charge, event_id=f"evt_local_{digest}", api_version=self.api_version)
        body, signature = signed_body(event)
        ingest(session, body, signature, source="local")
        return RefundResult(refund_id=refund_id, status="succeeded")
