"""Org refunds: the request (POST …/refund), its submission to the provider, the refund sweeper."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.audit import AdminAuditEvent
from app.commerce import refunds
from app.commerce.models import Purchase, StripeEvent
from tasks.payments import submit
from tests import factories
from tests.commerce.helpers import Shop, in_app, process, purchases
from tests.fakes import stripe_objects as so
from tests.identity.helpers import add_member, auth, signed_in


def refund_url(shop: Shop, purchase_id: Any) -> str:
    return f"/api/v1/orgs/{shop.org.id}/purchases/{purchase_id}/refund"


def bought(shop: Shop, fake_stripe: Any = None, **kwargs: Any) -> Purchase:
    purchase: Purchase = factories.PurchaseFactory(customer_id=shop.customer.id, content=shop.content, **kwargs)
    if fake_stripe is not None:
        fake_stripe.add_session(
            shop.paid_session(
                stored=False, session_id=purchase.checkout_session_id, payment_intent=purchase.payment_intent_id
            )
        )
    factories.GrantFactory(
        user_id=shop.customer.id,
        content_id=shop.content.id,
        organization_id=shop.org.id,
        source="purchase",
        purchase_id=purchase.id,
    )
    return purchase


# ---- the request ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "platform_owner"])
def test_manager_requests_refund(client, db_session, shop, sent_tasks, role) -> None:
    purchase = bought(shop)
    if role == "owner":
        caller = shop.owner
    elif role == "admin":
        caller = add_member(shop.org, role="admin")
    else:
        caller = factories.UserFactory(role="platform_owner")
    r = client.post(
        refund_url(shop, purchase.id), json={"reason": "  asked by customer  "}, headers=auth(signed_in(caller))
    )
    assert r.status_code == 202, r.json
    assert r.json["id"] == str(purchase.id) and r.json["refund_status"] == "requested"
    assert r.json["status"] == "completed" and r.json["refund_reason"] == "asked by customer"
    db_session.expire_all()
    row = db_session.get(Purchase, purchase.id)
    assert row.refund_requested_by == caller.id and row.refund_requested_at is not None and row.refund_attempts == 0
    audit = db_session.scalars(select(AdminAuditEvent).where(AdminAuditEvent.action == "refund.request")).one()
    assert audit.target_id == str(purchase.id) and audit.actor_user_id == caller.id
    assert audit.actor_role == ("platform_owner" if role == "platform_owner" else role)
    assert audit.metadata_["amount_cents"] == 1999
    assert sent_tasks == [("payments.submit_refund", (str(purchase.id),), None)]
    # Access stays until the refund event lands.
    grant = db_session.scalars(select(factories.ContentAccess)).one()
    assert grant.revoked_at is None


def test_empty_body_is_accepted(client, db_session, shop, sent_tasks) -> None:
    purchase = bought(shop)
    r = client.post(refund_url(shop, purchase.id), headers=auth(signed_in(shop.owner)))
    assert r.status_code == 202 and r.json["refund_reason"] is None


def test_second_request_is_409(client, db_session, shop, sent_tasks) -> None:
    purchase = bought(shop)
    token = signed_in(shop.owner)
    assert client.post(refund_url(shop, purchase.id), json={}, headers=auth(token)).status_code == 202
    r = client.post(refund_url(shop, purchase.id), json={}, headers=auth(token))
    assert r.status_code == 409 and r.json["error"]["code"] == "PURCHASE_NOT_REFUNDABLE"


@pytest.mark.parametrize(
    "values",
    [
        {"status": "refunded", "refunded_amount_cents": 1999, "refunded_at": datetime.now(UTC)},
        {"status": "charged_back"},
        {"refund_status": "submitted"},
        {"refund_status": "succeeded"},
    ],
)
def test_not_refundable(client, db_session, shop, sent_tasks, values) -> None:
    purchase = bought(shop, **values)
    r = client.post(refund_url(shop, purchase.id), json={}, headers=auth(signed_in(shop.owner)))
    assert r.status_code == 409 and r.json["error"]["code"] == "PURCHASE_NOT_REFUNDABLE"
    assert sent_tasks == []


def test_failed_refund_may_be_requested_again(client, db_session, shop, sent_tasks) -> None:
    purchase = bought(shop, refund_status="failed", refund_last_error="x", refund_attempts=5)
    r = client.post(refund_url(shop, purchase.id), json={}, headers=auth(signed_in(shop.owner)))
    assert r.status_code == 202
    db_session.expire_all()
    row = db_session.get(Purchase, purchase.id)
    assert (row.refund_attempts, row.refund_last_error) == (0, None)


def test_who_may_not(client, db_session, shop, sent_tasks) -> None:
    purchase = bought(shop)
    creator = add_member(shop.org, role="creator")
    r = client.post(refund_url(shop, purchase.id), json={}, headers=auth(signed_in(creator)))
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    r = client.post(refund_url(shop, purchase.id), json={}, headers=auth(signed_in(shop.customer)))
    assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"
    assert client.post(refund_url(shop, purchase.id), json={}).status_code == 401


def test_unknown_other_org_or_malformed_purchase_is_404(client, db_session, shop, sent_tasks) -> None:
    token = signed_in(shop.owner)
    other = factories.PurchaseFactory()  # another org's purchase
    for purchase_id in (uuid.uuid4(), other.id, "not-a-uuid"):
        r = client.post(refund_url(shop, purchase_id), json={}, headers=auth(token))
        assert r.status_code == 404 and r.json["error"]["code"] == "PURCHASE_NOT_FOUND"


def test_reason_validation(client, db_session, shop, sent_tasks) -> None:
    purchase = bought(shop)
    token = signed_in(shop.owner)
    r = client.post(refund_url(shop, purchase.id), json={"reason": "x" * 501}, headers=auth(token))
    assert r.status_code == 400 and "reason" in r.json["error"]["details"]
    r = client.post(refund_url(shop, purchase.id), json={"amount_cents": 5}, headers=auth(token))
    assert r.status_code == 400


# ---- submission ----------------------------------------------------------------------------------------


def requested(db_session: Any, purchase: Purchase, **values: Any) -> Purchase:
    db_session.execute(
        update(Purchase)
        .where(Purchase.id == purchase.id)
        .values(refund_status="requested", refund_requested_at=datetime(2025, 3, 2, 12, 0, tzinfo=UTC), **values)
    )
    db_session.expire_all()
    row = db_session.get(Purchase, purchase.id)
    assert row is not None
    return row


def run_submit(app: Any, db_session: Any, purchase: Purchase) -> str | None:
    with in_app(app, db_session):
        return submit(db_session, purchase.id)


def test_submit_with_stripe(app, db_session, shop, stripe_provider, fake_stripe, sent_tasks) -> None:
    purchase = requested(db_session, bought(shop, fake_stripe), refunded_amount_cents=499)
    assert run_submit(app, db_session, purchase) == "submitted"
    [sent] = fake_stripe.requests_to("POST", "/v1/refunds")
    epoch = int(datetime(2025, 3, 2, 12, 0, tzinfo=UTC).timestamp())
    assert sent.idempotency_key == f"refund:{purchase.id}:{epoch}"
    assert sent.params == {
        "payment_intent": purchase.payment_intent_id,
        "amount": "1500",  # the remaining amount
        "metadata": {"purchase_id": str(purchase.id)},
    }
    db_session.expire_all()
    row = db_session.get(Purchase, purchase.id)
    assert row.refund_status == "submitted" and row.provider_refund_id.startswith("re_")
    assert row.refund_attempts == 1 and row.status == "completed"  # refunded only when the event lands
    assert run_submit(app, db_session, purchase) is None  # nothing left to claim


def test_already_refunded_counts_as_submitted(app, db_session, shop, stripe_provider, fake_stripe, sent_tasks) -> None:
    purchase = requested(db_session, bought(shop, fake_stripe))
    fake_stripe.charge_for(purchase.payment_intent_id)["amount_refunded"] = 1999
    assert run_submit(app, db_session, purchase) == "submitted"


def test_rejected_refund_fails_and_may_be_requested_again(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    purchase = requested(db_session, bought(shop, fake_stripe))
    fake_stripe.fail_next("POST", "/v1/refunds", 400, code="charge_disputed")
    assert run_submit(app, db_session, purchase) == "failed"
    db_session.expire_all()
    row = db_session.get(Purchase, purchase.id)
    assert "InvalidRequestError" in row.refund_last_error


def test_transient_errors_retry_with_backoff_then_fail(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    purchase = requested(db_session, bought(shop, fake_stripe))
    for _ in range(5):
        fake_stripe.fail_next("POST", "/v1/refunds", 503)
    statuses = [run_submit(app, db_session, purchase) for _ in range(5)]
    assert statuses == ["requested"] * 4 + ["failed"]
    countdowns = [c for n, _, c in sent_tasks if n == "payments.submit_refund"]
    assert countdowns == [60, 120, 240, 480]
    keys = {r.idempotency_key for r in fake_stripe.requests_to("POST", "/v1/refunds")}
    assert len(keys) == 1  # one request, one key, whatever the retries


def test_local_refund_end_to_end(app, client, db_session, shop, local_provider, sent_tasks) -> None:
    token = signed_in(shop.customer)
    session_id = client.post("/api/v1/checkout", json={"content_id": str(shop.content.id)}, headers=auth(token)).json[
        "session_id"
    ]
    client.post(f"/payments/local/checkout/{session_id}/pay")
    process(app, db_session, "evt_local_" + session_id.removeprefix("cs_local_"))
    [purchase] = purchases(db_session)
    r = client.post(refund_url(shop, purchase.id), json={"reason": "test"}, headers=auth(signed_in(shop.owner)))
    assert r.status_code == 202
    assert run_submit(app, db_session, purchase) == "submitted"
    event = db_session.scalars(select(StripeEvent).where(StripeEvent.type == "charge.refunded")).one()
    assert ("payments.process_stripe_event", (event.id,), None) in sent_tasks
    assert process(app, db_session, event.id) == "processed"
    [purchase] = purchases(db_session)
    assert (purchase.status, purchase.refund_status, purchase.refunded_amount_cents) == ("refunded", "succeeded", 1999)
    grant = db_session.scalars(select(factories.ContentAccess)).one()
    assert grant.revoke_reason == "refund"


def test_duplicate_purchase_auto_refund_with_stripe(
    app, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    bought(shop, fake_stripe)
    second = fake_stripe.add_session(shop.paid_session())
    from tests.commerce.helpers import ingest_event

    process(app, db_session, ingest_event(app, db_session, so.event("checkout.session.completed", second)))
    duplicate = purchases(db_session, payment_intent_id=second["payment_intent"])[0]
    assert run_submit(app, db_session, duplicate) == "submitted"
    [sent] = fake_stripe.requests_to("POST", "/v1/refunds")
    assert sent.params["payment_intent"] == second["payment_intent"] and sent.params["amount"] == "1999"


def test_sweep_refunds(app, db_session, shop, sent_tasks) -> None:
    stale = bought(shop, refund_status="requested", refund_requested_at=datetime.now(UTC))
    other_shop_purchase = factories.PurchaseFactory(refund_status="requested", refund_requested_at=datetime.now(UTC))
    db_session.execute(
        update(Purchase).where(Purchase.id == stale.id).values(updated_at=datetime.now(UTC) - timedelta(minutes=2))
    )
    db_session.execute(
        update(Purchase)
        .where(Purchase.id == other_shop_purchase.id)
        .values(updated_at=datetime.now(UTC) + timedelta(minutes=1))
    )
    with in_app(app, db_session):
        assert refunds.sweep_refunds(db_session) == 1
        db_session.commit()
    assert sent_tasks == [("payments.submit_refund", (str(stale.id),), None)]
