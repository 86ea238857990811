"""POST /webhooks/stripe: raw-body signature check, store once, enqueue after commit (jobs.md §4.1)."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from app.commerce import webhooks
from app.commerce.models import StripeEvent
from app.metrics import WEBHOOK_SIGNATURE_FAILURES
from tests.commerce.helpers import WEBHOOK, Shop, deliver, make_shop, task_names
from tests.factories import committed_session
from tests.fakes import stripe_objects as so
from tests.identity.helpers import count


def completed_event(shop: Any, **kwargs: Any) -> dict[str, Any]:
    return so.event("checkout.session.completed", shop.paid_session(stored=False), **kwargs)


def failures() -> float:
    return WEBHOOK_SIGNATURE_FAILURES._value.get()


def test_valid_delivery_is_stored_and_enqueued_after_commit(client, db_session, shop, sent_tasks) -> None:
    evt = completed_event(shop)
    r = deliver(client, evt)
    assert r.status_code == 200 and r.json == {"received": True}
    row = db_session.get(StripeEvent, evt["id"])
    assert row is not None
    assert (row.status, row.source, row.type, row.livemode, row.attempts) == (
        "received",
        "webhook",
        "checkout.session.completed",
        False,
        0,
    )
    obj = evt["data"]["object"]
    assert row.object_id == obj["id"] and row.payment_intent_id == obj["payment_intent"]
    assert row.api_version == "2024-06-20" and row.payload == evt
    assert int(row.stripe_created_at.timestamp()) == evt["created"]
    assert sent_tasks == [("payments.process_stripe_event", (evt["id"],), None)]
    assert "Access-Control-Allow-Origin" not in r.headers


def test_duplicate_delivery_is_200_without_new_row_or_message(client, db_session, shop, sent_tasks) -> None:
    evt = completed_event(shop)
    for _ in range(3):
        assert deliver(client, evt).status_code == 200
    assert count(db_session, StripeEvent) == 1
    assert task_names(sent_tasks) == ["payments.process_stripe_event"]


def _assert_rejected(r: Any, db_session: Any, before: float, sent_tasks: list[Any]) -> None:
    assert r.status_code == 400
    assert r.json["error"]["code"] == "INVALID_SIGNATURE"
    assert count(db_session, StripeEvent) == 0
    assert sent_tasks == []
    assert failures() == before + 1
    assert b"checkout.session" not in r.data  # never echoes the payload


def test_tampered_body_is_400_and_nothing_stored(client, db_session, shop, sent_tasks) -> None:
    before = failures()
    body, headers = so.signed(completed_event(shop))
    tampered = body.replace(b'"amount_total": 1999', b'"amount_total": 1')
    assert tampered != body
    r = client.post(WEBHOOK, data=tampered, headers=headers)
    _assert_rejected(r, db_session, before, sent_tasks)


def test_wrong_secret_is_400_and_nothing_stored(client, db_session, shop, sent_tasks) -> None:
    before = failures()
    r = deliver(client, completed_event(shop), secret="whsec_someone_else")
    _assert_rejected(r, db_session, before, sent_tasks)


def test_timestamp_older_than_tolerance_is_400_and_nothing_stored(client, db_session, shop, sent_tasks) -> None:
    before = failures()
    r = deliver(client, completed_event(shop), timestamp=int(time.time()) - 301)
    _assert_rejected(r, db_session, before, sent_tasks)


def test_missing_signature_is_400_and_nothing_stored(client, db_session, shop, sent_tasks) -> None:
    before = failures()
    body = so.body_of(completed_event(shop))
    r = client.post(WEBHOOK, data=body, headers={"Content-Type": "application/json"})
    _assert_rejected(r, db_session, before, sent_tasks)


def test_rotated_secret_is_accepted(app, client, db_session, shop, sent_tasks, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "STRIPE_WEBHOOK_SECRET", ["whsec_new", "whsec_codex_local"])
    assert deliver(client, completed_event(shop), secret="whsec_codex_local").status_code == 200
    assert deliver(client, completed_event(shop), secret="whsec_new").status_code == 200
    assert count(db_session, StripeEvent) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"id": "evt_1", "type": "charge.refunded"}).encode(),
        json.dumps({"id": "evt_1", "type": "x", "created": "1", "livemode": False, "data": {"object": {}}}).encode(),
        json.dumps({"id": "evt 1", "type": "x", "created": 1, "livemode": False, "data": {"object": {}}}).encode(),
        json.dumps({"id": "evt_1", "type": "x", "created": 1, "livemode": "no", "data": {"object": {}}}).encode(),
        json.dumps({"id": "evt_1", "type": "x", "created": 1, "livemode": False, "data": {"object": []}}).encode(),
        json.dumps(
            {"id": "evt_1", "type": "x", "created": 1, "livemode": False, "data": {"object": {"a": "\0"}}}
        ).encode(),
    ],
)
def test_signed_but_not_an_event_is_invalid_payload(client, db_session, body, sent_tasks) -> None:
    before = failures()
    r = deliver(client, body)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_PAYLOAD"
    assert count(db_session, StripeEvent) == 0 and sent_tasks == []
    assert failures() == before


def test_signed_value_postgres_cannot_store_is_invalid_payload(client, db_session, shop, sent_tasks) -> None:
    evt = completed_event(shop)
    body = so.body_of(evt).replace(b'"customer_email": "ana@example.com"', b'"customer_email": "\\ud800"')
    assert b"\\ud800" in body
    r = deliver(client, body)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_PAYLOAD"
    assert count(db_session, StripeEvent) == 0 and sent_tasks == []


def test_unhandled_type_is_stored_ignored_and_not_enqueued(client, db_session, sent_tasks) -> None:
    evt = so.event("customer.created", {"id": "cus_1", "object": "customer", "livemode": False})
    assert deliver(client, evt).status_code == 200
    row = db_session.get(StripeEvent, evt["id"])
    assert row.status == "ignored" and "not handled" in row.last_error
    assert sent_tasks == []


def test_livemode_mismatch_is_ignored(client, db_session, shop, sent_tasks) -> None:
    # The local provider (and sk_test_ keys) expect test events; a live event is recorded, not acted on.
    evt = so.event("checkout.session.completed", shop.paid_session(stored=False, livemode=True))
    assert deliver(client, evt).status_code == 200
    row = db_session.get(StripeEvent, evt["id"])
    assert row.status == "ignored" and "livemode" in row.last_error
    assert sent_tasks == []


def test_live_key_expects_live_events(app, db_session, shop, stripe_provider, sent_tasks, monkeypatch) -> None:
    monkeypatch.setattr(stripe_provider, "_api_key", "sk_live_x")
    client = app.test_client()
    live = so.event("checkout.session.completed", shop.paid_session(stored=False, livemode=True))
    test = so.event("checkout.session.completed", shop.paid_session(stored=False))
    assert deliver(client, live).status_code == 200 and deliver(client, test).status_code == 200
    assert db_session.get(StripeEvent, live["id"]).status == "received"
    assert db_session.get(StripeEvent, test["id"]).status == "ignored"


def test_database_failure_is_503_so_stripe_retries(client, db_session, shop, sent_tasks, monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("connection lost"))

    monkeypatch.setattr(webhooks, "insert_delivery", broken)
    r = deliver(client, completed_event(shop))
    assert r.status_code == 503
    assert r.json["error"] == {
        "code": "SERVICE_UNAVAILABLE",
        "message": "The event could not be stored; retry later.",
        "details": {"dependency": "database"},
    }
    assert count(db_session, StripeEvent) == 0 and sent_tasks == []


def test_body_over_one_mib_is_413(client, db_session) -> None:
    body = b"{" + b" " * (1024 * 1024) + b"}"
    r = client.post(WEBHOOK, data=body, headers={"Stripe-Signature": "t=1,v1=00"})
    assert r.status_code == 413 and r.json["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_get_is_405(client, db_session) -> None:
    assert client.get(WEBHOOK).status_code == 405


def test_webhook_rate_limit_per_ip(app_factory, db_session, shop) -> None:
    from tests.identity.conftest import bound_client

    limited = app_factory(RATELIMIT_ENABLED=True)
    with bound_client(limited, db_session) as limited_client:
        r = deliver(limited_client, completed_event(shop))
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "1000"


# ---- the production path: one autocommit INSERT, then the message (sessions bound to the engine) ----


@pytest.fixture()
def committed_shop(committed_db: Any) -> Shop:
    with committed_session(committed_db):
        return make_shop()


def _stored(flask_app: Any, event_id: str) -> StripeEvent | None:
    with committed_session(flask_app) as session:
        return session.get(StripeEvent, event_id)


def test_autocommit_path_stores_then_publishes_once(committed_db, committed_shop, sent_tasks) -> None:
    client = committed_db.test_client()
    evt = completed_event(committed_shop)
    for _ in range(3):
        r = deliver(client, evt)
        assert r.status_code == 200 and r.json == {"received": True}
    row = _stored(committed_db, evt["id"])
    assert row is not None and row.status == "received" and row.payload == evt and row.attempts == 0
    assert row.payment_intent_id == evt["data"]["object"]["payment_intent"]
    assert sent_tasks == [("payments.process_stripe_event", (evt["id"],), None)]


def test_store_delivery_writes_every_column_of_the_delivery(committed_db, committed_shop) -> None:
    """``store_delivery`` sends the INSERT with positional parameters: each lands in its column,
    as ``insert_delivery``'s named ones do; a second store is a duplicate (False), the row unchanged."""
    evt = completed_event(committed_shop)
    evt["livemode"] = True  # (ignored: a column whose value differs from the defaults)
    with committed_db.app_context():
        delivery = webhooks.delivery_of(so.body_of(evt), "webhook")
        engine = webhooks.autocommit_engine()
        assert engine is not None
        assert webhooks.store_delivery(engine, delivery) is True
        assert webhooks.store_delivery(engine, delivery) is False
    row = _stored(committed_db, evt["id"])
    assert row is not None
    for column, value in delivery.params.items():
        stored = getattr(row, column)
        assert stored == (evt if column == "payload" else value), column
    assert row.status == "ignored" and row.last_error and row.source == "webhook" and row.livemode is True


def test_autocommit_path_stores_the_verified_bytes_as_jsonb(committed_db, committed_shop, sent_tasks) -> None:
    # Stripe's pretty-printed body goes to Postgres as it is; the row holds the same document.
    evt = completed_event(committed_shop)
    body = json.dumps(evt, indent=2).encode()
    assert deliver(committed_db.test_client(), body).status_code == 200
    row = _stored(committed_db, evt["id"])
    assert row is not None and row.payload == evt


def test_autocommit_path_value_postgres_refuses_is_400(committed_db, committed_shop, sent_tasks) -> None:
    evt = completed_event(committed_shop)
    body = so.body_of(evt).replace(b'"customer_email": "ana@example.com"', b'"customer_email": "\\ud800"')
    r = deliver(committed_db.test_client(), body)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_PAYLOAD"
    assert _stored(committed_db, evt["id"]) is None and sent_tasks == []


def test_autocommit_path_database_failure_is_503(committed_db, committed_shop, sent_tasks, monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("connection lost"))

    monkeypatch.setattr(webhooks, "store_delivery", broken)
    evt = completed_event(committed_shop)
    r = deliver(committed_db.test_client(), evt)
    assert r.status_code == 503 and r.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert _stored(committed_db, evt["id"]) is None and sent_tasks == []


def test_autocommit_path_broker_failure_still_acknowledges(committed_db, committed_shop, monkeypatch) -> None:
    # The row is durable before the publish; a lost message is the sweeper's job (jobs.md §4.5).
    def unreachable(*args: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setitem(committed_db.extensions, "task_sender", unreachable)
    evt = completed_event(committed_shop)
    assert deliver(committed_db.test_client(), evt).status_code == 200
    row = _stored(committed_db, evt["id"])
    assert row is not None and row.status == "received"


def test_autocommit_path_gives_the_connection_back_as_it_came(committed_db, committed_shop, sent_tasks) -> None:
    """The driver-level INSERT switches autocommit on for its statement only: the pooled connection
    the next ORM session gets still opens transactions (a rollback there must undo its writes)."""
    engine = committed_db.extensions["db"].engine
    engine.dispose()  # one connection in the pool from here: the webhook's is the next one handed out
    assert deliver(committed_db.test_client(), completed_event(committed_shop)).status_code == 200
    pooled = engine.raw_connection()
    try:
        assert pooled.dbapi_connection.autocommit is False
    finally:
        pooled.close()


def test_store_delivery_on_a_lost_connection_raises_and_drops_it_from_the_pool(committed_db, committed_shop) -> None:
    """A pooled connection whose backend died: SQLAlchemy's OperationalError (the route answers
    503, or the fast path hands the delivery to the route), and the pool hands out a new one."""
    engine = committed_db.extensions["db"].engine
    engine.dispose()
    pooled = engine.raw_connection()
    backend = pooled.dbapi_connection.info.backend_pid
    pooled.close()
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as other:  # another session ends the pooled one's backend
        other.execute("SELECT pg_terminate_backend(%s)", (backend,))
    evt = completed_event(committed_shop)
    with committed_db.app_context():
        delivery = webhooks.delivery_of(so.body_of(evt), "webhook")
        with pytest.raises(OperationalError):
            webhooks.store_delivery(engine, delivery)
        assert _stored(committed_db, evt["id"]) is None
        assert webhooks.store_delivery(engine, delivery) is True  # a new connection
    assert _stored(committed_db, evt["id"]) is not None
