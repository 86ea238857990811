"""End-to-end pipeline tests on committed data: concurrent deliveries and workers (threads with
their own app context and session), a real Celery worker, a worker dying mid-transaction, a
flushed Redis, and the whole local buy flow down to the receipt file."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from app import db
from app.access.models import ContentAccess
from app.commerce import processing, reconciliation
from app.commerce.models import Purchase, StripeEvent
from app.notifications.models import EmailOutbox
from tasks.payments import process_event
from tests import factories
from tests.commerce.helpers import WEBHOOK, Shop, committed_paid_session, make_shop
from tests.factories import committed_session
from tests.fakes import stripe_objects as so
from tests.identity.helpers import auth, signed_in

pytestmark = pytest.mark.e2e


def count(flask_app: Flask, model: Any, *where: Any) -> int:
    with flask_app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def together(n: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``n`` threads released at the same moment; return their results."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    failures: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    return results


def wait_for(check: Callable[[], bool], timeout: float = 20.0, app: Flask | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    state = ""
    if app is not None:  # what the pipeline looked like, to tell a slow worker from a lost message
        with app.app_context():
            rows = db.session.execute(select(StripeEvent.id, StripeEvent.status, StripeEvent.attempts)).all()
            state = f"; events: {[tuple(r) for r in rows]}; broker queues: " + str(
                {q: app.extensions["broker_redis"].llen(q) for q in ("webhooks", "email")}
            )
    raise AssertionError(f"condition not reached in time{state}")


def worker_process(flask_app: Flask, event_id: str) -> str | None:
    with flask_app.app_context():
        return process_event(db.session, event_id)


@pytest.fixture()
def shop_committed(committed_db: Flask) -> Shop:
    with committed_session(committed_db):
        return make_shop()


BROKER_PREFIX = f"codex-e2e-{os.getpid()}:"


@pytest.fixture(scope="module")
def worker_app(app_factory: Any, app: Flask) -> Flask:
    """An app whose broker keys carry a per-process prefix (kombu ``global_keyprefix``).

    The test harness gives every concurrent pytest run the same Redis DB indexes; a real worker
    of another run would otherwise take this test's messages (and this worker theirs).
    """
    flask_app: Flask = app_factory()
    celery_app = flask_app.extensions["celery"]
    celery_app.conf.broker_transport_options = {
        **celery_app.conf.broker_transport_options,
        "global_keyprefix": BROKER_PREFIX,
    }
    app.extensions["celery"].set_default()  # the session's app stays the default Celery app
    return flask_app


@pytest.fixture()
def committed_worker_app(worker_app: Flask, committed_db: Flask) -> Iterator[Flask]:
    """``worker_app`` on committed data (``committed_db`` truncates the shared test database)."""
    yield worker_app
    for key in worker_app.extensions["broker_redis"].scan_iter(f"{BROKER_PREFIX}*"):
        worker_app.extensions["broker_redis"].delete(key)


@pytest.fixture()
def shop_for_worker(committed_worker_app: Flask) -> Shop:
    with committed_session(committed_worker_app):
        return make_shop()


def test_same_event_delivered_five_times_concurrently(committed_db, shop_committed, sent_tasks) -> None:
    app, shop = committed_db, shop_committed
    evt = so.event("checkout.session.completed", committed_paid_session(app, shop))
    body, headers = so.signed(evt)

    statuses = together(5, lambda _: app.test_client().post(WEBHOOK, data=body, headers=headers).status_code)
    assert statuses == [200] * 5
    assert count(app, StripeEvent) == 1
    assert [a for n, a, _ in sent_tasks if n == "payments.process_stripe_event"] == [(evt["id"],)]

    # Five workers get the message at once (redelivery, sweeper, replay): one claims, four exit.
    results = together(5, lambda _: worker_process(app, evt["id"]))
    assert results.count("processed") == 1 and results.count(None) == 4
    assert count(app, Purchase) == 1 and count(app, ContentAccess) == 1
    assert count(app, EmailOutbox, EmailOutbox.template == "purchase-receipt") == 1
    assert count(app, EmailOutbox, EmailOutbox.template == "new-sale") == 1
    with app.app_context():
        purchase = db.session.scalars(select(Purchase)).one()
        assert purchase.amount_cents == evt["data"]["object"]["amount_total"]


def test_different_events_for_one_payment_concurrently(committed_db, shop_committed, sent_tasks) -> None:
    """completed (twice, two ids), async_payment_succeeded and reconciliation for one payment intent."""
    app, shop = committed_db, shop_committed
    obj = committed_paid_session(app, shop)
    deliveries = [
        so.event("checkout.session.completed", obj),
        so.event("checkout.session.completed", obj),
        so.event("checkout.session.async_payment_succeeded", obj),
    ]
    for evt in deliveries:
        body, headers = so.signed(evt)
        assert app.test_client().post(WEBHOOK, data=body, headers=headers).status_code == 200
    with app.app_context():
        reconciliation.insert_recon_event(db.session, obj)
        db.session.commit()
    ids = [e["id"] for e in deliveries] + [f"recon_{obj['id']}"]
    results = together(len(ids), lambda i: worker_process(app, ids[i]))
    assert results == ["processed"] * 4
    assert count(app, Purchase) == 1 and count(app, ContentAccess) == 1
    assert count(app, EmailOutbox, EmailOutbox.template == "purchase-receipt") == 1


def test_two_paid_sessions_for_one_item_concurrently(committed_db, shop_committed, sent_tasks) -> None:
    app, shop = committed_db, shop_committed
    evts = [so.event("checkout.session.completed", committed_paid_session(app, shop)) for _ in range(2)]
    for evt in evts:
        body, headers = so.signed(evt)
        app.test_client().post(WEBHOOK, data=body, headers=headers)
    assert together(2, lambda i: worker_process(app, evts[i]["id"])) == ["processed", "processed"]
    with app.app_context():
        rows = db.session.scalars(select(Purchase).order_by(Purchase.is_duplicate)).all()
        assert [(p.is_duplicate, p.refund_status) for p in rows] == [(False, None), (True, "requested")]
    assert count(app, EmailOutbox, EmailOutbox.template == "purchase-receipt") == 1


def _start_worker(flask_app: Flask) -> Any:
    from celery.contrib.testing.worker import start_worker

    import tasks.worker  # noqa: F401 - registers every task module
    from app.jobs import QUEUES

    celery_app = flask_app.extensions["celery"]
    celery_app.loader.import_default_modules()
    return start_worker(
        celery_app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=list(QUEUES),
        shutdown_timeout=10,
        loglevel="WARNING",
    )


def test_worker_dying_mid_transaction_is_recovered_by_the_sweeper(committed_worker_app, shop_for_worker) -> None:
    app, shop = committed_worker_app, shop_for_worker
    evt = so.event("checkout.session.completed", committed_paid_session(app, shop))
    body, headers = so.signed(evt)
    app.extensions["task_sender"], sender = (lambda *a: None), app.extensions["task_sender"]
    try:
        assert app.test_client().post(WEBHOOK, data=body, headers=headers).status_code == 200
    finally:
        app.extensions["task_sender"] = sender

    with app.app_context():
        session = db.session
        claim = processing.claim_event(session, evt["id"])
        session.commit()
        assert claim is not None
        processing.process_claimed(session, claim)  # effects flushed inside the work transaction...
        session.connection().invalidate()  # ...and the worker's connection dies before COMMIT
        session.rollback()
    assert count(app, Purchase) == 0
    with app.app_context():
        assert db.session.get(StripeEvent, evt["id"]).status == "processing"
        db.session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == evt["id"])
            .values(claimed_at=datetime.now(UTC) - timedelta(minutes=11))
        )
        db.session.commit()

    with _start_worker(app):
        with app.app_context():
            processing.sweep_events(db.session)  # stale claim -> failed -> enqueued to the real worker
            db.session.commit()
        wait_for(lambda: count(app, StripeEvent, StripeEvent.status == "processed") == 1, app=app)
    assert count(app, Purchase) == 1 and count(app, ContentAccess) == 1
    with app.app_context():
        assert db.session.get(StripeEvent, evt["id"]).attempts == 2


def test_flushed_redis_loses_nothing(committed_worker_app, shop_for_worker) -> None:
    app, shop = committed_worker_app, shop_for_worker
    customers = []
    with committed_session(app):
        customers = [factories.UserFactory(email_verified_at=datetime.now(UTC)) for _ in range(4)]
    evts = [so.event("checkout.session.completed", committed_paid_session(app, shop, customer=c)) for c in customers]
    for evt in evts:  # stored and acknowledged; their messages go to the broker...
        body, headers = so.signed(evt)
        assert app.test_client().post(WEBHOOK, data=body, headers=headers).status_code == 200
    broker = app.extensions["broker_redis"]
    lost = list(broker.scan_iter(f"{BROKER_PREFIX}*"))
    assert lost
    broker.delete(*lost)  # ...which loses them (this run's keys only: other runs share the DB)
    with app.app_context():
        db.session.execute(update(StripeEvent).values(received_at=func.now() - timedelta(seconds=31)))
        db.session.commit()

    with _start_worker(app):
        time.sleep(0.5)
        assert count(app, Purchase) == 0  # nothing left in Redis to wake a worker
        with app.app_context():
            assert processing.sweep_events(db.session) == (0, 4)
            db.session.commit()
        wait_for(lambda: count(app, Purchase) == 4, app=app)
    assert count(app, StripeEvent, StripeEvent.status == "processed") == 4


def test_local_buy_flow_down_to_the_receipt_file(committed_worker_app, tmp_path: Path, monkeypatch) -> None:
    """checkout -> test page -> Pay -> (worker) purchase completed -> (worker) receipt in the mail dir."""
    app = committed_worker_app
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "file")
    monkeypatch.setitem(app.config, "MAIL_OUTBOX_DIR", str(tmp_path))
    app.extensions.pop("payment_provider", None)  # the default: local (no Stripe key)
    with committed_session(app):
        shop = make_shop()
        token = signed_in(shop.customer)

    client = app.test_client()
    with _start_worker(app):
        r = client.post("/api/v1/checkout", json={"content_id": str(shop.content.id)}, headers=auth(token))
        assert r.status_code == 201
        page_url = r.json["checkout_url"].removeprefix(app.config["PUBLIC_BASE_URL"])
        page = client.get(page_url)
        assert page.status_code == 200 and b">Pay<" in page.data and b">Cancel<" in page.data
        paid = client.post(f"{page_url}/pay", content_type="application/x-www-form-urlencoded")
        assert paid.status_code == 303 and r.json["session_id"] in paid.headers["Location"]

        wait_for(lambda: count(app, Purchase, Purchase.status == "completed") == 1, app=app)
        wait_for(lambda: count(app, EmailOutbox, EmailOutbox.status == "sent") == 2, app=app)

    status = client.get(f"/api/v1/checkout/sessions/{r.json['session_id']}", headers=auth(token)).json
    assert status["status"] == "complete" and status["purchase"]["status"] == "completed"
    files = sorted(tmp_path.glob("*.eml"))
    assert len(files) == 2
    texts = [f.read_text() for f in files]
    receipt = next(t for t in texts if "X-Codex-Template: purchase-receipt" in t)
    assert shop.customer.email in receipt and "19.99" in receipt
    assert any("X-Codex-Template: new-sale" in t for t in texts)
    app.extensions.pop("mail_backend", None)
