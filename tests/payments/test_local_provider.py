"""The local provider: test checkout page, Pay/Cancel, signed events, refunds, production refusal."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from sqlalchemy import select

from app.commerce.models import CheckoutSession, StripeEvent
from app.payments import CheckoutRequest, TransientProviderError
from app.payments.local_provider import LocalProvider, session_record_key
from app.payments.signature import verify
from tests import factories
from tests.commerce.helpers import Shop, in_app, process, purchases
from tests.identity.helpers import count


def local_session(shop: Shop, **kwargs: object) -> CheckoutSession:
    hex_part = kwargs.pop("hex_part", "ab" * 16)
    session_id = f"cs_local_{hex_part}"
    values: dict[str, object] = {
        "id": session_id,
        "provider": "local",
        "customer_id": shop.customer.id,
        "content_id": shop.content.id,
        "organization_id": shop.org.id,
        "amount_cents": shop.content.price_cents,
        "url": f"http://localhost:5000/payments/local/checkout/{session_id}",
        "success_url": "http://localhost:3000/checkout/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://localhost:3000/checkout/cancelled?content_id=1",
    }
    values.update(kwargs)
    row: CheckoutSession = factories.CheckoutSessionFactory(**values)
    return row


def test_page_renders_title_price_and_buttons(client, db_session, shop, local_provider) -> None:
    row = local_session(shop)
    r = client.get(f"/payments/local/checkout/{row.id}")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "Knife Skills" in html and "$19.99" in html
    assert f'action="/payments/local/checkout/{row.id}/pay"' in html
    assert f'action="/payments/local/checkout/{row.id}/cancel"' in html
    assert r.headers["Content-Security-Policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self' http://localhost:3000; frame-ancestors 'none'; base-uri 'none'"
    )
    assert r.headers["X-Frame-Options"] == "DENY"


def test_page_escapes_the_title(client, db_session, shop, local_provider) -> None:
    shop.content.title = "<script>alert(1)</script>"
    db_session.flush()
    r = client.get(f"/payments/local/checkout/{local_session(shop).id}")
    assert "<script>alert(1)" not in r.get_data(as_text=True)


@pytest.mark.parametrize("case", ["unknown", "malformed", "expired_status", "past_expiry", "stripe_session"])
def test_page_is_404_unless_open_local_session(client, db_session, shop, local_provider, case) -> None:
    if case == "unknown":
        path = "cs_local_" + "0" * 32
    elif case == "malformed":
        path = "cs_local_xyz"
    elif case == "expired_status":
        path = local_session(shop, status="expired").id
    elif case == "past_expiry":
        path = local_session(shop, expires_at=datetime.now(UTC) - timedelta(seconds=1)).id
    else:
        path = factories.CheckoutSessionFactory(
            customer_id=shop.customer.id, content_id=shop.content.id, organization_id=shop.org.id
        ).id
    assert client.get(f"/payments/local/checkout/{path}").status_code == 404


def test_pages_do_not_exist_with_the_stripe_provider(client, db_session, shop, stripe_provider) -> None:
    row = local_session(shop)
    assert client.get(f"/payments/local/checkout/{row.id}").status_code == 404
    assert client.post(f"/payments/local/checkout/{row.id}/pay").status_code == 404
    assert count(db_session, StripeEvent) == 0


def test_pay_emits_a_signed_completed_event_and_redirects(
    app, client, db_session, shop, local_provider, sent_tasks
) -> None:
    row = local_session(shop)
    r = client.post(f"/payments/local/checkout/{row.id}/pay", content_type="application/x-www-form-urlencoded", data="")
    assert r.status_code == 303
    assert r.headers["Location"] == f"http://localhost:3000/checkout/success?session_id={row.id}"
    event = db_session.scalars(select(StripeEvent)).one()
    assert event.id == "evt_local_" + "ab" * 16 and event.source == "local" and event.status == "received"
    assert event.type == "checkout.session.completed" and event.livemode is False
    obj = event.payload["data"]["object"]
    assert obj["payment_status"] == "paid" and obj["payment_intent"] == "pi_local_" + "ab" * 16
    assert obj["amount_total"] == 1999 and obj["currency"] == "usd" and obj["metadata"] == shop.metadata()
    assert sent_tasks == [("payments.process_stripe_event", (event.id,), None)]

    # Paying again: no new event, same redirect.
    again = client.post(f"/payments/local/checkout/{row.id}/pay")
    assert again.status_code == 303 and count(db_session, StripeEvent) == 1

    assert process(app, db_session, event.id) == "processed"
    [purchase] = purchases(db_session)
    assert purchase.provider == "local" and purchase.amount_cents == 1999


def test_pay_event_is_signed_like_stripe(app, db_session, shop, local_provider, monkeypatch) -> None:
    captured = {}
    import app.commerce.webhooks as webhooks_module

    real_ingest = webhooks_module.ingest

    def spy(session, body, signature, *, source="webhook"):
        captured["body"], captured["signature"] = body, signature
        return real_ingest(session, body, signature, source=source)

    monkeypatch.setattr(webhooks_module, "ingest", spy)
    row = local_session(shop)
    with in_app(app, db_session):
        local_provider.pay(row.id)
    assert verify(captured["body"], captured["signature"], ["whsec_codex_local"])
    assert captured["signature"].startswith("t=") and ",v1=" in captured["signature"]


def test_pay_on_expired_session_is_409(client, db_session, shop, local_provider) -> None:
    row = local_session(shop, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    r = client.post(f"/payments/local/checkout/{row.id}/pay")
    assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT"
    assert count(db_session, StripeEvent) == 0


def test_cancel_redirects_without_event(client, db_session, shop, local_provider) -> None:
    row = local_session(shop)
    r = client.post(f"/payments/local/checkout/{row.id}/cancel")
    assert r.status_code == 303 and r.headers["Location"] == row.cancel_url
    assert count(db_session, StripeEvent) == 0


def test_local_refund_emits_signed_charge_refunded(app, client, db_session, shop, local_provider, sent_tasks) -> None:
    row = local_session(shop)
    client.post(f"/payments/local/checkout/{row.id}/pay")
    process(app, db_session, "evt_local_" + "ab" * 16)
    [purchase] = purchases(db_session)
    with in_app(app, db_session):
        result = local_provider.create_refund(
            payment_intent_id=purchase.payment_intent_id,
            amount_cents=1999,
            metadata={"purchase_id": str(purchase.id)},
            idempotency_key="refund:x:1",
        )
        db_session.commit()
    assert result.refund_id.startswith("re_local_") and result.status == "succeeded"
    refund_event = db_session.scalars(select(StripeEvent).where(StripeEvent.type == "charge.refunded")).one()
    charge = refund_event.payload["data"]["object"]
    assert charge["amount_refunded"] == 1999 and charge["refunded"] is True
    assert charge["payment_intent"] == purchase.payment_intent_id and refund_event.source == "local"
    assert process(app, db_session, refund_event.id) == "processed"
    [purchase] = purchases(db_session)
    assert purchase.status == "refunded"


def test_session_object_and_lookups(app, db_session, shop, local_provider) -> None:
    row = local_session(shop)
    with in_app(app, db_session):
        obj = local_provider.retrieve_checkout_session(row.id)
        assert (obj["status"], obj["payment_status"], obj["payment_intent"]) == ("open", "unpaid", None)
        assert local_provider.find_session_for_payment_intent("pi_local_" + "ab" * 16) is None
        local_provider.pay(row.id)
        obj = local_provider.retrieve_checkout_session(row.id)
        assert (obj["status"], obj["payment_status"]) == ("complete", "paid")
        assert local_provider.find_session_for_payment_intent(obj["payment_intent"])["id"] == row.id
        assert local_provider.payment_intent_for_charge("ch_local_" + "ab" * 16) == obj["payment_intent"]
        assert list(local_provider.list_recent_complete_sessions(datetime.now(UTC))) == []
        assert local_provider.retrieve_checkout_session("cs_test_other") is None


def _request(shop: Shop) -> CheckoutRequest:
    return CheckoutRequest(
        amount_cents=1999,
        currency="usd",
        product_name="Knife Skills",
        customer_email=shop.customer.email,
        client_reference_id=str(shop.customer.id),
        metadata=shop.metadata(),
        success_url="http://localhost:3000/ok?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://localhost:3000/cancel",
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
        idempotency_key="checkout:1",
    )


def test_created_session_is_read_back_without_its_row(app, db_session, shop, local_provider, redis) -> None:
    """The provider's own record answers when the row was never stored; a completion event makes it paid."""
    with in_app(app, db_session):
        created = local_provider.create_checkout_session(_request(shop))
        session_id = created["id"]
        assert db_session.get(CheckoutSession, session_id) is None
        obj = local_provider.retrieve_checkout_session(session_id)
        assert (obj["status"], obj["payment_status"], obj["payment_intent"]) == ("open", "unpaid", None)
        assert (obj["amount_total"], obj["currency"], obj["metadata"]) == (1999, "usd", shop.metadata())
        assert obj["url"] == created["url"] and "customer_email" not in obj  # no PII in the record
        assert 0 < redis.ttl(session_record_key(session_id)) - 30 * 86400 <= 30 * 60
        factories.StripeEventFactory(object_id=session_id, type="checkout.session.completed")
        obj = local_provider.retrieve_checkout_session(session_id)
        hex_part = session_id.removeprefix("cs_local_")
        assert (obj["status"], obj["payment_status"], obj["payment_intent"]) == (
            "complete",
            "paid",
            f"pi_local_{hex_part}",
        )
        assert local_provider.retrieve_checkout_session("cs_local_" + "0" * 32) is None


def test_unreachable_record_store_is_transient(app, db_session, shop, local_provider, monkeypatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setitem(app.extensions, "redis", redis_lib.Redis(port=port, socket_connect_timeout=0.5))
    with in_app(app, db_session):
        with pytest.raises(TransientProviderError):
            local_provider.create_checkout_session(_request(shop))
        with pytest.raises(TransientProviderError):
            local_provider.retrieve_checkout_session("cs_local_" + "0" * 32)


def test_local_provider_refuses_production(app) -> None:
    with pytest.raises(RuntimeError, match="production"):
        LocalProvider({**app.config, "APP_ENV": "production"})
