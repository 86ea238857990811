"""POST /api/v1/checkout, GET /api/v1/checkout/sessions/{id}, GET /api/v1/me/purchases (api.md §9)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.commerce.models import CheckoutSession, StripeEvent
from app.orgs.models import OrgSettings
from tests import factories
from tests.commerce.helpers import Shop, process
from tests.identity.helpers import add_member, auth, count, signed_in

CHECKOUT = "/api/v1/checkout"


def buy(client: Any, shop: Shop, token: str | None = None, **body: Any) -> Any:
    token = token or signed_in(shop.customer)
    return client.post(CHECKOUT, json={"content_id": str(shop.content.id), **body}, headers=auth(token))


# ---- creation -------------------------------------------------------------------------------------------


def test_checkout_with_local_provider(client, db_session, shop, local_provider) -> None:
    r = buy(client, shop)
    assert r.status_code == 201, r.json
    body = r.json
    assert set(body) == {"checkout_url", "session_id", "expires_at"}
    assert body["session_id"].startswith("cs_local_") and len(body["session_id"]) == len("cs_local_") + 32
    assert body["checkout_url"] == f"http://localhost:5000/payments/local/checkout/{body['session_id']}"
    assert body["expires_at"].endswith("Z")
    row = db_session.get(CheckoutSession, body["session_id"])
    assert (row.provider, row.status, row.payment_status, row.amount_cents, row.currency) == (
        "local",
        "open",
        "unpaid",
        1999,
        "usd",
    )
    assert row.success_url == "http://localhost:3000/checkout/success?session_id={CHECKOUT_SESSION_ID}"
    assert row.cancel_url == f"http://localhost:3000/checkout/cancelled?content_id={shop.content.id}"
    assert timedelta(minutes=29) < row.expires_at - datetime.now(UTC) <= timedelta(minutes=30)


def test_checkout_with_stripe_sends_database_price_metadata_and_key(
    client, db_session, shop, stripe_provider, fake_stripe
) -> None:
    token = signed_in(shop.customer)
    r = buy(client, shop, token, success_url="http://localhost:3000/thanks?x=1")
    assert r.status_code == 201
    [sent] = fake_stripe.requests_to("POST", "/v1/checkout/sessions")
    p = sent.params
    assert p["line_items"][0]["price_data"]["unit_amount"] == "1999"  # from the database
    assert p["line_items"][0]["price_data"]["product_data"]["name"] == "Knife Skills"
    assert p["metadata"] == shop.metadata() == p["payment_intent_data"]["metadata"]
    assert p["customer_email"] == shop.customer.email and p["client_reference_id"] == str(shop.customer.id)
    assert p["success_url"] == "http://localhost:3000/thanks?x=1&session_id={CHECKOUT_SESSION_ID}"
    bucket = int(time.time()) // 600
    assert sent.idempotency_key in {
        f"checkout:{shop.customer.id}:{shop.content.id}:1999:{b}" for b in (bucket - 1, bucket)
    }
    assert r.json["checkout_url"].startswith("https://checkout.stripe.com/")
    assert db_session.get(CheckoutSession, r.json["session_id"]).provider == "stripe"


def test_open_session_is_reused(client, db_session, shop, stripe_provider, fake_stripe) -> None:
    token = signed_in(shop.customer)
    first = buy(client, shop, token).json
    again = buy(client, shop, token)
    assert again.status_code == 201 and again.json == first
    assert len(fake_stripe.requests_to("POST", "/v1/checkout/sessions")) == 1
    # Other redirect URLs in the same 10-minute window: not reused; Stripe refuses the spec's key
    # with other parameters, so the second call goes out under a key that names them.
    other = buy(client, shop, token, cancel_url="http://localhost:3000/elsewhere")
    assert other.status_code == 201 and other.json["session_id"] != first["session_id"]
    keys = [r.idempotency_key for r in fake_stripe.requests_to("POST", "/v1/checkout/sessions")]
    assert len(keys) == 3 and keys[1] == keys[0] and keys[2].startswith(keys[0] + ":")
    assert count(db_session, CheckoutSession) == 2


def test_session_with_less_than_five_minutes_left_is_not_reused(client, db_session, shop, local_provider) -> None:
    token = signed_in(shop.customer)
    first = buy(client, shop, token).json
    db_session.execute(
        update(CheckoutSession)
        .where(CheckoutSession.id == first["session_id"])
        .values(expires_at=datetime.now(UTC) + timedelta(minutes=4))
    )
    second = buy(client, shop, token).json
    assert second["session_id"] != first["session_id"]


def test_price_change_is_not_reused(client, db_session, shop, local_provider) -> None:
    token = signed_in(shop.customer)
    first = buy(client, shop, token).json
    shop.content.price_cents = 2999
    db_session.flush()
    second = buy(client, shop, token).json
    assert second["session_id"] != first["session_id"]
    assert db_session.get(CheckoutSession, second["session_id"]).amount_cents == 2999


def test_given_success_url_with_placeholder_is_kept(client, db_session, shop, local_provider) -> None:
    url = "http://localhost:3000/done/{CHECKOUT_SESSION_ID}"
    r = buy(client, shop, success_url=url)
    assert db_session.get(CheckoutSession, r.json["session_id"]).success_url == url


@pytest.mark.parametrize(
    "field,value",
    [
        ("success_url", "https://evil.example.com/x"),
        ("success_url", "javascript:alert(1)"),
        ("cancel_url", "http://user:pw@localhost:3000/x"),
        ("cancel_url", "/relative"),
        ("success_url", "http://localhost:3000/" + "a" * 2000),
        ("success_url", 5),
    ],
)
def test_bad_redirect_urls_are_400(client, db_session, shop, local_provider, field, value) -> None:
    r = buy(client, shop, **{field: value})
    assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR"
    assert field in r.json["error"]["details"]
    assert count(db_session, CheckoutSession) == 0


def test_cors_origin_redirect_is_allowed(app, client, db_session, shop, local_provider, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "CORS_ORIGINS", ["http://localhost:3000", "https://shop.example.com"])
    r = buy(client, shop, cancel_url="https://shop.example.com/back")
    assert r.status_code == 201


def test_unknown_field_and_bad_uuid(client, db_session, shop, local_provider) -> None:
    token = signed_in(shop.customer)
    r = client.post(CHECKOUT, json={"content_id": str(shop.content.id), "price_cents": 1}, headers=auth(token))
    assert r.status_code == 400 and "price_cents" in r.json["error"]["details"]
    r = client.post(CHECKOUT, json={"content_id": "nope"}, headers=auth(token))
    assert r.status_code == 400 and "content_id" in r.json["error"]["details"]


def test_unauthenticated_is_401(client, db_session, shop) -> None:
    r = client.post(CHECKOUT, json={"content_id": str(shop.content.id)})
    assert r.status_code == 401


# ---- rules, in the spec's order --------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["missing", "draft", "archived", "deleted"])
def test_content_must_be_published(client, db_session, shop, local_provider, state) -> None:
    if state == "missing":
        shop.content.id  # noqa: B018
        token = signed_in(shop.customer)
        r = client.post(CHECKOUT, json={"content_id": "00000000-0000-4000-8000-000000000000"}, headers=auth(token))
    else:
        if state == "deleted":
            shop.content.deleted_at = datetime.now(UTC)
        else:
            shop.content.status = state
        db_session.flush()
        r = buy(client, shop)
    assert r.status_code == 404 and r.json["error"]["code"] == "CONTENT_NOT_FOUND"


def test_email_must_be_verified(client, db_session, shop, local_provider) -> None:
    shop.customer.email_verified_at = None
    db_session.flush()
    r = buy(client, shop)
    assert r.status_code == 403 and r.json["error"]["code"] == "EMAIL_NOT_VERIFIED"


def test_purchases_disabled(client, db_session, shop, local_provider) -> None:
    db_session.execute(
        update(OrgSettings).where(OrgSettings.organization_id == shop.org.id).values(enable_purchases=False)
    )
    r = buy(client, shop)
    assert r.status_code == 403 and r.json["error"]["code"] == "PURCHASES_DISABLED"


def test_free_content(client, db_session, shop, local_provider) -> None:
    free = factories.PaidContentFactory(organization_id=shop.org.id, created_by=shop.owner.id, price_cents=0)
    r = client.post(CHECKOUT, json={"content_id": str(free.id)}, headers=auth(signed_in(shop.customer)))
    assert r.status_code == 400 and r.json["error"]["code"] == "CONTENT_IS_FREE"


@pytest.mark.parametrize("role", ["owner", "admin", "creator", "platform_owner"])
def test_staff_already_have_access(client, db_session, shop, local_provider, role) -> None:
    if role == "owner":
        user = shop.owner
    elif role == "platform_owner":
        user = factories.UserFactory(role="platform_owner", email_verified_at=datetime.now(UTC))
    else:
        user = add_member(shop.org, factories.UserFactory(email_verified_at=datetime.now(UTC)), role=role)
    r = buy(client, shop, signed_in(user))
    assert r.status_code == 409 and r.json["error"]["code"] == "ALREADY_HAS_ACCESS"


def test_already_purchased(client, db_session, shop, local_provider) -> None:
    factories.PurchaseFactory(customer_id=shop.customer.id, content=shop.content)
    r = buy(client, shop)
    assert r.status_code == 409 and r.json["error"]["code"] == "ALREADY_PURCHASED"


def test_refunded_purchase_allows_buying_again(client, db_session, shop, local_provider) -> None:
    factories.PurchaseFactory(
        customer_id=shop.customer.id,
        content=shop.content,
        status="refunded",
        refunded_amount_cents=1999,
        refunded_at=datetime.now(UTC),
    )
    assert buy(client, shop).status_code == 201


def test_active_complimentary_grant(client, db_session, shop, local_provider) -> None:
    factories.GrantFactory(user_id=shop.customer.id, content_id=shop.content.id, organization_id=shop.org.id)
    r = buy(client, shop)
    assert r.status_code == 409 and r.json["error"]["code"] == "ALREADY_HAS_ACCESS"


def test_order_purchased_before_grant_and_disabled_before_free(client, db_session, shop, local_provider) -> None:
    factories.PurchaseFactory(customer_id=shop.customer.id, content=shop.content)
    factories.GrantFactory(user_id=shop.customer.id, content_id=shop.content.id, organization_id=shop.org.id)
    assert buy(client, shop).json["error"]["code"] == "ALREADY_PURCHASED"
    shop.customer.email_verified_at = None
    db_session.execute(
        update(OrgSettings).where(OrgSettings.organization_id == shop.org.id).values(enable_purchases=False)
    )
    db_session.flush()
    assert buy(client, shop).json["error"]["code"] == "EMAIL_NOT_VERIFIED"


def test_provider_down_is_503(client, db_session, shop, stripe_provider, fake_stripe) -> None:
    fake_stripe.fail_next("POST", "/v1/checkout/sessions", 500)
    r = buy(client, shop)
    assert r.status_code == 503
    assert r.json["error"]["details"] == {"dependency": "payment_provider"}
    assert count(db_session, CheckoutSession) == 0


def test_checkout_rate_limit_is_per_user(app_factory, db_session, shop) -> None:
    from tests.identity.conftest import bound_client

    limited = app_factory(RATELIMIT_ENABLED=True)
    with bound_client(limited, db_session) as limited_client:
        r = buy(limited_client, shop)
        assert r.status_code == 201 and r.headers["X-RateLimit-Limit"] == "10"


# ---- session status --------------------------------------------------------------------------------------


def status_of(client: Any, token: str, session_id: str) -> Any:
    return client.get(f"/api/v1/checkout/sessions/{session_id}", headers=auth(token))


def test_status_of_open_session_asks_the_provider(client, db_session, shop, stripe_provider, fake_stripe) -> None:
    token = signed_in(shop.customer)
    created = buy(client, shop, token).json
    r = status_of(client, token, created["session_id"])
    assert r.status_code == 200
    assert r.json == {
        "session_id": created["session_id"],
        "status": "open",
        "payment_status": "unpaid",
        "content_id": str(shop.content.id),
        "amount_cents": 1999,
        "currency": "usd",
        "expires_at": created["expires_at"],
        "purchase": None,
        "pending_fulfilment": False,
    }
    assert len(fake_stripe.requests_to("GET", f"/v1/checkout/sessions/{created['session_id']}")) == 1


def test_paid_at_provider_without_purchase_is_pending_and_reconciled(
    app, client, db_session, shop, stripe_provider, fake_stripe, sent_tasks
) -> None:
    token = signed_in(shop.customer)
    session_id = buy(client, shop, token).json["session_id"]
    fake_stripe.complete_session(session_id, payment_intent="pi_status_1")
    r = status_of(client, token, session_id)
    assert r.json["status"] == "complete" and r.json["payment_status"] == "paid"
    assert r.json["pending_fulfilment"] is True and r.json["purchase"] is None
    recon = db_session.get(StripeEvent, f"recon_{session_id}")
    assert recon is not None and recon.source == "reconcile" and recon.status == "received"
    assert recon.payment_intent_id == "pi_status_1"
    assert ("payments.process_stripe_event", (recon.id,), None) in sent_tasks
    status_of(client, token, session_id)  # polling again does not add events
    assert count(db_session, StripeEvent) == 1

    assert process(app, db_session, recon.id) == "processed"
    r = status_of(client, token, session_id)
    assert r.json["pending_fulfilment"] is False
    assert r.json["status"] == "complete" and r.json["purchase"]["amount_cents"] == 1999
    assert r.json["purchase"]["status"] == "completed"
    assert len(fake_stripe.requests_to("GET", f"/v1/checkout/sessions/{session_id}")) == 2  # not asked once complete


def test_status_falls_back_to_the_row_when_provider_fails(
    client, db_session, shop, stripe_provider, fake_stripe
) -> None:
    token = signed_in(shop.customer)
    session_id = buy(client, shop, token).json["session_id"]
    fake_stripe.fail_next("GET", "/v1/checkout/sessions/", 500)
    r = status_of(client, token, session_id)
    assert r.status_code == 200 and r.json["status"] == "open"


def test_status_local_flow(app, client, db_session, shop, local_provider, sent_tasks) -> None:
    token = signed_in(shop.customer)
    session_id = buy(client, shop, token).json["session_id"]
    client.post(f"/payments/local/checkout/{session_id}/pay")
    pending = status_of(client, token, session_id).json
    assert pending["pending_fulfilment"] is True
    process(app, db_session, "evt_local_" + session_id.removeprefix("cs_local_"))
    done = status_of(client, token, session_id).json
    assert done["pending_fulfilment"] is False and done["purchase"]["status"] == "completed"
    assert done["payment_status"] == "paid"


@pytest.mark.parametrize("session_id", ["cs_test_unknown", "not-a-session", "cs_" + "a" * 251])
def test_status_unknown_or_malformed_is_404(client, db_session, shop, session_id) -> None:
    r = status_of(client, signed_in(shop.customer), session_id)
    assert r.status_code == 404 and r.json["error"]["code"] == "CHECKOUT_SESSION_NOT_FOUND"


def test_status_of_someone_elses_session_is_404(client, db_session, shop, local_provider) -> None:
    session_id = buy(client, shop).json["session_id"]
    other = factories.UserFactory()
    r = status_of(client, signed_in(other), session_id)
    assert r.status_code == 404 and r.json["error"]["code"] == "CHECKOUT_SESSION_NOT_FOUND"


# ---- my purchases ----------------------------------------------------------------------------------------


def test_me_purchases_lists_own_newest_first_with_content(app, client, db_session, shop, sent_tasks) -> None:
    second_content = factories.PaidContentFactory(organization_id=shop.org.id, created_by=shop.owner.id, title="Two")
    first = factories.PurchaseFactory(
        customer_id=shop.customer.id, content=shop.content, purchased_at=datetime.now(UTC) - timedelta(days=1)
    )
    second = factories.PurchaseFactory(
        customer_id=shop.customer.id,
        content=second_content,
        status="refunded",
        refunded_amount_cents=1999,
        refunded_at=datetime.now(UTC),
    )
    factories.PurchaseFactory(content=shop.content)  # someone else's
    token = signed_in(shop.customer)
    r = client.get("/api/v1/me/purchases", headers=auth(token))
    assert r.status_code == 200
    assert (r.json["total"], r.json["page"], r.json["per_page"], r.json["pages"]) == (2, 1, 20, 1)
    assert [i["id"] for i in r.json["items"]] == [str(second.id), str(first.id)]
    item = r.json["items"][1]
    assert set(item) == {
        "id", "customer_id", "content_id", "organization_id", "amount_cents", "currency", "status", "is_duplicate",
        "refunded_amount_cents", "refund_status", "refund_reason", "purchased_at", "refunded_at", "disputed_at",
        "dispute_status", "content",
    }  # fmt: skip
    assert item["content"] == {
        "id": str(shop.content.id),
        "title": "Knife Skills",
        "slug": shop.content.slug,
        "content_type": "video",
        "thumbnail_url": None,
    }
    filtered = client.get("/api/v1/me/purchases?status=refunded", headers=auth(token)).json
    assert [i["id"] for i in filtered["items"]] == [str(second.id)]
    assert client.get("/api/v1/me/purchases?status=nope", headers=auth(token)).status_code == 400
    assert client.get("/api/v1/me/purchases?per_page=101", headers=auth(token)).status_code == 400
    assert client.get("/api/v1/me/purchases?sort=x", headers=auth(token)).status_code == 400
    assert client.get("/api/v1/me/purchases").status_code == 401
