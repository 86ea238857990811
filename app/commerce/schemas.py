"""Commerce schemas (api.md §1, §9, §12): load schemas reject unknown fields; dump schemas are explicit."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma
from flask import current_app

from app.commerce.models import STRIPE_EVENT_STATUSES
from app.schemas import PageArgsSchema, Str, Timestamp

URL_MAX = 2000
SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")
EVENT_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")
PURCHASE_STATUSES = ("completed", "refunded", "charged_back")


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_redirect_origins() -> set[str]:
    config = current_app.config
    origins = {o.rstrip("/").lower() for o in config["CORS_ORIGINS"]}
    frontend = origin_of(config["FRONTEND_URL"])
    if frontend:
        origins.add(frontend)
    return origins


def validate_redirect_url(value: str) -> None:
    """Absolute http(s), no user-info, no spaces, on an origin of CORS_ORIGINS or FRONTEND_URL."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a malformed port
    except ValueError:
        raise ma.ValidationError("Must be an absolute http or https URL.") from None
    del port
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ma.ValidationError("Must be an absolute http or https URL.")
    if parts.username is not None or parts.password is not None:
        raise ma.ValidationError("Must not contain a user name or password.")
    if any(ch.isspace() for ch in value):
        raise ma.ValidationError("Must not contain spaces.")
    if origin_of(value) not in allowed_redirect_origins():
        raise ma.ValidationError("Must be on the web app's origin.")


class CheckoutCreateSchema(ma.Schema):
    content_id = ma.fields.UUID(required=True)
    success_url = Str(
        load_default=None, allow_none=True, validate=[ma.validate.Length(max=URL_MAX), validate_redirect_url]
    )
    cancel_url = Str(
        load_default=None, allow_none=True, validate=[ma.validate.Length(max=URL_MAX), validate_redirect_url]
    )

    @ma.pre_load
    def _content_id_string(self, data: Any, **_: Any) -> Any:
        # UUID fields accept other spellings (no hyphens, braces); the spec wants the canonical form.
        if isinstance(data, dict) and "content_id" in data:
            value = data["content_id"]
            if not isinstance(value, str) or not re.fullmatch(
                r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", value
            ):
                raise ma.ValidationError({"content_id": ["Not a valid UUID."]})
        return data


class CheckoutCreatedSchema(ma.Schema):
    checkout_url = ma.fields.String(required=True)
    session_id = ma.fields.String(required=True)
    expires_at = Timestamp(required=True)


class PurchaseSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    customer_id = ma.fields.UUID(required=True)
    content_id = ma.fields.UUID(required=True)
    organization_id = ma.fields.UUID(required=True)
    amount_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    is_duplicate = ma.fields.Boolean(required=True)
    refunded_amount_cents = ma.fields.Integer(required=True)
    refund_status = ma.fields.String(required=True, allow_none=True)
    refund_reason = ma.fields.String(required=True, allow_none=True)
    purchased_at = Timestamp(required=True)
    refunded_at = Timestamp(required=True, allow_none=True)
    disputed_at = Timestamp(required=True, allow_none=True)
    dispute_status = ma.fields.String(required=True, allow_none=True)


class PurchaseContentSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    title = ma.fields.String(required=True)
    slug = ma.fields.String(required=True)
    content_type = ma.fields.String(required=True)
    thumbnail_url = ma.fields.String(required=True, allow_none=True)


class MyPurchaseSchema(PurchaseSchema):
    content = ma.fields.Nested(PurchaseContentSchema, required=True)


class MyPurchasesArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(PURCHASE_STATUSES))


class CheckoutStatusSchema(ma.Schema):
    session_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    payment_status = ma.fields.String(required=True)
    content_id = ma.fields.UUID(required=True)
    amount_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    expires_at = Timestamp(required=True)
    purchase = ma.fields.Nested(PurchaseSchema, required=True, allow_none=True)
    pending_fulfilment = ma.fields.Boolean(required=True)


class RefundRequestSchema(ma.Schema):
    reason = Str(
        load_default=None, allow_none=True, blank_as_none=True, multiline=True, validate=ma.validate.Length(max=500)
    )


class StripeEventSchema(ma.Schema):
    id = ma.fields.String(required=True)
    type = ma.fields.String(required=True)
    source = ma.fields.String(required=True)
    livemode = ma.fields.Boolean(required=True)
    status = ma.fields.String(required=True)
    attempts = ma.fields.Integer(required=True)
    next_attempt_at = Timestamp(required=True)
    last_error = ma.fields.String(required=True, allow_none=True)
    object_id = ma.fields.String(required=True, allow_none=True)
    payment_intent_id = ma.fields.String(required=True, allow_none=True)
    received_at = Timestamp(required=True)
    processed_at = Timestamp(required=True, allow_none=True)


class StripeEventDetailSchema(StripeEventSchema):
    payload = ma.fields.Dict(required=True)


class StripeEventListArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(STRIPE_EVENT_STATUSES))
    type = Str(validate=ma.validate.Length(min=1, max=100))
