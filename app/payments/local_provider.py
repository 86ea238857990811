"""The local payment provider: a built-in test checkout page instead of Stripe (development, tests).

It speaks Stripe's language so that nothing downstream can tell: session ids ``cs_local_`` + 32
hex, Stripe-shaped session/charge/refund objects, and events signed with the first
``STRIPE_WEBHOOK_SECRET`` exactly as Stripe signs them, handed to the event sink the domain
registered (``payments.deliver_event``: commerce's ingest, the one the webhook endpoint uses, so
the signature is verified there too). Ids derived from one session share its hex part
(``cs_local_X`` -> ``pi_local_X``, ``ch_local_X``, ``evt_local_X``), so a double click on Pay is
one event and one payment. Refuses to run in production.

Like Stripe it keeps its own copy of every session it creates, apart from our
``checkout_sessions`` row: a Redis record (``payments:local:session:{id}``, kept 30 days past
``expires_at``), so that a session whose row was never stored (the insert after creation
failed) can still be read back (security.md §9). The row stays the first source: it carries the
session's later state.

An adapter does not read our tables: what it needs of them (the stored session, whether its
completion event was delivered, the payment a refund is for, the page's labels) it asks of the
``LocalStore`` the domain registers (``register_local_store``; commerce does, in ``create_app``),
in its own terms (``StoredSession``, ``StoredPayment``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis
from flask import Flask, current_app

from app import errors, keys
from app.payments import deliver_event
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
STORE_EXTENSION = "payments_local_store"


# ---- what the domain tells the provider about its rows --------------------------------------


@dataclass(frozen=True)
class StoredSession:
    """A checkout session as the app stored it when this provider created it (its later state
    included), in Stripe's terms."""

    id: str
    amount_cents: int
    currency: str
    status: str  # open | complete | expired
    payment_status: str  # unpaid | paid | failed
    client_reference_id: str
    metadata: Mapping[str, str]
    success_url: str
    cancel_url: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class StoredPayment:
    """The app's record of a paid session's payment: what a refund's charge object is built from."""

    amount_cents: int
    refunded_amount_cents: int
    currency: str
    paid_at: datetime


@dataclass(frozen=True)
class PageLabels:
    """What the test checkout page shows: the product and its price, formatted."""

    title: str
    price: str


class LocalStore(Protocol):
    """Read-only lookups the domain provides to the local provider (its tables, its formatting)."""

    def session(
        self, provider: str, session_id: str, *, reread: bool = False, lock: bool = False
    ) -> StoredSession | None:
        """The stored session ``session_id`` if ``provider`` created it. ``reread``: from the
        database, not the transaction's copy; ``lock``: reread and hold it FOR UPDATE."""
        ...

    def completion_delivered(self, session_id: str) -> bool:
        """Whether a ``checkout.session.completed`` event for the session was delivered (stored)."""
        ...

    def payment(self, payment_intent_id: str) -> StoredPayment | None:
        """The recorded payment of ``payment_intent_id``, if any."""
        ...

    def page_labels(self, stored: StoredSession) -> PageLabels:
        """The product name and the formatted price the test page shows for ``stored``."""
        ...


def register_local_store(app: Flask, store: LocalStore) -> None:
    app.extensions[STORE_EXTENSION] = store


def local_store() -> LocalStore:
    store: LocalStore | None = current_app.extensions.get(STORE_EXTENSION)
    if store is None:
        raise RuntimeError("no local payment store registered (create_app registers commerce's)")
    return store


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


def success_redirect(stored: StoredSession) -> str:
    return stored.success_url.replace("{CHECKOUT_SESSION_ID}", stored.id)


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

    def session_object(self, stored: StoredSession, *, paid: bool) -> StripeObject:
        """``stored`` as Stripe would show it; ``paid`` once its Pay button produced the event."""
        hex_part = _suffix(stored.id, SESSION_PREFIX) or stored.id
        expired = stored.status == "expired" or stored.expires_at <= datetime.now(UTC)
        return {
            "id": stored.id,
            "object": "checkout.session",
            "amount_subtotal": stored.amount_cents,
            "amount_total": stored.amount_cents,
            "cancel_url": stored.cancel_url,
            "client_reference_id": stored.client_reference_id,
            "created": _epoch(stored.created_at),
            "currency": stored.currency,
            "expires_at": _epoch(stored.expires_at),
            "livemode": False,
            "metadata": dict(stored.metadata),
            "mode": "payment",
            "payment_intent": f"pi_local_{hex_part}" if paid else None,
            "payment_status": "paid" if paid else "unpaid",
            "status": "complete" if paid else ("expired" if expired else "open"),
            "success_url": stored.success_url,
            "url": None if paid or expired else self.checkout_url(stored.id),
        }

    def stored_session(self, session_id: str, *, reread: bool = False, lock: bool = False) -> StoredSession | None:
        """The app's row of a session this provider created (None for another provider's)."""
        return local_store().session(self.name, session_id, reread=reread, lock=lock)

    def is_paid(self, stored: StoredSession) -> bool:
        """Paid once a completion event exists for it (the Pay button ran), processed or not."""
        return stored.payment_status == "paid" or local_store().completion_delivered(stored.id)

    def retrieve_checkout_session(self, session_id: str) -> StripeObject | None:
        """From the ``checkout_sessions`` row; without one, from the provider's own record.

        Raises ``TransientProviderError`` when the record cannot be read (Redis unreachable).
        """
        stored = self.stored_session(session_id)
        if stored is not None:
            return self.session_object(stored, paid=self.is_paid(stored))
        if not session_id.startswith(SESSION_PREFIX):
            return None
        record = self._record(session_id)
        if record is None:
            return None
        return self.recorded_object(record, paid=local_store().completion_delivered(session_id))

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

    def pay(self, session_id: str) -> str:
        """Pay: a signed ``checkout.session.completed`` into the event sink; the redirect URL.

        Locks the stored session (FOR UPDATE: one Pay at a time); the caller commits. Unknown
        here: ``NotFound``. Already paid: no new event.
        """
        stored = self.stored_session(session_id, lock=True)
        if stored is None:
            raise errors.NotFound()
        if self.is_paid(stored):
            return success_redirect(stored)
        if stored.status == "expired" or stored.expires_at <= datetime.now(UTC):
            raise errors.Conflict("This checkout session has expired.")
        hex_part = _suffix(stored.id, SESSION_PREFIX) or secrets.token_hex(16)
        event = make_event(
            "checkout.session.completed",
            self.session_object(stored, paid=True),
            event_id=f"evt_local_{hex_part}",
            api_version=self.api_version,
        )
        deliver_event(*signed_body(event))
        return success_redirect(stored)

    # ---- refunds ----------------------------------------------------------------------------

    def create_refund(
        self, *, payment_intent_id: str, amount_cents: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundResult:
        """A signed ``charge.refunded`` (cumulative ``amount_refunded``) into the event sink, in
        the caller's transaction: the event exists exactly when the submission is recorded."""
        purchase = local_store().payment(payment_intent_id)
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
            "created": _epoch(purchase.paid_at),
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
        deliver_event(*signed_body(event))
        return RefundResult(refund_id=refund_id, status="succeeded")
