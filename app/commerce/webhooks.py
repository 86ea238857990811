"""The request side of the pipeline (jobs.md §4.1): verify, store, enqueue; nothing else.

``ingest_webhook`` serves ``POST /webhooks/stripe``; ``ingest`` stores a delivery in the caller's
transaction (the local provider's Pay and refund buttons hand their signed events to it, through
the sink registered in ``app.commerce.provider_link``). Either way the delivery is verified
exactly as Stripe signs it, stored once (``ON CONFLICT (id) DO NOTHING``) and, when new and
handled, a ``payments.process_stripe_event`` message follows the commit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from flask import current_app
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app import db, errors
from app.commerce.pipeline import EVENT_ID, HANDLED_TYPES, PROCESS_TASK, expected_livemode, payment_intent_of, short_str
from app.db import enqueue_after_commit
from app.metrics import WEBHOOK_SIGNATURE_FAILURES
from app.payments.signature import SignatureError, verify

log = structlog.get_logger(__name__)


class InvalidSignature(errors.AppError):
    status, code, message = 400, "INVALID_SIGNATURE", "The webhook signature is missing or invalid."


class InvalidPayload(errors.AppError):
    status, code, message = 400, "INVALID_PAYLOAD", "The webhook body is not a Stripe event."


@dataclass(frozen=True)
class IngestResult:
    event_id: str
    status: str  # received | ignored (of the stored row when inserted, else of the delivery)
    inserted: bool


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
    return delivery_of(body, source)


def delivery_of(body: bytes, source: str) -> Delivery:
    """Steps 2-3 for a body whose signature was verified. Raises ``InvalidPayload`` (nothing else
    happens: app/commerce/webhook_fast_path.py hands such a body to the route)."""
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
            "api_version": short_str(event.get("api_version"), 50),
            "stripe_created_at": datetime.fromtimestamp(event["created"], UTC),
            "object_id": short_str(obj.get("id"), 255),
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
        or not EVENT_ID.match(event_id)
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


# Step 4 as one prepared statement (psycopg prepares it after a few runs on each connection).
_INSERT_EVENT = """
    INSERT INTO stripe_events (id, type, source, livemode, api_version, stripe_created_at, object_id,
                               payment_intent_id, payload, status, last_error)
    VALUES (%(id)s, %(type)s, %(source)s, %(livemode)s, %(api_version)s, %(stripe_created_at)s,
            %(object_id)s, %(payment_intent_id)s, %(payload)s::jsonb, %(status)s, %(last_error)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""


# The same statement with positional parameters, for ``store_delivery``: psycopg maps named ones
# to positions on every execute (~8 us of its ~60 us for this INSERT).
_INSERT_NAMES = tuple(re.findall(r"%\((\w+)\)s", _INSERT_EVENT))
_INSERT_POSITIONAL = re.sub(r"%\((\w+)\)s", "%s", _INSERT_EVENT)


def insert_delivery(connection: Connection, delivery: Delivery) -> bool:
    """``INSERT … ON CONFLICT (id) DO NOTHING``; True when the row is new (a duplicate delivery is not)."""
    return connection.exec_driver_sql(_INSERT_EVENT, delivery.params).first() is not None


def store_delivery(engine: Engine, delivery: Delivery) -> bool:
    """``insert_delivery`` as one autocommit statement on a connection of ``engine``'s pool, through
    the driver: the row is durable when this returns. True when the row is new.

    Why not ``engine.connect()``: SQLAlchemy's connection, execution context and result cost
    ~90 us of CPU around a statement that costs ~110 us, on the hottest write of the app. The
    pool is still SQLAlchemy's (``raw_connection``, public): the connection goes back to it as it
    came (``autocommit`` off), and one that broke is invalidated, as SQLAlchemy would. Driver
    errors are raised as SQLAlchemy's (``DBAPIError.instance``: ``DataError`` for a value Postgres
    refuses), without the parameters (the payload) in their text.
    """
    pooled = engine.raw_connection()
    driver: Any = pooled.dbapi_connection
    try:
        driver.autocommit = True
        try:
            cursor = driver.cursor()
            params = delivery.params
            cursor.execute(_INSERT_POSITIONAL, [params[name] for name in _INSERT_NAMES], prepare=True)
            return cursor.fetchone() is not None
        finally:
            if not driver.closed:
                driver.autocommit = False
    except psycopg.Error as exc:
        if driver.closed or driver.broken:
            pooled.invalidate(exc)
        raise DBAPIError.instance(_INSERT_EVENT, {}, exc, psycopg.Error, hide_parameters=True) from exc
    finally:
        pooled.close()


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

    One round trip to Postgres instead of BEGIN/INSERT/COMMIT and no ORM session (``store_delivery``):
    the row is durable when the INSERT returns, so the message is published right after it, which
    is what "after commit" asks. The request's log line carries the event's fields. When the app's
    sessions are bound to an outer transaction (the test suite's rollback fixtures) the delivery is
    stored in that transaction through ``ingest``.
    Database errors propagate (DataError: a value Postgres refuses; others: 503).
    """
    engine = autocommit_engine()
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
    return stored(delivery, store_delivery(engine, delivery))


def stored(delivery: Delivery, inserted: bool) -> IngestResult:
    """After the autocommit INSERT: publish a new, handled delivery (the row is durable, so this is
    "after commit") and put the event's fields on the request's log line."""
    publish(delivery, inserted)()
    return log_fields(delivery, inserted)


def publish(delivery: Delivery, inserted: bool) -> Callable[[], None]:
    """Send the ``process_stripe_event`` message of a new, handled delivery, after its INSERT.
    Returns what waits for the broker's answer (``RedisTaskPublisher.send_unanswered``; other
    senders answer at once): call it once, soon, on this thread. A failure is logged, either way:
    the row is committed and the sweeper enqueues it after 30 s (jobs.md §4.5)."""
    if not (inserted and delivery.status == "received"):
        return _nothing
    sender = current_app.extensions["task_sender"]
    send_unanswered = getattr(sender, "send_unanswered", None)  # (the Redis publisher has it)
    try:
        if send_unanswered is None:
            sender(PROCESS_TASK, (delivery.event_id,), None)
            return _nothing
        answer: Callable[[], None] = send_unanswered(PROCESS_TASK, (delivery.event_id,), None)
    except Exception as exc:
        _enqueue_failed(exc)
        return _nothing

    def wait() -> None:
        try:
            answer()
        except Exception as exc:
            _enqueue_failed(exc)

    return wait


def _nothing() -> None:
    """Nothing to wait for."""


def _enqueue_failed(exc: Exception) -> None:
    log.warning("task.enqueue_failed", task_name=PROCESS_TASK, error=type(exc).__name__)


def log_fields(delivery: Delivery, inserted: bool) -> IngestResult:
    """Put the event's fields on the request's log line."""
    # One log line per delivery: the request line (app/http.py) carries the event's fields, which
    # is what a separate ``stripe.event_received`` line would say (it is half the logging cost).
    structlog.contextvars.bind_contextvars(
        event_id=delivery.event_id, event_type=delivery.type, event_status=delivery.status, duplicate=not inserted
    )
    return IngestResult(delivery.event_id, delivery.status, inserted)


def autocommit_engine() -> Engine | None:
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
