"""Stripe objects and events in their real JSON shape (API version 2024-06-20), plus signing.

The builders fill every field Stripe sends (copied from real test-mode payloads, ids and
amounts replaced) so the pipeline is exercised against what Stripe actually delivers, not a
trimmed-down dict. ``signed(event)`` returns the exact body bytes and the ``Stripe-Signature``
header Stripe would send (``t=…,v1=HMAC-SHA256(secret, "{t}.{body}")``).
"""

from __future__ import annotations

import json
import secrets
import string
import time
from typing import Any

from app.payments.signature import sign

API_VERSION = "2024-06-20"
DEFAULT_SECRET = "whsec_codex_local"
_ALNUM = string.ascii_letters + string.digits


def stripe_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def now() -> int:
    return int(time.time())


def checkout_session(
    *,
    metadata: dict[str, str],
    amount_total: int = 1999,
    currency: str = "usd",
    session_id: str | None = None,
    payment_intent: str | None = None,
    payment_status: str = "paid",
    status: str = "complete",
    mode: str = "payment",
    customer_email: str = "ana@example.com",
    created: int | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A ``checkout.session`` object as Stripe sends it in ``data.object``."""
    created = created or now() - 60
    session_id = session_id or stripe_id("cs_test_a1", 56)
    if payment_intent is None and payment_status == "paid":
        payment_intent = stripe_id("pi_3Q")
    return {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": None,
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": "http://localhost:3000/checkout/cancelled?content_id=" + metadata.get("content_id", ""),
        "client_reference_id": metadata.get("customer_id"),
        "client_secret": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_creation": "if_required",
        "customer_details": {
            "address": {
                "city": None,
                "country": "FR",
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": customer_email,
            "name": "Ana Test",
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        "customer_email": customer_email,
        "expires_at": created + 1800,
        "invoice": None,
        "invoice_creation": {
            "enabled": False,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": None,
                "metadata": {},
                "rendering_options": None,
            },
        },
        "livemode": livemode,
        "locale": None,
        "metadata": metadata,
        "mode": mode,
        "payment_intent": payment_intent,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "payment_status": payment_status,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_details": None,
        "shipping_options": [],
        "status": status,
        "submit_type": None,
        "subscription": None,
        "success_url": "http://localhost:3000/checkout/success?session_id={CHECKOUT_SESSION_ID}",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": None if status != "open" else f"https://checkout.stripe.com/c/pay/{session_id}",
    }


def charge(
    *,
    payment_intent: str,
    amount: int = 1999,
    amount_refunded: int = 0,
    currency: str = "usd",
    charge_id: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A ``charge`` object (``refunds`` is not included since API version 2022-11-15)."""
    created = now() - 120
    charge_id = charge_id or stripe_id("ch_3Q")
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": stripe_id("txn_3Q"),
        "billing_details": {
            "address": {
                "city": None,
                "country": "FR",
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": "ana@example.com",
            "name": "Ana Test",
            "phone": None,
        },
        "calculated_statement_descriptor": "CODEX",
        "captured": True,
        "created": created,
        "currency": currency,
        "customer": None,
        "description": None,
        "destination": None,
        "dispute": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "invoice": None,
        "livemode": livemode,
        "metadata": {},
        "on_behalf_of": None,
        "order": None,
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 42,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": payment_intent,
        "payment_method": stripe_id("pm_1Q"),
        "payment_method_details": {
            "card": {
                "amount_authorized": amount,
                "brand": "visa",
                "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
                "country": "US",
                "exp_month": 12,
                "exp_year": 2034,
                "funding": "credit",
                "last4": "4242",
                "network": "visa",
                "three_d_secure": None,
                "wallet": None,
            },
            "type": "card",
        },
        "radar_options": {},
        "receipt_email": "ana@example.com",
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{charge_id}",
        "refunded": amount_refunded >= amount,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def dispute(
    *,
    payment_intent: str | None,
    charge_id: str | None = None,
    status: str = "needs_response",
    amount: int = 1999,
    currency: str = "usd",
    dispute_id: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    created = now() - 30
    return {
        "id": dispute_id or stripe_id("dp_1Q"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge_id or stripe_id("ch_3Q"),
        "created": created,
        "currency": currency,
        "evidence": {
            "access_activity_log": None,
            "billing_address": None,
            "cancellation_policy": None,
            "customer_email_address": None,
            "customer_name": None,
            "product_description": None,
            "receipt": None,
            "uncategorized_text": None,
        },
        "evidence_details": {
            "due_by": created + 7 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": status == "needs_response",
        "livemode": livemode,
        "metadata": {},
        "payment_intent": payment_intent,
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4"},
            "type": "card",
        },
        "reason": "fraudulent",
        "status": status,
    }


def event(
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
    livemode: bool | None = None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event envelope Stripe POSTs to the webhook endpoint."""
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or stripe_id("evt_1Q"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created if created is not None else now(),
        "data": data,
        "livemode": obj.get("livemode", False) if livemode is None else livemode,
        "pending_webhooks": 1,
        "request": {"id": stripe_id("req_", 14), "idempotency_key": stripe_id("", 32)},
        "type": event_type,
    }


def body_of(evt: dict[str, Any]) -> bytes:
    # Stripe sends pretty-printed JSON; the signature covers these exact bytes.
    return json.dumps(evt, indent=2).encode("utf-8")


def signed(
    evt: dict[str, Any] | bytes, *, secret: str = DEFAULT_SECRET, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a delivery exactly as Stripe makes it."""
    body = evt if isinstance(evt, bytes) else body_of(evt)
    return body, {"Stripe-Signature": sign(body, secret, timestamp), "Content-Type": "application/json; charset=utf-8"}
