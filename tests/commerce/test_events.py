"""payments.process_stripe_event: claim, per-type handling, ordering, failures (jobs.md §4.2-§4.4).

Events are real Stripe shapes, signed and stored through the ingest function; the worker's code
(``tasks.payments.process_event``) runs against the test's rolled-back transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.access.models import ContentAccess
from app.audit import AdminAuditEvent
from app.commerce import fulfilment, pipeline, processing
from app.commerce.models import CheckoutSession, StripeEvent
from app.identity import access_entries
from tests import factories
from tests.commerce.helpers import Shop, event_row, ingest_event, make_due, outbox, process, purchases
from tests.fakes import stripe_objects as so

TOMBSTONE = access_entries.TOMBSTONE.encode()  # what a writer leaves in an access entry's place


def run(app: Any, db_session: Any, evt: dict[str, Any]) -> str | None:
    event_id = ingest_event(app, db_session, evt)
    return process(app, db_session, event_id)


def grant_of(db_session: Any, shop: Shop) -> ContentAccess | None:
    db_session.expire_all()
    return db_session.scalars(
        select(ContentAccess).where(
            ContentAccess.user_id == shop.customer.id, ContentAccess.content_id == shop.content.id
        )
    ).first()


# ---- fulfil ----------------------------------------------------------------------------------------


def test_completed_paid_session_is_fulfilled(app, db_session, shop, sent_tasks, redis) -> None:
    redis.set(f"access:{shop.customer.id}:{shop.content.id}", "none")
    obj = shop.paid_session(amount_total=2499)
    assert run(app, db_session, so.event("checkout.session.completed", obj)) == "processed"

    [purchase] = purchases(db_session)
    assert purchase.status == "completed" and not purchase.is_duplicate
    assert purchase.amount_cents == 2499 == obj["amount_total"]  # what was charged, integer cents
    assert isinstance(purchase.amount_cents, int) and purchase.currency == "usd"
    assert purchase.payment_intent_id == obj["payment_intent"] and purchase.checkout_session_id == obj["id"]
    assert (purchase.customer_id, purchase.content_id, purchase.organization_id) == (
        shop.customer.id,
        shop.content.id,
        shop.org.id,
    )
    grant = grant_of(db_session, shop)
    assert grant is not None and grant.source == "purchase" and grant.purchase_id == purchase.id
    assert grant.revoked_at is None
    session_row = db_session.get(CheckoutSession, obj["id"])  # the row stored at checkout, now complete
    assert (session_row.status, session_row.payment_status, session_row.payment_intent_id) == (
        "complete",
        "paid",
        obj["payment_intent"],
    )
    assert session_row.amount_cents == 2499 and session_row.provider == "stripe"
    [receipt] = outbox(db_session, "purchase-receipt")
    assert receipt.recipient == shop.customer.email and receipt.dedupe_key == f"purchase-receipt:{purchase.id}"
    assert receipt.context["amount"] == {"cents": 2499, "currency": "usd"}
    assert receipt.organization_id == shop.org.id
    [sale] = outbox(db_session, "new-sale")
    assert sale.recipient == shop.owner.email and sale.dedupe_key == f"new-sale:{purchase.id}"
    assert redis.get(f"access:{shop.customer.id}:{shop.content.id}") == TOMBSTONE  # buried after commit
    assert [n for n, _, _ in sent_tasks].count("email.send") == 2
    row = event_row(db_session, _last_event(db_session))
    assert row.status == "processed" and row.processed_at is not None and row.last_error is None


def _last_event(db_session: Any) -> str:
    return db_session.scalars(select(StripeEvent.id).order_by(StripeEvent.received_at.desc())).first()


def test_fulfils_even_if_content_was_unpublished_or_deleted(app, db_session, shop, sent_tasks) -> None:
    db_session.execute(update(type(shop.content)).values(status="archived", deleted_at=shop.content.created_at))
    run(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    assert len(purchases(db_session)) == 1


def test_completed_unpaid_is_recorded_then_async_success_fulfils(app, db_session, shop, sent_tasks) -> None:
    obj = shop.paid_session(payment_status="unpaid", payment_intent="pi_async_1")
    assert run(app, db_session, so.event("checkout.session.completed", obj)) == "processed"
    row = db_session.get(CheckoutSession, obj["id"])
    assert (row.status, row.payment_status) == ("complete", "unpaid")
    assert purchases(db_session) == [] and grant_of(db_session, shop) is None

    paid = {**obj, "payment_status": "paid"}
    assert run(app, db_session, so.event("checkout.session.async_payment_succeeded", paid)) == "processed"
    assert len(purchases(db_session)) == 1
    db_session.expire_all()
    assert db_session.get(CheckoutSession, obj["id"]).payment_status == "paid"


def test_async_payment_failed(app, db_session, shop, sent_tasks) -> None:
    obj = shop.paid_session(payment_status="unpaid", payment_intent="pi_async_2")
    run(app, db_session, so.event("checkout.session.completed", obj))
    run(app, db_session, so.event("checkout.session.async_payment_failed", obj))
    db_session.expire_all()
    row = db_session.get(CheckoutSession, obj["id"])
    assert (row.status, row.payment_status) == ("complete", "failed")
    assert purchases(db_session) == []


def test_non_payment_mode_is_ignored(app, db_session, shop, sent_tasks) -> None:
    obj = shop.paid_session(mode="subscription")
    assert run(app, db_session, so.event("checkout.session.completed", obj)) == "ignored"
    assert purchases(db_session) == []


def test_completed_and_async_succeeded_and_replay_make_one_purchase(app, db_session, shop, sent_tasks) -> None:
    obj = shop.paid_session()
    first = so.event("checkout.session.completed", obj)
    run(app, db_session, first)
    run(app, db_session, so.event("checkout.session.async_payment_succeeded", obj))
    with _ctx(app, db_session):
        processing.replay_event(db_session, first["id"])
        db_session.commit()
    process(app, db_session, first["id"])
    assert len(purchases(db_session)) == 1
    assert len(outbox(db_session, "purchase-receipt")) == 1 and len(outbox(db_session, "new-sale")) == 1


def _ctx(app: Any, db_session: Any) -> Any:
    from tests.commerce.helpers import in_app

    return in_app(app, db_session)


# ---- sessions expiring -----------------------------------------------------------------------------


def _open_row(shop: Shop, session_id: str) -> CheckoutSession:
    row: CheckoutSession = factories.CheckoutSessionFactory(
        id=session_id, customer_id=shop.customer.id, content_id=shop.content.id, organization_id=shop.org.id
    )
    return row


def test_expired_event_expires_an_open_session(app, db_session, shop, sent_tasks) -> None:
    _open_row(shop, "cs_test_exp1")
    obj = shop.paid_session(stored=False, session_id="cs_test_exp1", status="expired", payment_status="unpaid")
    run(app, db_session, so.event("checkout.session.expired", obj))
    db_session.expire_all()
    assert db_session.get(CheckoutSession, "cs_test_exp1").status == "expired"


def test_expired_after_completed_never_downgrades(app, db_session, shop, sent_tasks) -> None:
    _open_row(shop, "cs_test_exp2")
    obj = shop.paid_session(stored=False, session_id="cs_test_exp2")
    run(app, db_session, so.event("checkout.session.completed", obj))
    run(app, db_session, so.event("checkout.session.expired", {**obj, "status": "expired"}))
    db_session.expire_all()
    row = db_session.get(CheckoutSession, "cs_test_exp2")
    assert (row.status, row.payment_status) == ("complete", "paid")
    assert len(purchases(db_session)) == 1


def test_completed_after_expired_ends_complete_and_fulfilled(app, db_session, shop, sent_tasks) -> None:
    _open_row(shop, "cs_test_exp3")
    obj = shop.paid_session(stored=False, session_id="cs_test_exp3")
    run(app, db_session, so.event("checkout.session.expired", {**obj, "status": "expired"}))
    run(app, db_session, so.event("checkout.session.completed", obj))
    db_session.expire_all()
    row = db_session.get(CheckoutSession, "cs_test_exp3")
    assert (row.status, row.payment_status) == ("complete", "paid")
    [purchase] = purchases(db_session)
    assert purchase.status == "completed" and grant_of(db_session, shop).revoked_at is None


# ---- duplicate path ------------------------------------------------------------------------------------


def test_second_paid_session_for_owned_content_is_refunded_automatically(app, db_session, shop, sent_tasks) -> None:
    run(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    [original] = purchases(db_session)
    grant_before = grant_of(db_session, shop)
    sent_tasks.clear()

    second = shop.paid_session()
    run(app, db_session, so.event("checkout.session.completed", second))
    duplicate = purchases(db_session, payment_intent_id=second["payment_intent"])[0]
    assert duplicate.is_duplicate and duplicate.status == "completed"
    assert (duplicate.refund_status, duplicate.refund_reason, duplicate.refund_requested_by) == (
        "requested",
        "duplicate_purchase",
        None,
    )
    assert duplicate.amount_cents == second["amount_total"]
    grant = grant_of(db_session, shop)
    assert grant.purchase_id == original.id and grant.granted_at == grant_before.granted_at  # access untouched
    assert len(outbox(db_session, "purchase-receipt")) == 1 and len(outbox(db_session, "new-sale")) == 1
    audit = db_session.scalars(select(AdminAuditEvent).where(AdminAuditEvent.action == "refund.auto_duplicate")).one()
    assert audit.actor_role == "system" and audit.actor_user_id is None and audit.target_id == str(duplicate.id)
    assert ("payments.submit_refund", (str(duplicate.id),), None) in sent_tasks


def test_duplicate_refund_event_refunds_it_and_emails_once(app, db_session, shop, sent_tasks) -> None:
    run(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    second = shop.paid_session()
    run(app, db_session, so.event("checkout.session.completed", second))
    charge = so.charge(payment_intent=second["payment_intent"], amount=1999, amount_refunded=1999)
    run(app, db_session, so.event("charge.refunded", charge))
    duplicate = purchases(db_session, payment_intent_id=second["payment_intent"])[0]
    assert duplicate.status == "refunded" and duplicate.refund_status == "succeeded"
    [email] = outbox(db_session, "refund-processed")
    assert email.context["is_duplicate"] is True and email.context["is_full_refund"] is True
    assert grant_of(db_session, shop).revoked_at is None  # the grant points at the original


# ---- refunds ---------------------------------------------------------------------------------------------


def _bought(app: Any, db_session: Any, shop: Shop) -> dict[str, Any]:
    obj = shop.paid_session()
    run(app, db_session, so.event("checkout.session.completed", obj))
    return obj


def test_full_refund_revokes_access_and_emails(app, db_session, shop, sent_tasks, redis) -> None:
    obj = _bought(app, db_session, shop)
    redis.set(f"access:{shop.customer.id}:{shop.content.id}", "purchased")
    charge = so.charge(payment_intent=obj["payment_intent"], amount=1999, amount_refunded=1999)
    assert run(app, db_session, so.event("charge.refunded", charge, previous_attributes={"amount_refunded": 0})) == (
        "processed"
    )
    [purchase] = purchases(db_session)
    assert purchase.status == "refunded" and purchase.refunded_amount_cents == 1999
    assert purchase.refund_status == "succeeded" and purchase.refunded_at is not None
    grant = grant_of(db_session, shop)
    assert grant.revoked_at is not None and grant.revoke_reason == "refund"
    [email] = outbox(db_session, "refund-processed")
    assert email.dedupe_key == f"refund-processed:{purchase.id}:1999"
    assert email.context["refund_amount"] == {"cents": 1999, "currency": "usd"}
    assert redis.get(f"access:{shop.customer.id}:{shop.content.id}") == TOMBSTONE


def test_partial_refunds_grow_only_and_keep_access(app, db_session, shop, sent_tasks) -> None:
    obj = _bought(app, db_session, shop)
    pi = obj["payment_intent"]
    run(app, db_session, so.event("charge.refunded", so.charge(payment_intent=pi, amount_refunded=500)))
    # Out of order: the later (larger) cumulative figure arrives first, the older one after it.
    run(app, db_session, so.event("charge.refunded", so.charge(payment_intent=pi, amount_refunded=1200)))
    run(app, db_session, so.event("charge.refunded", so.charge(payment_intent=pi, amount_refunded=700)))
    [purchase] = purchases(db_session)
    assert purchase.refunded_amount_cents == 1200 and purchase.status == "completed"
    assert grant_of(db_session, shop).revoked_at is None
    emails = outbox(db_session, "refund-processed")
    assert [e.context["total_refunded"]["cents"] for e in emails] == [500, 1200]
    assert emails[1].context["refund_amount"]["cents"] == 700 and emails[1].context["is_full_refund"] is False
    run(app, db_session, so.event("charge.refunded", so.charge(payment_intent=pi, amount_refunded=1999)))
    [purchase] = purchases(db_session)
    assert purchase.status == "refunded" and grant_of(db_session, shop).revoke_reason == "refund"


def test_refund_amount_must_be_integer_cents(app, db_session, shop, sent_tasks) -> None:
    obj = _bought(app, db_session, shop)
    charge = so.charge(payment_intent=obj["payment_intent"])
    charge["amount_refunded"] = 19.99
    evt = so.event("charge.refunded", charge)
    assert run(app, db_session, evt) == "dead"
    assert "integer amount of cents" in event_row(db_session, evt["id"]).last_error


def test_refund_before_completion_retries_then_self_heals(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    obj = fake_stripe.add_session(shop.paid_session())
    charge = so.charge(payment_intent=obj["payment_intent"], amount_refunded=1999)
    refund = so.event("charge.refunded", charge)
    event_id = ingest_event(app, db_session, refund)

    assert process(app, db_session, event_id) == "failed"
    row = event_row(db_session, event_id)
    assert row.attempts == 1 and row.last_error == "TransientEventError: purchase not yet recorded"
    assert ("payments.process_stripe_event", (event_id,), 30) in sent_tasks  # self re-enqueued with backoff
    assert fake_stripe.requests == []  # no provider call before the 3rd attempt
    make_due(db_session, event_id)
    assert process(app, db_session, event_id) == "failed"
    assert ("payments.process_stripe_event", (event_id,), 60) in sent_tasks
    make_due(db_session, event_id)
    assert process(app, db_session, event_id) == "processed"  # 3rd attempt: rebuilt from Stripe

    [lookup] = fake_stripe.requests_to("GET", "/v1/checkout/sessions")
    assert lookup.params["payment_intent"] == obj["payment_intent"]
    [purchase] = purchases(db_session)
    assert purchase.status == "refunded" and purchase.refunded_amount_cents == 1999
    assert grant_of(db_session, shop).revoke_reason == "refund"
    assert outbox(db_session, "purchase-receipt") == []  # already fully refunded: no receipt/new-sale
    assert len(outbox(db_session, "refund-processed")) == 1

    # The completion event arriving late is a no-op.
    assert run(app, db_session, so.event("checkout.session.completed", obj)) == "processed"
    [purchase] = purchases(db_session)
    assert purchase.status == "refunded" and grant_of(db_session, shop).revoked_at is not None


def test_refund_before_completion_then_completion_arrives_in_time(app, db_session, shop, sent_tasks) -> None:
    obj = shop.paid_session()
    refund = so.event("charge.refunded", so.charge(payment_intent=obj["payment_intent"], amount_refunded=1999))
    event_id = ingest_event(app, db_session, refund)
    assert process(app, db_session, event_id) == "failed"
    run(app, db_session, so.event("checkout.session.completed", obj))
    make_due(db_session, event_id)
    assert process(app, db_session, event_id) == "processed"
    [purchase] = purchases(db_session)
    assert purchase.status == "refunded" and grant_of(db_session, shop).revoke_reason == "refund"
    assert len(outbox(db_session, "purchase-receipt")) == 1  # the in-order result


# ---- disputes --------------------------------------------------------------------------------------------


def test_dispute_created_revokes_and_won_restores(app, db_session, shop, sent_tasks) -> None:
    obj = _bought(app, db_session, shop)
    created = so.dispute(payment_intent=obj["payment_intent"], dispute_id="dp_1")
    t0 = so.now()
    run(app, db_session, so.event("charge.dispute.created", created, created=t0))
    [purchase] = purchases(db_session)
    assert purchase.disputed_at is not None and purchase.dispute_id == "dp_1"
    assert purchase.dispute_status == "needs_response"
    assert grant_of(db_session, shop).revoke_reason == "dispute"
    run(app, db_session, so.event("charge.dispute.closed", {**created, "status": "won"}, created=t0 + 10))
    [purchase] = purchases(db_session)
    assert purchase.status == "completed" and purchase.dispute_status == "won"
    assert grant_of(db_session, shop).revoked_at is None
    assert outbox(db_session, "refund-processed") == []  # disputes send no email


def test_dispute_lost_charges_back(app, db_session, shop, sent_tasks) -> None:
    obj = _bought(app, db_session, shop)
    created = so.dispute(payment_intent=obj["payment_intent"])
    t0 = so.now()
    run(app, db_session, so.event("charge.dispute.created", created, created=t0))
    run(app, db_session, so.event("charge.dispute.closed", {**created, "status": "lost"}, created=t0 + 5))
    [purchase] = purchases(db_session)
    assert purchase.status == "charged_back" and grant_of(db_session, shop).revoke_reason == "dispute"


def test_dispute_closed_before_created_stays_closed(app, db_session, shop, sent_tasks) -> None:
    obj = _bought(app, db_session, shop)
    created = so.dispute(payment_intent=obj["payment_intent"])
    t0 = so.now()
    run(app, db_session, so.event("charge.dispute.closed", {**created, "status": "won"}, created=t0 + 10))
    run(app, db_session, so.event("charge.dispute.created", created, created=t0))  # stale
    [purchase] = purchases(db_session)
    assert purchase.dispute_status == "won" and purchase.disputed_at is not None
    assert grant_of(db_session, shop).revoked_at is None


def test_dispute_won_after_full_refund_does_not_restore(app, db_session, shop, sent_tasks) -> None:
    obj = _bought(app, db_session, shop)
    t0 = so.now()
    created = so.dispute(payment_intent=obj["payment_intent"])
    run(app, db_session, so.event("charge.dispute.created", created, created=t0))
    run(
        app,
        db_session,
        so.event("charge.refunded", so.charge(payment_intent=obj["payment_intent"], amount_refunded=1999)),
    )
    run(app, db_session, so.event("charge.dispute.closed", {**created, "status": "won"}, created=t0 + 5))
    [purchase] = purchases(db_session)
    assert purchase.status == "refunded" and grant_of(db_session, shop).revoked_at is not None


def test_dispute_without_payment_intent_uses_the_charge(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    obj = fake_stripe.add_session(shop.paid_session())
    run(app, db_session, so.event("checkout.session.completed", obj))
    charge = fake_stripe.charge_for(obj["payment_intent"])
    evt = so.event("charge.dispute.created", so.dispute(payment_intent=None, charge_id=charge["id"]))
    assert run(app, db_session, evt) == "processed"
    assert grant_of(db_session, shop).revoke_reason == "dispute"


# ---- failures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"customer_id": "nope", "content_id": "x", "organization_id": "y"},
        {"customer_id": "00000000-0000-4000-8000-000000000000", "content_id": "", "organization_id": ""},
    ],
)
def test_bad_metadata_is_dead_at_once(app, db_session, shop, sent_tasks, metadata) -> None:
    evt = so.event("checkout.session.completed", shop.paid_session(metadata=metadata))
    assert run(app, db_session, evt) == "dead"
    row = event_row(db_session, evt["id"])
    assert row.attempts == 1 and row.last_error.startswith("PermanentEventError")
    assert purchases(db_session) == []
    assert [n for n, _, _ in sent_tasks].count("payments.process_stripe_event") == 1  # only the ingest's


def test_content_of_another_org_is_permanent(app, db_session, shop, sent_tasks) -> None:
    other = factories.PaidContentFactory()
    metadata = {**shop.metadata(), "content_id": str(other.id)}
    evt = so.event("checkout.session.completed", shop.paid_session(metadata=metadata))
    assert run(app, db_session, evt) == "dead"


def test_transient_errors_back_off_then_go_dead(app, db_session, shop, sent_tasks, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "STRIPE_EVENT_MAX_ATTEMPTS", 3)
    obj = shop.paid_session()
    evt = so.event("charge.refunded", so.charge(payment_intent=obj["payment_intent"]))
    monkeypatch.setattr(fulfilment, "SELF_HEAL_FROM_ATTEMPT", 99)
    event_id = ingest_event(app, db_session, evt)
    delays = []
    for _ in range(3):
        status = process(app, db_session, event_id)
        row = event_row(db_session, event_id)
        delays.append((status, row.attempts))
        make_due(db_session, event_id)
    assert delays == [("failed", 1), ("failed", 2), ("dead", 3)]
    retries = [c for n, a, c in sent_tasks if n == "payments.process_stripe_event" and c is not None]
    assert retries == [30, 60]
    assert process(app, db_session, event_id) is None  # dead rows are never claimed again


def test_last_error_never_carries_sql_parameters() -> None:
    from sqlalchemy.exc import OperationalError

    exc = OperationalError(
        "INSERT INTO x VALUES (%(email)s)", {"email": "ana@example.com"}, Exception("server closed\nmore")
    )
    text = pipeline.describe(exc)
    assert text == "OperationalError: Exception: server closed"
    assert "ana@example.com" not in text


def test_backoff_formula() -> None:
    assert [processing.backoff_seconds(n) for n in (1, 2, 3, 7, 8, 9, 10)] == [30, 60, 120, 1920, 3600, 3600, 3600]


def test_claim_is_exclusive_and_requires_due(app, db_session, shop, sent_tasks) -> None:
    event_id = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    with _ctx(app, db_session):
        first = processing.claim_event(db_session, event_id)
        second = processing.claim_event(db_session, event_id)
    assert first is not None and first.attempts == 1 and second is None


def test_worker_that_lost_its_claim_writes_nothing(app, db_session, shop, sent_tasks) -> None:
    """A slow worker whose claim the sweeper took back must not apply the event a second time."""
    event_id = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    with _ctx(app, db_session):
        stale = processing.claim_event(db_session, event_id)
        db_session.commit()
        db_session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == event_id)
            .values(claimed_at=StripeEvent.claimed_at - timedelta(minutes=11))
        )
        processing.sweep_events(db_session)
        db_session.commit()
    assert event_row(db_session, event_id).status == "failed"
    make_due(db_session, event_id)
    assert process(app, db_session, event_id) == "processed"  # another worker did it
    with _ctx(app, db_session):
        assert processing.process_claimed(db_session, stale) is None  # the old claim is no longer valid
        db_session.commit()
    assert len(purchases(db_session)) == 1 and len(outbox(db_session, "purchase-receipt")) == 1


def test_replay_resets_dead_event(app, db_session, shop, sent_tasks) -> None:
    evt = so.event("checkout.session.completed", shop.paid_session(metadata={}))
    run(app, db_session, evt)
    sent_tasks.clear()
    with _ctx(app, db_session):
        row = processing.replay_event(db_session, evt["id"])
        db_session.commit()
    assert (row.status, row.attempts, row.last_error, row.claimed_at) == ("received", 0, None, None)
    assert sent_tasks == [("payments.process_stripe_event", (evt["id"],), None)]


def test_replay_of_processing_event_is_409(app, db_session, shop, sent_tasks) -> None:
    from app.errors import Conflict

    event_id = ingest_event(app, db_session, so.event("checkout.session.completed", shop.paid_session()))
    with _ctx(app, db_session):
        processing.claim_event(db_session, event_id)
        with pytest.raises(Conflict):
            processing.replay_event(db_session, event_id)
