"""Webhook deliveries under fire: duplicates, shuffled order, a worker SIGKILLed again and again,
the Redis broker restarted (every queued message lost) — and still exactly one purchase per paid
session, one receipt each, every event processed and every email sent."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app import db
from app.access.models import ContentAccess
from app.commerce.models import CheckoutSession, Purchase, StripeEvent
from app.notifications.models import EmailOutbox
from tests import factories
from tests.chaos.common import Deliverer, check_sink, count, pipeline_state, wait_quiescent
from tests.chaos.conftest import Killer, Scale
from tests.e2e.harness import Stack, Supervisor
from tests.factories import committed_session
from tests.fakes import stripe_objects as so
from tests.identity.helpers import make_org

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

WORKER_CONCURRENCY = 2
CONTENTS = 5
DUPLICATE_SHARE = 0.3
REFUND_SHARE = 0.05
NOISE_SHARE = 0.05


def seed_sessions(flask_app: Flask, sessions: int) -> list[dict[str, Any]]:
    """An org with a few priced items, one customer per paid session, the sessions stored ``open``."""
    now = datetime.now(UTC)
    objects = []
    with committed_session(flask_app) as session:
        owner = factories.UserFactory(email_verified_at=now, name="Olga Owner")
        org = make_org(owner)
        contents = [
            factories.PaidContentFactory(organization_id=org.id, created_by=owner.id, price_cents=1000 + i)
            for i in range(CONTENTS)
        ]
        customers = [factories.UserFactory(email_verified_at=now) for _ in range(sessions)]
        for i, customer in enumerate(customers):
            content = contents[i % CONTENTS]
            metadata = {
                "customer_id": str(customer.id),
                "content_id": str(content.id),
                "organization_id": str(org.id),
            }
            obj = so.checkout_session(metadata=metadata, amount_total=content.price_cents)
            session.add(
                CheckoutSession(
                    id=obj["id"],
                    provider="stripe",
                    customer_id=customer.id,
                    content_id=content.id,
                    organization_id=org.id,
                    amount_cents=content.price_cents,
                    currency="usd",
                    url="https://checkout.stripe.com/c/pay/" + obj["id"],
                    success_url="http://localhost:3000/checkout/success",
                    cancel_url="http://localhost:3000/checkout/cancelled",
                    expires_at=now + timedelta(minutes=30),
                )
            )
            objects.append(obj)
    return objects


def build_deliveries(
    objects: list[dict[str, Any]], total: int, rng: random.Random
) -> tuple[list[dict[str, Any]], set[str]]:
    """One completion per session, full refunds for a few, ignored noise; 30 % re-deliveries; shuffled.

    Returns (deliveries, ids of the sessions that end refunded).
    """
    unique: list[dict[str, Any]] = []
    refunded: set[str] = set()
    for obj in objects:
        unique.append(so.event("checkout.session.completed", obj))
        if rng.random() < REFUND_SHARE:
            charge = so.charge(
                payment_intent=obj["payment_intent"], amount=obj["amount_total"], amount_refunded=obj["amount_total"]
            )
            charge["refunded"] = True
            unique.append(so.event("charge.refunded", charge))
            refunded.add(obj["id"])
        if rng.random() < NOISE_SHARE:  # late expiry (no downgrade) and a type we do not handle
            unique.append(so.event("checkout.session.expired", {**obj, "status": "expired"}))
            unique.append(so.event("customer.updated", {"id": so.stripe_id("cus_"), "object": "customer"}))
    deliveries = list(unique)
    while len(deliveries) < total:
        deliveries.append(rng.choice(unique))
    rng.shuffle(deliveries)
    return deliveries, refunded


def test_webhooks_survive_worker_kills_and_a_redis_restart(
    committed_db: Flask, chaos_stack: Stack, smtp_server: Any, scale: Scale
) -> None:
    app, stack, rng = committed_db, chaos_stack, random.Random()
    # Paid sessions so that unique events + 30 % duplicates make up the deliveries.
    sessions = max(10, int(scale.deliveries * (1 - DUPLICATE_SHARE) / (1 + REFUND_SHARE + 2 * NOISE_SHARE)))
    objects = seed_sessions(app, sessions)
    deliveries, refunded = build_deliveries(objects, scale.deliveries, rng)
    unique_ids = {evt["id"] for evt in deliveries}

    stack.start_web()
    worker = stack.start_worker(queues="webhooks,email,default", concurrency=WORKER_CONCURRENCY)
    stack.start_beat()

    redis_restarted = threading.Event()
    restart_at = len(deliveries) // 2

    def on_progress(done: int) -> None:
        if done >= restart_at and not redis_restarted.is_set():
            redis_restarted.set()
            threading.Thread(target=stack.redis.restart, name="redis-restart", daemon=True).start()

    def handled() -> int:
        return count(app, StripeEvent, StripeEvent.status.in_(("processed", "ignored")))

    def in_flight() -> bool:  # kill only while the worker has work, some of it done
        return 0 < handled() < count(app, StripeEvent)

    def events_done() -> bool:
        return count(app, StripeEvent, StripeEvent.status.notin_(("processed", "ignored"))) == 0

    def settled() -> bool:
        unsent = count(app, EmailOutbox, EmailOutbox.status != "sent")
        return events_done() and unsent == 0 and count(app, EmailOutbox) >= 2 * len(objects)

    started = time.monotonic()
    with (
        Supervisor(worker) as supervisor,
        Killer(supervisor, scale.kill_every, scale.max_kills, in_flight, handled, min_progress=20) as killer,
    ):
        deliverer = Deliverer(stack.web_port, deliveries)
        deliverer.run(on_progress)
        sent_in = time.monotonic() - started
        # The killer goes on while events are in flight (the short run: until its one kill).
        wait_quiescent(app, events_done, scale.settle_timeout, "every event processed", stack.report)
        killer.stop()
    assert redis_restarted.is_set() and killer.kills >= 1
    unexpected = {k: v for k, v in deliverer.statuses.items() if k not in (200, 503) and not isinstance(k, str)}
    assert not unexpected, f"the webhook answered something else than 200/503: {deliverer.statuses}"
    wait_quiescent(app, settled, scale.settle_timeout, "every email sent", stack.report)
    settle = time.monotonic() - started - sent_in  # from the last acknowledged delivery to quiescence

    # Every delivered event is stored once and processed (or ignored); none dead, none stuck.
    assert count(app, StripeEvent) == len(unique_ids)
    ignored = count(app, StripeEvent, StripeEvent.type == "customer.updated")
    assert count(app, StripeEvent, StripeEvent.status == "ignored") == ignored
    assert count(app, StripeEvent, StripeEvent.status == "processed") == len(unique_ids) - ignored
    # Exactly one purchase per paid session; none a duplicate; refunds applied and access revoked.
    with app.app_context():
        purchases = db.session.execute(
            select(Purchase.checkout_session_id, Purchase.status, Purchase.is_duplicate)
        ).all()
    live_grants = count(app, ContentAccess, ContentAccess.revoked_at.is_(None))
    by_session: dict[str, list[Any]] = {}
    for row in purchases:
        by_session.setdefault(row.checkout_session_id, []).append(row)
    assert sorted(by_session) == sorted(obj["id"] for obj in objects)
    assert all(len(rows) == 1 for rows in by_session.values()), [k for k, v in by_session.items() if len(v) > 1]
    assert not any(row.is_duplicate for row in purchases)
    assert {sid for sid, rows in by_session.items() if rows[0].status == "refunded"} == refunded
    assert live_grants == len(objects) - len(refunded)
    # One receipt and one new-sale per purchase, one refund email per refund (outbox dedupe)...
    assert count(app, EmailOutbox, EmailOutbox.template == "purchase-receipt") == len(objects)
    assert count(app, EmailOutbox, EmailOutbox.template == "new-sale") == len(objects)
    assert count(app, EmailOutbox, EmailOutbox.template == "refund-processed") == len(refunded)
    # ...and each reached the SMTP sink (again only when a kill interrupted it after the 250).
    messages, duplicates = check_sink(app, smtp_server, killer.kills, WORKER_CONCURRENCY)
    retried = count(app, StripeEvent, StripeEvent.attempts > 1)
    print(  # shown with -s; the report quotes these figures
        f"\nchaos webhooks: {len(deliveries)} deliveries ({len(unique_ids)} unique, {len(objects)} sessions, "
        f"{len(refunded)} refunds) in {sent_in:.1f}s; answers {dict(deliverer.statuses)}; worker kills "
        f"{killer.kills} (restarts {supervisor.restarts}); redis restarted once; settled in {settle:.1f}s; "
        f"{retried} events needed more than one attempt; "
        f"{messages} emails, {duplicates} re-sent after a kill; {pipeline_state(app)}"
    )
