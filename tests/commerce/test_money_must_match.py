"""Money must match (security.md §9): fulfilment takes the amount and currency from the stored
``checkout_sessions`` row; an event that differs, or a session this app never created, is a
permanent ``AMOUNT_MISMATCH``; a missing row is read back from the provider, never rebuilt from
the event.

Sessions are created the way checkout creates them (``POST /api/v1/checkout``, or the
provider's own create call when the row's insert is what failed); events are signed as Stripe
signs them and go through the ingest function and the worker's code.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.access.models import ContentAccess
from app.audit import AdminAuditEvent
from app.commerce import processing
from app.commerce.models import CheckoutSession
from app.metrics import PAYMENT_MISMATCHES
from app.payments import CheckoutRequest, PaymentProvider
from tests import factories
from tests.commerce.helpers import Shop, deliver, event_row, in_app, ingest_event, make_due, process, purchases
from tests.commerce.test_checkout import buy
from tests.fakes import stripe_objects as so
from tests.fakes.stripe_api import FakeStripe
from tests.identity.helpers import auth, signed_in

COMPLETED = "checkout.session.completed"


def mismatches() -> float:
    return PAYMENT_MISMATCHES._value.get()


@pytest.fixture(params=["stripe", "local"])
def provider(request: pytest.FixtureRequest) -> PaymentProvider:
    """Each test runs against the Stripe provider (official SDK against the fake API) and the local one."""
    name = "stripe_provider" if request.param == "stripe" else "local_provider"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def paid(
    app: Flask, db_session: Any, provider: PaymentProvider, fake_stripe: FakeStripe | None, session_id: str
) -> Any:
    """The session as the provider reports it once the customer has paid."""
    if fake_stripe is not None and provider.name == "stripe":
        return fake_stripe.complete_session(session_id)
    with in_app(app, db_session):
        obj = provider.retrieve_checkout_session(session_id)
    assert obj is not None
    hex_part = session_id.removeprefix("cs_local_")
    return {**obj, "status": "complete", "payment_status": "paid", "payment_intent": f"pi_local_{hex_part}"}


def checked_out(client: Any, shop: Shop) -> str:
    """``POST /api/v1/checkout``: the session at the provider and its stored row."""
    r = buy(client, shop)
    assert r.status_code == 201, r.json
    return str(r.json["session_id"])


def created_without_row(app: Flask, db_session: Any, provider: PaymentProvider, shop: Shop) -> str:
    """What checkout does before its insert of the row fails: the session exists at the provider only."""
    now = datetime.now(UTC)
    request = CheckoutRequest(
        amount_cents=shop.content.price_cents or 0,
        currency=shop.content.currency,
        product_name=shop.content.title,
        customer_email=shop.customer.email,
        client_reference_id=str(shop.customer.id),
        metadata=shop.metadata(),
        success_url="http://localhost:3000/checkout/success?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://localhost:3000/checkout/cancelled",
        expires_at=now + timedelta(minutes=30),
        idempotency_key=f"checkout:{shop.customer.id}:{shop.content.id}:{now.timestamp()}",
    )
    with in_app(app, db_session):
        session_id = str(provider.create_checkout_session(request)["id"])
    assert db_session.get(CheckoutSession, session_id) is None
    return session_id


def run(app: Flask, db_session: Any, evt: dict[str, Any]) -> str | None:
    return process(app, db_session, ingest_event(app, db_session, evt))


def assert_refused(
    app: Flask,
    db_session: Any,
    shop: Shop,
    evt: dict[str, Any],
    *,
    before: float,
    caplog: pytest.LogCaptureFixture,
    sent_tasks: list[Any],
    expected: dict[str, Any] | None,
) -> AdminAuditEvent:
    """``failed`` with AMOUNT_MISMATCH for good; no purchase, no grant; audited, counted, logged at ERROR."""
    session_id = evt["data"]["object"]["id"]
    row = event_row(db_session, evt["id"])
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith("AMOUNT_MISMATCH: ")
    assert purchases(db_session) == []
    assert db_session.scalars(select(ContentAccess).where(ContentAccess.user_id == shop.customer.id)).all() == []
    assert mismatches() == before + 1
    [audit] = db_session.scalars(select(AdminAuditEvent).where(AdminAuditEvent.action == "payment.mismatch")).all()
    assert (audit.organization_id, audit.actor_user_id, audit.actor_role) == (shop.org.id, None, "system")
    assert (audit.target_type, audit.target_id) == ("checkout_session", session_id)
    charged = evt["data"]["object"]
    assert audit.metadata_["event_id"] == evt["id"]
    assert audit.metadata_["charged"] == {"amount_cents": charged["amount_total"], "currency": charged["currency"]}
    assert audit.metadata_["expected"] == expected
    [logged] = [
        r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "stripe.amount_mismatch"
    ]
    assert logged["level"] == "error" and logged["checkout_session_id"] == session_id
    # Permanent: not re-enqueued with a backoff, not due for the sweeper, not claimable.
    assert [args for name, args, countdown in sent_tasks if countdown is not None] == []
    with in_app(app, db_session):
        assert processing.sweep_events(db_session) == (0, 0)
        db_session.commit()
    assert process(app, db_session, evt["id"]) is None
    assert event_row(db_session, evt["id"]).status == "failed" and mismatches() == before + 1
    return audit


# ---- the stored row decides ----------------------------------------------------------------------------


@pytest.mark.parametrize("changed", ["amount", "currency"])
def test_event_differing_from_the_stored_session_is_refused(
    app, client, db_session, shop, provider, fake_stripe, sent_tasks, caplog, changed
) -> None:
    session_id = checked_out(client, shop)
    obj = paid(app, db_session, provider, fake_stripe, session_id)
    obj = {**obj, "amount_total": 1, "amount_subtotal": 1} if changed == "amount" else {**obj, "currency": "eur"}
    evt = so.event(COMPLETED, obj)
    before = mismatches()
    with caplog.at_level(logging.INFO):
        assert deliver(client, evt).status_code == 200  # acknowledged: a webhook is a hint
        assert process(app, db_session, evt["id"]) == "failed"
    assert_refused(
        app,
        db_session,
        shop,
        evt,
        before=before,
        caplog=caplog,
        sent_tasks=sent_tasks,
        expected={"amount_cents": 1999, "currency": "usd"},
    )
    db_session.expire_all()
    stored = db_session.get(CheckoutSession, session_id)
    assert (stored.status, stored.payment_status, stored.amount_cents) == ("open", "unpaid", 1999)


def test_matching_event_is_fulfilled_with_the_stored_money(
    app, client, db_session, shop, provider, fake_stripe, sent_tasks
) -> None:
    session_id = checked_out(client, shop)
    assert (
        run(app, db_session, so.event(COMPLETED, paid(app, db_session, provider, fake_stripe, session_id)))
        == "processed"
    )
    [purchase] = purchases(db_session)
    assert (purchase.checkout_session_id, purchase.amount_cents, purchase.currency) == (session_id, 1999, "usd")
    assert purchase.provider == provider.name


def test_mismatch_is_visible_to_the_admin_and_a_replay_is_refused_again(
    app, client, db_session, shop, local_provider, sent_tasks
) -> None:
    obj = {**paid(app, db_session, local_provider, None, checked_out(client, shop)), "amount_total": 999}
    evt = so.event(COMPLETED, obj)
    assert run(app, db_session, evt) == "failed"
    admin = auth(signed_in(factories.UserFactory(role="platform_owner")))
    listed = client.get("/api/v1/admin/stripe-events?status=failed", headers=admin).json["items"]
    assert [(i["id"], i["last_error"][:16], i["next_attempt_at"]) for i in listed] == [
        (evt["id"], "AMOUNT_MISMATCH:", "9999-12-31T00:00:00.000Z")  # never due by itself
    ]
    with in_app(app, db_session):
        processing.replay_event(db_session, evt["id"])
        db_session.commit()
    make_due(db_session, evt["id"])  # the test's transaction keeps now() at its start
    assert process(app, db_session, evt["id"]) == "failed"
    row = event_row(db_session, evt["id"])
    assert row.last_error.startswith("AMOUNT_MISMATCH: ") and purchases(db_session) == []


# ---- no row: read back from the provider ----------------------------------------------------------------


def test_session_this_app_never_created_is_refused(
    app, db_session, shop, provider, fake_stripe, sent_tasks, caplog
) -> None:
    """Valid metadata of this deployment, but no row and nothing at the provider: never rebuilt from the event."""
    session_id = "cs_local_" + "7" * 32 if provider.name == "local" else so.stripe_id("cs_test_a1", 56)
    evt = so.event(COMPLETED, shop.paid_session(stored=False, session_id=session_id))
    before = mismatches()
    with caplog.at_level(logging.INFO):
        assert run(app, db_session, evt) == "failed"
    audit = assert_refused(
        app, db_session, shop, evt, before=before, caplog=caplog, sent_tasks=sent_tasks, expected=None
    )
    assert audit.metadata_["reason"] == "checkout session unknown here and at the provider"
    assert db_session.get(CheckoutSession, session_id) is None
    if provider.name == "stripe":
        [lookup] = fake_stripe.requests_to("GET", f"/v1/checkout/sessions/{session_id}")
        assert lookup.method == "GET"


def test_missing_row_is_read_back_and_fulfilled(app, db_session, shop, provider, fake_stripe, sent_tasks) -> None:
    session_id = created_without_row(app, db_session, provider, shop)
    obj = paid(app, db_session, provider, fake_stripe, session_id)
    assert run(app, db_session, so.event(COMPLETED, obj)) == "processed"
    [purchase] = purchases(db_session)
    assert (purchase.checkout_session_id, purchase.amount_cents, purchase.currency) == (session_id, 1999, "usd")
    assert purchase.provider == provider.name
    db_session.expire_all()
    stored = db_session.get(CheckoutSession, session_id)  # stored from the provider's copy
    assert (stored.provider, stored.customer_id, stored.content_id, stored.organization_id) == (
        provider.name,
        shop.customer.id,
        shop.content.id,
        shop.org.id,
    )
    assert (stored.status, stored.payment_status, stored.amount_cents, stored.currency) == (
        "complete",
        "paid",
        1999,
        "usd",
    )
    assert stored.cancel_url == "http://localhost:3000/checkout/cancelled"
    grant = db_session.scalars(select(ContentAccess).where(ContentAccess.user_id == shop.customer.id)).one()
    assert grant.purchase_id == purchase.id and grant.revoked_at is None
    if provider.name == "stripe":
        assert len(fake_stripe.requests_to("GET", f"/v1/checkout/sessions/{session_id}")) == 1


def test_read_back_below_the_current_price_is_refused(
    app, db_session, shop, provider, fake_stripe, sent_tasks, caplog
) -> None:
    session_id = created_without_row(app, db_session, provider, shop)
    obj = paid(app, db_session, provider, fake_stripe, session_id)
    shop.content.price_cents = 2999  # the price went up since the session was made
    db_session.flush()
    evt = so.event(COMPLETED, obj)
    before = mismatches()
    with caplog.at_level(logging.INFO):
        assert run(app, db_session, evt) == "failed"
    assert_refused(
        app,
        db_session,
        shop,
        evt,
        before=before,
        caplog=caplog,
        sent_tasks=sent_tasks,
        expected={"amount_cents": 2999, "currency": "usd"},
    )
    assert db_session.get(CheckoutSession, session_id) is None


def test_read_back_in_another_currency_is_refused(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks, caplog
) -> None:
    session_id = created_without_row(app, db_session, stripe_provider, shop)
    shop.content.currency = "eur"  # the price is now in another currency than the session's
    db_session.flush()
    evt = so.event(COMPLETED, fake_stripe.complete_session(session_id))
    before = mismatches()
    with caplog.at_level(logging.INFO):
        assert run(app, db_session, evt) == "failed"
    assert_refused(
        app,
        db_session,
        shop,
        evt,
        before=before,
        caplog=caplog,
        sent_tasks=sent_tasks,
        expected={"amount_cents": 1999, "currency": "eur"},
    )


def test_read_back_without_this_deployments_metadata_is_refused(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks, caplog
) -> None:
    """The event names our customer and content, but the session at Stripe was made for someone else."""
    other = factories.UserFactory()
    at_stripe = fake_stripe.add_session(shop.paid_session(stored=False, customer=other))
    evt = so.event(COMPLETED, {**at_stripe, "metadata": shop.metadata()})
    before = mismatches()
    with caplog.at_level(logging.INFO):
        assert run(app, db_session, evt) == "failed"
    audit = assert_refused(
        app, db_session, shop, evt, before=before, caplog=caplog, sent_tasks=sent_tasks, expected=None
    )
    assert audit.metadata_["reason"] == "the provider's session does not carry this deployment's metadata"


def test_read_back_failing_transiently_is_retried(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    session_id = created_without_row(app, db_session, stripe_provider, shop)
    evt = so.event(COMPLETED, fake_stripe.complete_session(session_id))
    fake_stripe.fail_next("GET", "/v1/checkout/sessions/", 503)
    before = mismatches()
    event_id = ingest_event(app, db_session, evt)
    assert process(app, db_session, event_id) == "failed"
    row = event_row(db_session, event_id)
    assert row.last_error.startswith("TransientEventError: checkout session read-back failed")
    assert ("payments.process_stripe_event", (event_id,), 30) in sent_tasks  # retried with backoff
    assert mismatches() == before
    assert db_session.scalars(select(AdminAuditEvent).where(AdminAuditEvent.action == "payment.mismatch")).all() == []
    make_due(db_session, event_id)
    assert process(app, db_session, event_id) == "processed"
    assert len(purchases(db_session)) == 1


def test_read_back_refused_by_the_provider_is_dead_without_a_mismatch(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    """A 4xx other than 404 (a revoked key): permanent as base.py classifies it, but no money was compared."""
    session_id = created_without_row(app, db_session, stripe_provider, shop)
    evt = so.event(COMPLETED, fake_stripe.complete_session(session_id))
    fake_stripe.fail_next("GET", "/v1/checkout/sessions/", 401, code="invalid_api_key")
    before = mismatches()
    assert run(app, db_session, evt) == "dead"
    assert event_row(db_session, evt["id"]).last_error.startswith("PermanentEventError: checkout session read-back")
    assert mismatches() == before and purchases(db_session) == []


def test_local_read_back_of_a_lost_provider_record_is_refused(
    app, db_session, shop, local_provider, redis, sent_tasks, caplog
) -> None:
    """The local provider's record is its memory of the session: without it nothing vouches for the money."""
    session_id = created_without_row(app, db_session, local_provider, shop)
    obj = paid(app, db_session, local_provider, None, session_id)
    redis.flushdb()
    before = mismatches()
    with caplog.at_level(logging.INFO):
        assert run(app, db_session, so.event(COMPLETED, obj)) == "failed"
    assert mismatches() == before + 1 and purchases(db_session) == []


def test_stored_row_wins_over_a_read_back(
    app, client, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    """With a row, the provider is not asked: the row this app stored is the reference."""
    session_id = checked_out(client, shop)
    obj = fake_stripe.complete_session(session_id)
    assert run(app, db_session, so.event(COMPLETED, obj)) == "processed"
    assert fake_stripe.requests_to("GET", "/v1/checkout/sessions/") == []
