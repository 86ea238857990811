"""Platform admin Stripe events (api.md §12), the stripe-replay CLI, and the beat jobs:
event sweeper, reconciliation, checkout-session expiry (jobs.md §4.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.commerce import processing, reconciliation
from app.commerce.models import CheckoutSession, StripeEvent
from tests import factories
from tests.commerce.helpers import event_row, in_app, ingest_event, process, purchases
from tests.fakes import stripe_objects as so
from tests.identity.helpers import auth, signed_in

ADMIN = "/api/v1/admin/stripe-events"


@pytest.fixture()
def owner_token(db_session: Any) -> str:
    return signed_in(factories.UserFactory(role="platform_owner"))


# ---- admin endpoints ------------------------------------------------------------------------------------


def test_list_filter_and_get(app, client, db_session, shop, owner_token, sent_tasks) -> None:
    first = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    second = ingest_event(app, db_session, so.event("customer.created", {"id": "cus_1", "livemode": False}))
    db_session.execute(
        update(StripeEvent).where(StripeEvent.id == first).values(received_at=datetime.now(UTC) - timedelta(minutes=1))
    )
    r = client.get(ADMIN, headers=auth(owner_token))
    assert r.status_code == 200 and r.json["total"] == 2
    assert [i["id"] for i in r.json["items"]] == [second, first]
    item = r.json["items"][1]
    assert set(item) == {
        "id", "type", "source", "livemode", "status", "attempts", "next_attempt_at", "last_error", "object_id",
        "payment_intent_id", "received_at", "processed_at",
    }  # fmt: skip
    assert client.get(f"{ADMIN}?status=ignored", headers=auth(owner_token)).json["items"][0]["id"] == second
    assert client.get(f"{ADMIN}?type=checkout.session.completed", headers=auth(owner_token)).json["total"] == 1
    assert client.get(f"{ADMIN}?status=bogus", headers=auth(owner_token)).status_code == 400
    detail = client.get(f"{ADMIN}/{first}", headers=auth(owner_token))
    assert detail.status_code == 200 and detail.json["payload"]["id"] == first
    for missing in ("evt_missing", "bad-id!"):
        r = client.get(f"{ADMIN}/{missing}", headers=auth(owner_token))
        assert r.status_code == 404 and r.json["error"]["code"] == "STRIPE_EVENT_NOT_FOUND"


def test_replay_endpoint(app, client, db_session, shop, owner_token, sent_tasks) -> None:
    evt = so.event("checkout.session.completed", shop.paid_session(metadata={}))
    process(app, db_session, ingest_event(app, db_session, evt))
    assert event_row(db_session, evt["id"]).status == "dead"
    sent_tasks.clear()
    r = client.post(f"{ADMIN}/{evt['id']}/replay", headers=auth(owner_token))
    assert r.status_code == 202
    assert (r.json["status"], r.json["attempts"], r.json["last_error"]) == ("received", 0, None)
    assert sent_tasks == [("payments.process_stripe_event", (evt["id"],), None)]
    assert client.post(f"{ADMIN}/evt_nope/replay", headers=auth(owner_token)).status_code == 404


def test_replay_while_processing_is_409(app, client, db_session, shop, owner_token, sent_tasks) -> None:
    event_id = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    db_session.execute(update(StripeEvent).where(StripeEvent.id == event_id).values(status="processing"))
    r = client.post(f"{ADMIN}/{event_id}/replay", headers=auth(owner_token))
    assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT"


def test_check_order_for_others(client, db_session, shop) -> None:
    token = signed_in(shop.customer)
    assert client.get(f"{ADMIN}?status=bogus", headers=auth(token)).status_code == 400  # schema before role
    assert client.get(f"{ADMIN}/bad-id!", headers=auth(token)).status_code == 404  # path format first
    r = client.post(f"{ADMIN}/evt_1/replay", json={"x": 1}, headers=auth(token))
    assert r.status_code == 400
    assert client.get(f"{ADMIN}/evt_missing", headers=auth(token)).status_code == 403  # never a lookup


def test_only_platform_owner(client, db_session, shop) -> None:
    for user in (shop.customer, shop.owner):
        token = signed_in(user)
        assert client.get(ADMIN, headers=auth(token)).status_code == 403
        assert client.get(f"{ADMIN}/evt_1", headers=auth(token)).status_code == 403
        assert client.post(f"{ADMIN}/evt_1/replay", headers=auth(token)).status_code == 403
    assert client.get(ADMIN).status_code == 401


def test_cli_stripe_replay(app, db_session, shop, sent_tasks) -> None:
    evt = so.event("checkout.session.completed", shop.paid_session(metadata={}))
    process(app, db_session, ingest_event(app, db_session, evt))
    sent_tasks.clear()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["codex", "stripe-replay", evt["id"]])
    assert result.exit_code == 0, result.output
    assert f"{evt['id']} (checkout.session.completed) queued for processing" in result.output
    assert event_row(db_session, evt["id"]).status == "received"
    assert sent_tasks == [("payments.process_stripe_event", (evt["id"],), None)]
    missing = runner.invoke(args=["codex", "stripe-replay", "evt_nope"])
    assert missing.exit_code == 1 and "not found" in missing.output


# ---- the event sweeper ----------------------------------------------------------------------------------


def sweep(app: Any, db_session: Any) -> tuple[int, int]:
    with in_app(app, db_session):
        result = processing.sweep_events(db_session)
        db_session.commit()
    return result


def test_sweeper_enqueues_stale_received_and_due_failed(app, db_session, shop, sent_tasks) -> None:
    old = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    fresh = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    due = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    later = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    past = datetime.now(UTC) - timedelta(minutes=5)
    db_session.execute(update(StripeEvent).where(StripeEvent.id == old).values(received_at=past))
    db_session.execute(
        update(StripeEvent).where(StripeEvent.id == due).values(status="failed", next_attempt_at=past, received_at=past)
    )
    db_session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == later)
        .values(status="failed", next_attempt_at=datetime.now(UTC) + timedelta(hours=1), received_at=past)
    )
    sent_tasks.clear()
    assert sweep(app, db_session) == (0, 2)
    assert sorted(a[0] for _, a, _ in sent_tasks) == sorted([old, due])
    assert fresh not in [a[0] for _, a, _ in sent_tasks]


def test_sweeper_takes_back_stale_claims(app, db_session, shop, sent_tasks, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "STRIPE_EVENT_MAX_ATTEMPTS", 2)
    crashed = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    exhausted = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    running = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    long_ago = datetime.now(UTC) - timedelta(minutes=11)
    db_session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == crashed)
        .values(status="processing", attempts=1, claimed_at=long_ago)
    )
    db_session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == exhausted)
        .values(status="processing", attempts=2, claimed_at=long_ago)
    )
    db_session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == running)
        .values(status="processing", attempts=1, claimed_at=datetime.now(UTC))
    )
    reclaimed, _ = sweep(app, db_session)
    assert reclaimed == 2
    assert event_row(db_session, crashed).status == "failed"
    assert event_row(db_session, exhausted).status == "dead"
    assert event_row(db_session, running).status == "processing"
    assert "claim expired" in event_row(db_session, crashed).last_error


def test_crash_between_claim_and_commit_is_recovered_without_double_effect(app, db_session, shop, sent_tasks) -> None:
    event_id = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    with in_app(app, db_session):
        claim = processing.claim_event(db_session, event_id)
        db_session.commit()
        assert claim is not None
        # The worker dies here: its work transaction never commits (rolled back with the connection).
        processing.process_claimed(db_session, claim)
        db_session.rollback()
    assert purchases(db_session) == [] and event_row(db_session, event_id).status == "processing"
    db_session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_id)
        .values(claimed_at=datetime.now(UTC) - timedelta(minutes=11))
    )
    sent_tasks.clear()
    sweep(app, db_session)
    assert sent_tasks == [("payments.process_stripe_event", (event_id,), None)]
    assert process(app, db_session, event_id) == "processed"
    row = event_row(db_session, event_id)
    assert row.attempts == 2 and row.status == "processed"
    assert len(purchases(db_session)) == 1


# ---- reconciliation ----------------------------------------------------------------------------------------


def reconcile(app: Any, db_session: Any) -> int:
    with in_app(app, db_session):
        inserted = reconciliation.reconcile_checkouts(db_session)
        db_session.commit()
    return inserted


def test_reconciliation_fulfils_a_paid_session_whose_webhook_never_arrived(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    lost = fake_stripe.add_session(shop.paid_session())
    already = fake_stripe.add_session(shop.paid_session(customer=factories.UserFactory()))
    process(app, db_session, ingest_event(app, db_session, so.event("checkout.session.completed", already)))
    fake_stripe.add_session(shop.paid_session(payment_status="unpaid", payment_intent="pi_unpaid"))
    fake_stripe.add_session(shop.paid_session(mode="setup"))
    fake_stripe.add_session(shop.paid_session(created=so.now() - 73 * 3600))  # older than 72 h
    sent_tasks.clear()

    assert reconcile(app, db_session) == 1
    recon = event_row(db_session, f"recon_{lost['id']}")
    assert (recon.type, recon.source, recon.status) == ("checkout.session.completed", "reconcile", "received")
    assert recon.payload["data"]["object"]["id"] == lost["id"] and recon.payment_intent_id == lost["payment_intent"]
    assert sent_tasks == [("payments.process_stripe_event", (recon.id,), None)]
    assert reconcile(app, db_session) == 0  # ON CONFLICT DO NOTHING

    assert process(app, db_session, recon.id) == "processed"
    purchase = purchases(db_session, payment_intent_id=lost["payment_intent"])[0]
    assert purchase.amount_cents == lost["amount_total"] and purchase.status == "completed"
    assert reconcile(app, db_session) == 0  # it has a purchase now


def test_reconciliation_provider_error_propagates(app, db_session, stripe_provider, fake_stripe) -> None:
    from app.payments import ProviderError

    fake_stripe.fail_next("GET", "/v1/checkout/sessions", 500)
    with in_app(app, db_session), pytest.raises(ProviderError):
        reconciliation.reconcile_checkouts(db_session)


def test_reconciliation_is_a_noop_for_local(app, db_session, local_provider) -> None:
    assert reconcile(app, db_session) == 0


# ---- expiry ----------------------------------------------------------------------------------------------


def test_expire_checkout_sessions(app, db_session, shop) -> None:
    def session(expires_at: datetime, status: str = "open") -> str:
        row: CheckoutSession = factories.CheckoutSessionFactory(
            customer_id=shop.customer.id,
            content_id=shop.content.id,
            organization_id=shop.org.id,
            expires_at=expires_at,
            status=status,
        )
        return row.id

    now = datetime.now(UTC)
    stale = session(now - timedelta(hours=2))
    recent = session(now - timedelta(minutes=30))
    complete = session(now - timedelta(hours=2), status="complete")
    with in_app(app, db_session):
        assert reconciliation.expire_checkout_sessions(db_session) == 1
        db_session.commit()
    db_session.expire_all()
    assert db_session.get(CheckoutSession, stale).status == "expired"
    assert db_session.get(CheckoutSession, recent).status == "open"
    assert db_session.get(CheckoutSession, complete).status == "complete"


def test_beat_schedule_has_the_payment_jobs(app) -> None:
    from celery.schedules import crontab

    from tasks.schedule import beat_schedule

    schedule = beat_schedule(app.extensions["codex_config"])
    assert schedule["payments.sweep_stripe_events"]["schedule"] == 30.0
    assert schedule["payments.sweep_refunds"]["schedule"] == 60.0
    assert schedule["payments.expire_checkout_sessions"]["schedule"] == 600.0
    assert schedule["payments.reconcile_checkouts"]["schedule"] == crontab(minute=15)
