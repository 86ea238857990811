"""The Stripe provider (official SDK) against the fake Stripe API over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.payments import CheckoutRequest, PermanentProviderError, TransientProviderError
from app.payments.stripe_provider import StripeProvider
from tests.commerce.conftest import TEST_KEY
from tests.fakes import stripe_objects as so
from tests.fakes.stripe_api import decode_form


def request(**overrides: object) -> CheckoutRequest:
    values: dict[str, object] = {
        "amount_cents": 1999,
        "currency": "usd",
        "product_name": "Knife Skills",
        "customer_email": "ana@example.com",
        "client_reference_id": "u-1",
        "metadata": {"customer_id": "u-1", "content_id": "c-1", "organization_id": "o-1"},
        "success_url": "http://localhost:3000/ok?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://localhost:3000/cancel",
        "expires_at": datetime.now(UTC) + timedelta(minutes=30),
        "idempotency_key": "checkout:u-1:c-1:1999:1",
    }
    values.update(overrides)
    return CheckoutRequest(**values)  # type: ignore[arg-type]


def test_decode_form_matches_stripe_encoding() -> None:
    pairs = [("line_items[0][price_data][currency]", "usd"), ("line_items[0][quantity]", "1"), ("metadata[a]", "b")]
    assert decode_form(pairs) == {
        "line_items": [{"price_data": {"currency": "usd"}, "quantity": "1"}],
        "metadata": {"a": "b"},
    }


def test_create_checkout_session_sends_spec_params(stripe_provider: StripeProvider, fake_stripe) -> None:
    req = request()
    created = stripe_provider.create_checkout_session(req)
    assert created["id"].startswith("cs_test_") and created["url"].startswith("https://checkout.stripe.com/")
    assert created["amount_total"] == 1999 and created["status"] == "open"
    [sent] = fake_stripe.requests
    assert sent.method == "POST" and sent.path == "/v1/checkout/sessions"
    assert sent.idempotency_key == "checkout:u-1:c-1:1999:1"
    assert sent.headers["stripe-version"] == "2024-06-20"
    assert sent.headers["authorization"] == f"Bearer {TEST_KEY}"
    p = sent.params
    assert p["mode"] == "payment" and p["customer_email"] == "ana@example.com" and p["client_reference_id"] == "u-1"
    assert p["line_items"] == [
        {
            "quantity": "1",
            "price_data": {"currency": "usd", "unit_amount": "1999", "product_data": {"name": "Knife Skills"}},
        }
    ]
    assert p["metadata"] == dict(req.metadata) == p["payment_intent_data"]["metadata"]
    assert p["expires_at"] == str(int(req.expires_at.timestamp()))
    assert p["success_url"] == req.success_url


def test_same_idempotency_key_replays_the_same_session(stripe_provider, fake_stripe) -> None:
    req = request()
    first = stripe_provider.create_checkout_session(req)
    again = stripe_provider.create_checkout_session(req)
    assert first["id"] == again["id"] and len(fake_stripe.state.sessions) == 1


def test_retrieve_and_missing(stripe_provider, fake_stripe) -> None:
    created = stripe_provider.create_checkout_session(request())
    assert stripe_provider.retrieve_checkout_session(created["id"])["status"] == "open"
    fake_stripe.complete_session(created["id"], payment_intent="pi_123")
    obj = stripe_provider.retrieve_checkout_session(created["id"])
    assert (obj["status"], obj["payment_status"], obj["payment_intent"]) == ("complete", "paid", "pi_123")
    assert stripe_provider.retrieve_checkout_session("cs_test_missing") is None


def test_retrieve_serves_only_sessions_the_account_holds(stripe_provider, fake_stripe) -> None:
    """``GET /v1/checkout/sessions/{id}`` as Stripe answers it: the session as created, nothing
    the fake keeps for itself; another account's or a made-up id is a 404 (None)."""
    created = stripe_provider.create_checkout_session(request())
    obj = stripe_provider.retrieve_checkout_session(created["id"])
    assert obj == created and not any(key.startswith("_") for key in obj)
    assert (obj["amount_total"], obj["currency"], obj["metadata"]) == (1999, "usd", request().metadata)
    assert stripe_provider.retrieve_checkout_session(so.stripe_id("cs_test_a1", 56)) is None


def test_find_session_for_payment_intent(stripe_provider, fake_stripe) -> None:
    obj = fake_stripe.add_session(so.checkout_session(metadata={"customer_id": "x"}, payment_intent="pi_find"))
    assert stripe_provider.find_session_for_payment_intent("pi_find")["id"] == obj["id"]
    assert stripe_provider.find_session_for_payment_intent("pi_other") is None


def test_list_recent_complete_sessions_auto_paginates(stripe_provider, fake_stripe) -> None:
    now = so.now()
    for i in range(23):
        fake_stripe.add_session(so.checkout_session(metadata={}, created=now - i))
    fake_stripe.add_session(so.checkout_session(metadata={}, created=now - 80 * 3600))  # too old
    fake_stripe.add_session(so.checkout_session(metadata={}, status="open", payment_status="unpaid"))
    since = datetime.now(UTC) - timedelta(hours=72)
    listed = list(stripe_provider.list_recent_complete_sessions(since))
    assert len(listed) == 23 and len({s["id"] for s in listed}) == 23
    pages = fake_stripe.requests_to("GET", "/v1/checkout/sessions")
    assert len(pages) == 3
    assert (
        pages[0].params["created"] == {"gte": str(int(since.timestamp()))} and pages[0].params["status"] == "complete"
    )
    assert pages[1].params["starting_after"] == listed[9]["id"]


def test_refund_and_already_refunded(stripe_provider, fake_stripe) -> None:
    fake_stripe.add_session(so.checkout_session(metadata={}, payment_intent="pi_ref", amount_total=1999))
    result = stripe_provider.create_refund(
        payment_intent_id="pi_ref", amount_cents=1999, metadata={"purchase_id": "p1"}, idempotency_key="refund:p1:1"
    )
    assert result.refund_id.startswith("re_") and result.status == "succeeded"
    [sent] = fake_stripe.requests_to("POST", "/v1/refunds")
    assert sent.params == {"payment_intent": "pi_ref", "amount": "1999", "metadata": {"purchase_id": "p1"}}
    assert sent.idempotency_key == "refund:p1:1"
    # The same key replays the same refund; a new key on a refunded charge is "already refunded".
    again = stripe_provider.create_refund(
        payment_intent_id="pi_ref", amount_cents=1999, metadata={"purchase_id": "p1"}, idempotency_key="refund:p1:1"
    )
    assert again.refund_id == result.refund_id
    with pytest.raises(PermanentProviderError) as info:
        stripe_provider.create_refund(
            payment_intent_id="pi_ref", amount_cents=1999, metadata={}, idempotency_key="refund:p1:2"
        )
    assert info.value.already_refunded and info.value.status == 400


def test_server_errors_are_transient_and_retried_by_the_sdk(stripe_provider, fake_stripe) -> None:
    fake_stripe.fail_next("POST", "/v1/checkout/sessions", 500, retryable=True)
    created = stripe_provider.create_checkout_session(request())  # the SDK's retry succeeds
    assert created["id"].startswith("cs_test_")
    attempts = fake_stripe.requests_to("POST", "/v1/checkout/sessions")
    assert len(attempts) == 2 and attempts[0].idempotency_key == attempts[1].idempotency_key


def test_error_classification(stripe_provider, fake_stripe) -> None:
    fake_stripe.fail_next("POST", "/v1/checkout/sessions", 503)
    with pytest.raises(TransientProviderError):
        stripe_provider.create_checkout_session(request())
    fake_stripe.fail_next("POST", "/v1/checkout/sessions", 429, code="rate_limit")
    with pytest.raises(TransientProviderError):
        stripe_provider.create_checkout_session(request())
    fake_stripe.fail_next("POST", "/v1/checkout/sessions", 400, code="parameter_invalid_integer")
    with pytest.raises(PermanentProviderError) as info:
        stripe_provider.create_checkout_session(request())
    assert info.value.code == "parameter_invalid_integer"
    assert TEST_KEY not in str(info.value)


def test_unreachable_api_is_transient() -> None:
    from tests.conftest import free_port

    provider = StripeProvider(TEST_KEY, api_base=f"http://127.0.0.1:{free_port()}", api_version="2024-06-20")
    provider.client._requestor._options.max_network_retries = 0  # type: ignore[attr-defined]
    with pytest.raises(TransientProviderError):
        provider.retrieve_checkout_session("cs_test_x")


def test_livemode_follows_the_key() -> None:
    assert StripeProvider("sk_live_x", api_base="http://x", api_version="v").livemode is True
    assert StripeProvider("sk_test_x", api_base="http://x", api_version="v").livemode is False
