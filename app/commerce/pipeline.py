"""The Stripe event pipeline (jobs.md §4): what its phases share.

A webhook is a hint (pretix): the request path only verifies, stores and acknowledges it. The
worker claims the stored row in its own committed transaction, then applies the event's effect
and the ``processed`` status together in a second one, under a per-payment advisory lock, with
every state change guarded so that replays, duplicates and out-of-order deliveries converge on
the in-order result. Where the event alone is not enough (a refund for a payment we never saw
complete) the object is read back from the provider.

The phases, in the order an event meets them:

- ``webhooks``: the request side (verify, store, enqueue);
- ``processing``: the worker's claim, the handler dispatch, the outcome, sweeps and replays;
- ``fulfilment``: checkout sessions completing, expiring or failing, and the purchase;
- ``refunds`` and ``disputes``: money going back, and access with it;
- ``reconciliation``: the events Stripe never delivered, and sessions nobody completed.

This module holds their shared vocabulary: task names, the handled event types, the errors a
handler raises, the claimed row as handlers see it, the per-payment locks and the readers of
provider fields. Nothing in the pipeline commits except two single autocommit statements (the
webhook's INSERT and the worker's claim); ``tasks/payments.py`` owns the transactions.

Both sides run hundreds of times a second, so the hot path (ingest, claim, row lock, fulfil) is
plain SQL on the session's connection, each statement built once and prepared by psycopg; the
rarer paths (refunds, disputes, duplicates, failures, sweeps, administration) use the ORM.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from app.payments import get_provider
from app.payments.base import PaymentProvider

PROCESS_TASK = "payments.process_stripe_event"
REFUND_TASK = "payments.submit_refund"

HANDLED_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "charge.refunded",
        "charge.dispute.created",
        "charge.dispute.closed",
    }
)
EVENT_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")
LAST_ERROR_MAX = 2000
_MAX_CENTS = 10**10


def utcnow() -> datetime:
    return datetime.now(UTC)


def expected_livemode() -> bool:
    """``sk_live_`` keys receive live events; local and ``sk_test_`` receive test events."""
    return get_provider().livemode


# ---- errors -------------------------------------------------------------------------------------


class EventError(Exception):
    """Processing failed; ``permanent`` errors make the event ``dead`` at once (``AmountMismatch``:
    ``failed``, never retried by itself)."""

    permanent = False
    code: str | None = None  # a spec error code: ``last_error`` starts with it instead of the class name


class PermanentEventError(EventError):
    """The event can never succeed as it is (invalid metadata, unknown customer or content)."""

    permanent = True


class TransientEventError(EventError):
    """Try again later (the purchase is not recorded yet, the provider is unreachable)."""


@dataclass(frozen=True)
class SessionFacts:
    """What a Checkout Session object says, validated against the database (fulfil step 1),
    with what the purchase emails need (the org and its owner) read in the same statement."""

    session_id: str
    customer_id: uuid.UUID
    customer_email: str
    customer_name: str
    content_id: uuid.UUID
    content_title: str
    content_slug: str
    organization_id: uuid.UUID
    org_slug: str
    owner_id: uuid.UUID | None
    owner_email: str | None
    owner_name: str | None
    amount_cents: int
    currency: str


class AmountMismatch(PermanentEventError):
    """security.md §9 "Money must match": the session's amount or currency is not what this app
    asked for, or the session is not one this app created. Recorded as ``failed`` and never
    retried by itself (``processing.record_failure``): no purchase, no grant, an audit row in the org."""

    code = "AMOUNT_MISMATCH"

    def __init__(self, reason: str, facts: SessionFacts, expected: tuple[int, str] | None = None) -> None:
        stored = f"{expected[0]} {expected[1]}" if expected else "none"
        super().__init__(f"{reason} (event: {facts.amount_cents} {facts.currency}; expected: {stored})")
        self.reason = reason
        self.facts = facts
        self.expected = expected


def describe(exc: BaseException) -> str:
    """``last_error``: the exception class and message, bounded (no payloads, no secrets).

    Database errors keep only the driver's first message line: SQLAlchemy's own text carries the
    SQL and its parameters, which may hold the event payload (customer email and the like).
    """
    if isinstance(exc, StatementError):
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else ""
        return f"{type(exc).__name__}: {type(exc.orig).__name__}: {first}"[:LAST_ERROR_MAX]
    code = exc.code if isinstance(exc, EventError) else None
    return f"{code or type(exc).__name__}: {exc}"[:LAST_ERROR_MAX]


# ---- the claimed event, as handlers see it ------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    """The claimed ``stripe_events`` row as the handlers read it (never written through)."""

    id: str
    type: str
    livemode: bool
    payload: dict[str, Any]
    attempts: int
    stripe_created_at: datetime
    payment_intent_id: str | None


@dataclass
class EventContext:
    session: Session
    event: EventRow

    @property
    def provider(self) -> PaymentProvider:
        return get_provider()

    @property
    def object(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.event.payload["data"]["object"]
        return obj


# ---- per-payment locks --------------------------------------------------------------------------

_LOCKS = "codex_advisory_locks"


def advisory_lock(session: Session, key: str) -> None:
    """``pg_advisory_xact_lock(hashtext(key))``, once per transaction (the set is dropped at its end)."""
    held: set[str] = session.info.setdefault(_LOCKS, set())
    if key in held:
        return
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
    held.add(key)


def note_lock_held(session: Session, key: str) -> None:
    """A statement of the caller's took ``pg_advisory_xact_lock(hashtext(key))`` itself: remember it."""
    session.info.setdefault(_LOCKS, set()).add(key)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_soft_rollback")
def _locks_released(db_session: Session, *args: Any) -> None:
    # Forgetting is always safe: taking a held transaction-level lock again is a no-op.
    db_session.info.pop(_LOCKS, None)


def lock_payment(session: Session, payment_intent_id: str) -> None:
    """Serialise everything that touches one payment (events, reconciliation, status page)."""
    advisory_lock(session, f"pi:{payment_intent_id}")


# ---- provider fields ------------------------------------------------------------------------------


def short_str(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def payment_intent_of(obj: dict[str, Any]) -> str | None:
    """``payment_intent`` of a session, charge or dispute (an id, or an expanded object)."""
    value = obj.get("payment_intent")
    if isinstance(value, dict):
        value = value.get("id")
    return short_str(value, 255)


def cents(value: Any, name: str) -> int:
    """A money figure from the provider: an integer number of cents, never a float or a string."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_CENTS:
        raise PermanentEventError(f"{name} is not an integer amount of cents")
    return value
