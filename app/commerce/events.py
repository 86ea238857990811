"""The Stripe event pipeline (jobs.md §4): ingest, claim, handlers, failures, sweeps, reconciliation.

A webhook is a hint (pretix): the request path only verifies, stores and acknowledges it. The
worker claims the stored row in its own committed transaction, then applies the event's effect
and the ``processed`` status together in a second one, under a per-payment advisory lock, with
every state change guarded so that replays, duplicates and out-of-order deliveries converge on
the in-order result. Where the event alone is not enough (a refund for a payment we never saw
complete) the object is read back from the provider.

Nothing here commits, with two exceptions that are single autocommit statements: the webhook's
INSERT (``ingest_webhook``) and the worker's claim (``claim_event_committed``); otherwise
``tasks/payments.py`` owns the transactions. The functions take the caller's session and queue
follow-up work with ``enqueue_after_commit``.

Both sides run hundreds of times a second, so the hot path (ingest, claim, row lock, fulfil) is
plain SQL on the session's connection, each statement built once and prepared by psycopg; the
rarer paths (refunds, disputes, duplicates, failures, sweeps, administration) use the ORM.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from flask import current_app
from sqlalchemy import and_, case, event, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from app import audit, db, errors
from app.access.cache import invalidate_access_after_commit
from app.access.models import ContentAccess
from app.commerce.emails import queue_purchase_emails, queue_refund_email
from app.commerce.models import CheckoutSession, Purchase, StripeEvent
from app.content.models import Content
from app.db import after_commit, enqueue_after_commit
from app.identity.models import User
from app.metrics import PAYMENT_MISMATCHES, WEBHOOK_SIGNATURE_FAILURES
from app.payments import get_provider
from app.payments.base import PaymentProvider, ProviderError, StripeObject
from app.payments.signature import SignatureError, verify

log = structlog.get_logger(__name__)

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
CLAIM_LEASE = timedelta(minutes=10)  # a processing claim older than this belongs to a dead worker
SWEEP_RECEIVED_AFTER = timedelta(seconds=30)  # give the after-commit message a chance first
SWEEP_BATCH = 500
SELF_HEAL_FROM_ATTEMPT = 3
RECONCILE_WINDOW = timedelta(hours=72)
EXPIRE_GRACE = timedelta(hours=1)
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
# ``next_attempt_at`` of a failure that must not be retried by itself (a money mismatch): never
# due, so neither the claim nor the sweeper takes it; an admin replay resets it to now.
NOT_RETRIED = datetime(9999, 12, 31, tzinfo=UTC)
LAST_ERROR_MAX = 2000

_EVENT_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")
_CURRENCY = re.compile(r"^[a-z]{3}$")
_MAX_CENTS = 10**10
MIN_SESSION_CENTS = 50  # checkout_sessions.amount_cents CHECK (Stripe's own minimum)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---- errors -------------------------------------------------------------------------------------


class InvalidSignature(errors.AppError):
    status, code, message = 400, "INVALID_SIGNATURE", "The webhook signature is missing or invalid."


class InvalidPayload(errors.AppError):
    status, code, message = 400, "INVALID_PAYLOAD", "The webhook body is not a Stripe event."


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


class AmountMismatch(PermanentEventError):
    """security.md §9 "Money must match": the session's amount or currency is not what this app
    asked for, or the session is not one this app created. Recorded as ``failed`` and never
    retried by itself (``record_failure``): no purchase, no grant, an audit row in the org."""

    code = "AMOUNT_MISMATCH"

    def __init__(self, reason: str, facts: SessionFacts, expected: tuple[int, str] | None = None) -> None:
        stored = f"{expected[0]} {expected[1]}" if expected else "none"
        super().__init__(f"{reason} (event: {facts.amount_cents} {facts.currency}; expected: {stored})")
        self.reason = reason
        self.facts = facts
        self.expected = expected


# ---- ingest (request path, jobs.md §4.1) ----------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    event_id: str
    status: str  # received | ignored (of the stored row when inserted, else of the delivery)
    inserted: bool


def expected_livemode() -> bool:
    """``sk_live_`` keys receive live events; local and ``sk_test_`` receive test events."""
    return get_provider().livemode


@dataclass(frozen=True)
class Delivery:
    """A verified, parsed delivery: the ``stripe_events`` row to insert (``params``)."""

    event_id: str
    type: str
    status: str  # received | ignored
    params: dict[str, Any]


def verify_delivery(body: bytes, signature: str | None, *, source: str) -> Delivery:
    """Steps 1-3 of jobs.md §4.1: signature, shape, initial status. Nothing touches the database.

    Raises ``InvalidSignature`` (metric incremented) or ``InvalidPayload``.
    """
    try:
        verify(body, signature, current_app.config["STRIPE_WEBHOOK_SECRET"])
    except SignatureError as exc:
        WEBHOOK_SIGNATURE_FAILURES.inc()
        # Never the body or the header: only why it failed.
        log.warning("stripe.signature_invalid", reason=str(exc), source=source)
        raise InvalidSignature() from None
    event = parse_event(body)
    status, reason = initial_status(event["type"], event["livemode"])
    obj = event["data"]["object"]
    return Delivery(
        event["id"],
        event["type"],
        status,
        {
            "id": event["id"],
            "type": event["type"],
            "source": source,
            "livemode": event["livemode"],
            "api_version": _short_str(event.get("api_version"), 50),
            "stripe_created_at": datetime.fromtimestamp(event["created"], UTC),
            "object_id": _short_str(obj.get("id"), 255),
            "payment_intent_id": payment_intent_of(obj),
            "payload": _payload_text(body, event),
            "status": status,
            "last_error": reason,
        },
    )


def _payload_text(body: bytes, event: dict[str, Any]) -> str:
    """The verified body itself as the jsonb text: Postgres parses it once, nothing re-serialises
    it (a 3 KB event costs more to dump than to insert). A body that is not plain UTF-8 JSON
    (a BOM, UTF-16) is stored from the parsed event instead."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return json.dumps(event)
    return json.dumps(event) if text.startswith("\ufeff") else text


# Step 4 as one prepared statement (psycopg prepares it after a few runs on each connection).
_INSERT_EVENT = """
    INSERT INTO stripe_events (id, type, source, livemode, api_version, stripe_created_at, object_id,
                               payment_intent_id, payload, status, last_error)
    VALUES (%(id)s, %(type)s, %(source)s, %(livemode)s, %(api_version)s, %(stripe_created_at)s,
            %(object_id)s, %(payment_intent_id)s, %(payload)s::jsonb, %(status)s, %(last_error)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""


def insert_delivery(connection: Connection, delivery: Delivery) -> bool:
    """``INSERT … ON CONFLICT (id) DO NOTHING``; True when the row is new (a duplicate delivery is not)."""
    return connection.exec_driver_sql(_INSERT_EVENT, delivery.params).first() is not None


def ingest(session: Session, body: bytes, signature: str | None, *, source: str = "webhook") -> IngestResult:
    """Verify, parse and store one delivery in the caller's transaction; enqueue it (after commit)
    when it is new and handled. The local provider's Pay/refund use this.

    Raises ``InvalidSignature`` (nothing stored, metric incremented) or ``InvalidPayload``.
    Database errors propagate: the route answers 503 so that Stripe retries.
    """
    delivery = verify_delivery(body, signature, source=source)
    inserted = insert_delivery(session.connection(), delivery)
    if inserted and delivery.status == "received":
        enqueue_after_commit(session, PROCESS_TASK, delivery.event_id)
    return _received(delivery, inserted, source)


def ingest_webhook(body: bytes, signature: str | None) -> IngestResult:
    """The webhook request (jobs.md §4.1): verify, store in one autocommit statement, publish.

    One round trip to Postgres instead of BEGIN/INSERT/COMMIT and no ORM session: the row is
    durable when the INSERT returns, so the message is published right after it, which is what
    "after commit" asks. When the app's sessions are bound to an outer transaction (the test
    suite's rollback fixtures) the delivery is stored in that transaction through ``ingest``.
    Database errors propagate (DataError: a value Postgres refuses; others: 503).
    """
    engine = _autocommit_engine()
    if engine is None:
        session = db.session
        try:
            result = ingest(session, body, signature)
            session.commit()
        except Exception:
            session.rollback()
            raise
        return result
    delivery = verify_delivery(body, signature, source="webhook")
    with engine.connect() as connection:
        inserted = insert_delivery(connection, delivery)
    if inserted and delivery.status == "received":
        try:
            current_app.extensions["task_sender"](PROCESS_TASK, (delivery.event_id,), None)
        except Exception as exc:
            # The row is committed; the sweeper enqueues it after 30 s (jobs.md §4.5).
            log.warning("task.enqueue_failed", task_name=PROCESS_TASK, error=type(exc).__name__)
    return _received(delivery, inserted, "webhook")


def _autocommit_engine() -> Engine | None:
    """The sessions' engine in autocommit mode (same pool), or None when they are bound to a connection."""
    bind = current_app.extensions["db"].sessionmaker.kw.get("bind")
    if not isinstance(bind, Engine):
        return None
    cached: tuple[Engine, Engine] | None = current_app.extensions.get(_AUTOCOMMIT)
    if cached is None or cached[0] is not bind:
        cached = (bind, bind.execution_options(isolation_level="AUTOCOMMIT"))
        current_app.extensions[_AUTOCOMMIT] = cached
    return cached[1]


_AUTOCOMMIT = "codex_autocommit_engine"


def _received(delivery: Delivery, inserted: bool, source: str) -> IngestResult:
    log.info(
        "stripe.event_received",
        event_id=delivery.event_id,
        type=delivery.type,
        status=delivery.status,
        duplicate=not inserted,
        source=source,
    )
    return IngestResult(delivery.event_id, delivery.status, inserted)


def parse_event(body: bytes) -> dict[str, Any]:
    """The verified body as an event: ``id``, ``type``, ``created``, ``livemode``, ``data.object``."""
    if b"\\u0000" in body:
        # Postgres jsonb cannot store NUL; a row we cannot store would be retried forever.
        raise InvalidPayload()
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's limit
        raise InvalidPayload() from None
    if not isinstance(event, dict):
        raise InvalidPayload()
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    data = event.get("data")
    if (
        not isinstance(event_id, str)
        or not _EVENT_ID.match(event_id)
        or not isinstance(event_type, str)
        or not 1 <= len(event_type) <= 100
        or isinstance(created, bool)
        or not isinstance(created, int)
        or not 0 <= created < 10**11
        or not isinstance(event.get("livemode"), bool)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise InvalidPayload()
    return event


def initial_status(event_type: str, livemode: bool) -> tuple[str, str | None]:
    if event_type not in HANDLED_TYPES:
        return "ignored", "event type not handled"
    if livemode != expected_livemode():
        return "ignored", f"livemode {str(livemode).lower()} does not match the configured key"
    return "received", None


def payment_intent_of(obj: dict[str, Any]) -> str | None:
    """``payment_intent`` of a session, charge or dispute (an id, or an expanded object)."""
    value = obj.get("payment_intent")
    if isinstance(value, dict):
        value = value.get("id")
    return _short_str(value, 255)


def _short_str(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


# ---- claim and outcome (jobs.md §4.2) ----------------------------------------------------------


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
    engine = _autocommit_engine()
    if engine is None:
        claim = claim_event(session, event_id)
        session.commit()
        return claim
    with engine.connect() as connection:
        row = connection.exec_driver_sql(_CLAIM, {"id": event_id}).first()
    return None if row is None else Claim(event_id, row.claimed_at, row.attempts)


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
        session.info.setdefault(_LOCKS, set()).add(f"pi:{event.payment_intent_id}")
    status = handle(session, event)
    connection.exec_driver_sql(_MARK_DONE, {"status": status, "now": utcnow(), "id": event.id})
    log.info("stripe.event_processed", event_id=event.id, type=event.type, status=status, attempts=event.attempts)
    return status


def backoff_seconds(attempts: int) -> int:
    return int(min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS))


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


_LOCKS = "codex_advisory_locks"


def advisory_lock(session: Session, key: str) -> None:
    """``pg_advisory_xact_lock(hashtext(key))``, once per transaction (the set is dropped at its end)."""
    held: set[str] = session.info.setdefault(_LOCKS, set())
    if key in held:
        return
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
    held.add(key)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_soft_rollback")
def _locks_released(db_session: Session, *args: Any) -> None:
    # Forgetting is always safe: taking a held transaction-level lock again is a no-op.
    db_session.info.pop(_LOCKS, None)


def lock_payment(session: Session, payment_intent_id: str) -> None:
    """Serialise everything that touches one payment (events, reconciliation, status page)."""
    advisory_lock(session, f"pi:{payment_intent_id}")


# ---- handlers (jobs.md §4.3) --------------------------------------------------------------------


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


Handler = Callable[[EventContext], str]


def handle(session: Session, event: EventRow) -> str:
    handler = HANDLERS.get(event.type)
    if handler is None:
        return "ignored"
    if event.livemode != expected_livemode():
        # A replayed row stored before the key changed (or an ignored row replayed by hand).
        return "ignored"
    return handler(EventContext(session, event))


def _session_completed(ctx: EventContext) -> str:
    obj = ctx.object
    if obj.get("mode") != "payment":
        return "ignored"
    if obj.get("payment_status") == "paid":
        fulfil(ctx.session, obj)
    else:
        # Async payment methods: complete now, paid (or failed) in a later event.
        record_session(ctx.session, obj)
    return "processed"


def _async_succeeded(ctx: EventContext) -> str:
    obj = ctx.object
    if obj.get("mode") != "payment":
        return "ignored"
    fulfil(ctx.session, obj)
    return "processed"


def _async_failed(ctx: EventContext) -> str:
    ctx.session.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == ctx.object.get("id"), CheckoutSession.payment_status == "unpaid")
        .values(payment_status="failed", updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return "processed"


def _session_expired(ctx: EventContext) -> str:
    # Guarded: a completed session is never downgraded.
    ctx.session.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == ctx.object.get("id"), CheckoutSession.status == "open")
        .values(status="expired", updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return "processed"


def _charge_refunded(ctx: EventContext) -> str:
    apply_refund(ctx, ctx.object)
    return "processed"


def _dispute_created(ctx: EventContext) -> str:
    apply_dispute(ctx, ctx.object, closed=False)
    return "processed"


def _dispute_closed(ctx: EventContext) -> str:
    apply_dispute(ctx, ctx.object, closed=True)
    return "processed"


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _session_completed,
    "checkout.session.async_payment_succeeded": _async_succeeded,
    "checkout.session.async_payment_failed": _async_failed,
    "checkout.session.expired": _session_expired,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
    "charge.dispute.closed": _dispute_closed,
}
assert set(HANDLERS) == HANDLED_TYPES


# ---- fulfil -------------------------------------------------------------------------------------


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


def _uuid_field(meta: dict[str, Any], name: str) -> uuid.UUID:
    value = meta.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError
        return uuid.UUID(value)
    except ValueError:
        raise PermanentEventError(f"metadata.{name} is not a UUID") from None


def cents(value: Any, name: str) -> int:
    """A money figure from the provider: an integer number of cents, never a float or a string."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_CENTS:
        raise PermanentEventError(f"{name} is not an integer amount of cents")
    return value


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
        session.info.setdefault(_LOCKS, set()).add(lock_key)
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
    ours = {
        "customer_id": str(facts.customer_id),
        "content_id": str(facts.content_id),
        "organization_id": str(facts.organization_id),
    }
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
    now = utcnow()
    session.execute(
        pg_insert(CheckoutSession)
        .values(
            id=facts.session_id,
            provider=provider.name,
            customer_id=facts.customer_id,
            content_id=facts.content_id,
            organization_id=facts.organization_id,
            amount_cents=amount,
            currency=content.currency,
            status="open",  # complete_session moves it on, as for a row stored at checkout
            payment_status="unpaid",
            url=_short_str(remote.get("url"), 10_000) or "",
            success_url=(_short_str(remote.get("success_url"), 10_000) or "")[:2000],
            cancel_url=(_short_str(remote.get("cancel_url"), 10_000) or "")[:2000],
            expires_at=_timestamp(remote.get("expires_at"), now),
        )
        .on_conflict_do_nothing(index_elements=[CheckoutSession.id])
    )
    log.warning("stripe.session_read_back", checkout_session_id=facts.session_id, provider=provider.name)


def record_session(session: Session, obj: StripeObject) -> CompletedSession:
    """checkout.session.completed with ``payment_status = unpaid``: complete, not (yet) paid."""
    facts = session_facts(session, obj)
    return complete_session(session, facts, paid=False, payment_intent_id=payment_intent_of(obj))


# Fulfil step 6: the purchase and its grant in one statement. One grant row per (user, content):
# inserted, or reactivated/overwritten for this purchase.
_INSERT_PURCHASE_AND_GRANT = """
    WITH p AS (
        INSERT INTO purchases (id, customer_id, content_id, organization_id, provider, checkout_session_id,
            payment_intent_id, amount_cents, currency, status, purchased_at, refunded_amount_cents)
        VALUES (%(id)s, %(customer_id)s, %(content_id)s, %(organization_id)s, %(provider)s,
            %(checkout_session_id)s, %(payment_intent_id)s, %(amount_cents)s, %(currency)s, 'completed', %(now)s, 0)
        RETURNING id
    )
    INSERT INTO content_access AS a (id, user_id, content_id, organization_id, source, purchase_id, granted_by,
        granted_at, revoked_at, revoke_reason, revoked_by)
    SELECT %(grant_id)s, %(customer_id)s, %(content_id)s, %(organization_id)s, 'purchase', p.id, NULL, %(now)s,
        NULL, NULL, NULL
    FROM p
    ON CONFLICT ON CONSTRAINT uq_content_access_user_id_content_id DO UPDATE SET
        source = 'purchase', purchase_id = EXCLUDED.purchase_id, granted_by = NULL,
        granted_at = EXCLUDED.granted_at, revoked_at = NULL, revoke_reason = NULL, revoked_by = NULL,
        updated_at = now()
"""


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
    purchase_id = uuid.uuid4()
    if original is not None:
        return _duplicate(session, facts, row, purchase_id, payment_intent_id, original, now)
    session.connection().exec_driver_sql(
        _INSERT_PURCHASE_AND_GRANT,
        {
            "id": purchase_id,
            "customer_id": facts.customer_id,
            "content_id": facts.content_id,
            "organization_id": facts.organization_id,
            "provider": row.provider,
            "checkout_session_id": row.id,
            "payment_intent_id": payment_intent_id,
            "amount_cents": row.amount_cents,  # the stored session's money (the event's was checked against it)
            "currency": row.currency,
            "now": now,
            "grant_id": uuid.uuid4(),
        },
    )
    if send_emails:
        queue_purchase_emails(session, facts, purchase_id, now)
    invalidate_access_after_commit(session, facts.customer_id, facts.content_id)
    log.info(
        "commerce.purchase_completed",
        purchase_id=str(purchase_id),
        checkout_session_id=row.id,
        amount_cents=row.amount_cents,
    )
    return purchase_id


def _duplicate(
    session: Session,
    facts: SessionFacts,
    row: CompletedSession,
    purchase_id: uuid.UUID,
    payment_intent_id: str,
    original_id: uuid.UUID,
    now: datetime,
) -> uuid.UUID:
    """A second paid session for content already bought: record it and refund it; access untouched."""
    purchase = Purchase(
        id=purchase_id,
        customer_id=facts.customer_id,
        content_id=facts.content_id,
        organization_id=facts.organization_id,
        provider=row.provider,
        checkout_session_id=row.id,
        payment_intent_id=payment_intent_id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        status="completed",
        purchased_at=now,
        refunded_amount_cents=0,
        is_duplicate=True,
        refund_status="requested",
        refund_reason="duplicate_purchase",
        refund_requested_at=now,
        refund_requested_by=None,
        refund_attempts=0,
    )
    session.add(purchase)
    session.flush()
    audit.record(
        session,
        organization_id=purchase.organization_id,
        actor_user_id=None,
        actor_role="system",
        action="refund.auto_duplicate",
        target_type="purchase",
        target_id=purchase.id,
        metadata={
            "original_purchase_id": str(original_id),
            "amount_cents": purchase.amount_cents,
            "currency": purchase.currency,
        },
    )
    enqueue_after_commit(session, REFUND_TASK, str(purchase.id))
    log.warning("commerce.duplicate_purchase", purchase_id=str(purchase.id), original_purchase_id=str(original_id))
    return purchase_id


def _grant_for(session: Session, purchase: Purchase) -> ContentAccess | None:
    """The grant row only if it points at this purchase (a later purchase or comp grant is left alone)."""
    return session.execute(
        select(ContentAccess)
        .where(ContentAccess.purchase_id == purchase.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _revoke(session: Session, purchase: Purchase, reason: str) -> bool:
    grant = _grant_for(session, purchase)
    if grant is None or grant.revoked_at is not None:
        return False
    grant.revoked_at = utcnow()
    grant.revoke_reason = reason
    grant.revoked_by = None
    grant.updated_at = utcnow()
    invalidate_access_after_commit(session, purchase.customer_id, purchase.content_id)
    return True


def _restore(session: Session, purchase: Purchase) -> bool:
    grant = _grant_for(session, purchase)
    if grant is None or grant.revoke_reason != "dispute":
        return False
    now = utcnow()
    grant.revoked_at = None
    grant.revoke_reason = None
    grant.revoked_by = None
    grant.granted_at = now
    grant.updated_at = now
    invalidate_access_after_commit(session, purchase.customer_id, purchase.content_id)
    return True


# ---- refunds and disputes -------------------------------------------------------------------------


def _purchase_by_intent(session: Session, payment_intent_id: str) -> Purchase | None:
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
    purchase = _purchase_by_intent(ctx.session, payment_intent_id)
    if purchase is None:  # pragma: no cover - fulfil just inserted it
        raise TransientEventError("purchase not yet recorded")
    return purchase


def apply_refund(ctx: EventContext, charge: dict[str, Any]) -> None:
    """charge.refunded: the cumulative refunded amount only grows; full -> refunded + access revoked."""
    session = ctx.session
    payment_intent_id = payment_intent_of(charge)
    if payment_intent_id is None:
        raise PermanentEventError("charge without payment_intent")
    amount_refunded = cents(charge.get("amount_refunded"), "amount_refunded")
    charge_amount = cents(charge.get("amount"), "amount")
    purchase = _purchase_by_intent(session, payment_intent_id)
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
        _revoke(session, purchase, "refund")
    session.flush()
    queue_refund_email(session, purchase, previous, now)
    invalidate_access_after_commit(session, purchase.customer_id, purchase.content_id)
    log.info(
        "commerce.refund_recorded", purchase_id=str(purchase.id), refunded_cents=new, full=new == purchase.amount_cents
    )


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
    purchase = _purchase_by_intent(session, payment_intent_id)
    if purchase is None:
        purchase = self_heal(ctx, payment_intent_id, send_emails=True)
    event_at = ctx.event.stripe_created_at
    if purchase.dispute_event_at is not None and event_at <= purchase.dispute_event_at:
        log.info("stripe.dispute_stale", event_id=ctx.event.id, purchase_id=str(purchase.id))
        return
    status = _short_str(dispute.get("status"), 30)
    now = utcnow()
    purchase.dispute_id = _short_str(dispute.get("id"), 255)
    purchase.dispute_status = status
    purchase.dispute_event_at = event_at
    # Also on "closed": when closed arrives first the older "created" is stale, and the final
    # state must still say the purchase was disputed.
    purchase.disputed_at = purchase.disputed_at or now
    purchase.updated_at = now
    if not closed:
        _revoke(session, purchase, "dispute")
    elif status in ("won", "warning_closed"):
        if purchase.status == "completed" and purchase.refunded_amount_cents < purchase.amount_cents:
            _restore(session, purchase)
    elif status == "lost":
        if purchase.status == "completed":
            purchase.status = "charged_back"
        _revoke(session, purchase, "dispute")
    session.flush()
    log.warning(
        "stripe.dispute",
        event_id=ctx.event.id,
        purchase_id=str(purchase.id),
        dispute_status=status,
        phase="closed" if closed else "created",
    )


# ---- sweeping, reconciliation, expiry (jobs.md §4.5) ---------------------------------------------


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


def insert_recon_event(session: Session, obj: StripeObject) -> bool:
    """Store ``recon_{session_id}`` as a ``checkout.session.completed`` event (reconciliation and the
    status page): the normal pipeline then fulfils it, under the same locks. True when new."""
    session_id = obj.get("id")
    event_id = f"recon_{session_id}"
    if not isinstance(session_id, str) or not _EVENT_ID.match(event_id):
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
    if not _EVENT_ID.match(event_id):
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
