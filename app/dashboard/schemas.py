"""Dashboard schemas (api.md §1, §11): query args are strict; dump schemas list every field."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import marshmallow as ma
from flask import current_app

from app.audit import AUDIT_ACTIONS
from app.commerce.schemas import PurchaseSchema
from app.schemas import PageArgsSchema, QueryInt, Str, Timestamp

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
CURRENCY = re.compile(r"^[a-z]{3}$")
TOP_METRICS = ("revenue", "purchases", "watch_time")
CHART_METRICS = ("net", "gross", "purchases")
CUSTOMER_SORTS = ("total_spent_cents", "last_purchase_at", "name")


def today_utc() -> date:
    return datetime.now(UTC).date()


class Currency(ma.fields.String):
    """Three letters, case-insensitive on input, lowercase afterwards; default ``DEFAULT_CURRENCY``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs).strip().lower()
        if not CURRENCY.fullmatch(text):
            raise ma.ValidationError("Must be a three-letter currency code.")
        return text


class QueryDate(ma.fields.Date):
    """``YYYY-MM-DD`` exactly (no times, no week dates)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class CurrencyArgsSchema(ma.Schema):
    currency = Currency(load_default=None)

    @ma.post_load
    def default_currency(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if data.get("currency") is None:
            data["currency"] = current_app.config["DEFAULT_CURRENCY"]
        return data


def resolved_range(data: dict[str, Any]) -> dict[str, Any]:
    """``start``/``end`` inclusive UTC dates: end defaults to today, start to end - 29 days."""
    end = data.get("end") or today_utc()
    if end == date.max:  # the range is [start, end + 1 day) in UTC; there is no day after this one
        raise ma.ValidationError({"end": ["Must be before 9999-12-31."]})
    try:
        start = data.get("start") or end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    except OverflowError:  # an end in the first days of year 1 has no default start
        raise ma.ValidationError({"end": ["Too early to default start; give start."]}) from None
    if start > end:
        raise ma.ValidationError({"start": ["Must not be after end."]})
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ma.ValidationError({"end": [f"The range must not exceed {MAX_RANGE_DAYS} days."]})
    data["start"], data["end"] = start, end
    return data


class RangeArgsSchema(CurrencyArgsSchema):
    """``start``/``end`` inclusive UTC dates: end defaults to today, start to end - 29 days."""

    start = QueryDate(load_default=None)
    end = QueryDate(load_default=None)

    @ma.post_load
    def resolve_range(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return resolved_range(data)


class EngagementArgsSchema(ma.Schema):
    """The range of the ``daily`` figures, as for revenue (no currency: nothing here is money)."""

    start = QueryDate(load_default=None)
    end = QueryDate(load_default=None)

    @ma.post_load
    def resolve_range(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return resolved_range(data)


class TopContentArgsSchema(RangeArgsSchema):
    metric = ma.fields.String(load_default="revenue", validate=ma.validate.OneOf(TOP_METRICS))
    limit = QueryInt(load_default=10, validate=ma.validate.Range(min=1, max=50))


class ChartArgsSchema(RangeArgsSchema):
    metric = ma.fields.String(load_default="net", validate=ma.validate.OneOf(CHART_METRICS))


class CustomerListArgsSchema(PageArgsSchema, CurrencyArgsSchema):
    q = Str(load_default=None, validate=ma.validate.Length(min=1, max=100))
    sort = ma.fields.String(load_default="last_purchase_at", validate=ma.validate.OneOf(CUSTOMER_SORTS))
    order = ma.fields.String(load_default="desc", validate=ma.validate.OneOf(("asc", "desc")))


class AuditListArgsSchema(PageArgsSchema):
    action = ma.fields.String(load_default=None, validate=ma.validate.OneOf(AUDIT_ACTIONS))
    actor_user_id = ma.fields.UUID(load_default=None)


class GrantCreateSchema(ma.Schema):
    content_id = ma.fields.UUID(required=True)


# ---- responses ------------------------------------------------------------------------------------


class MoneyTotalsSchema(ma.Schema):
    gross_cents = ma.fields.Integer(required=True)
    refunded_cents = ma.fields.Integer(required=True)
    net_cents = ma.fields.Integer(required=True)
    purchase_count = ma.fields.Integer(required=True)


class DailyRevenueSchema(MoneyTotalsSchema):
    date = ma.fields.Date(required=True)


class RevenueSchema(ma.Schema):
    currency = ma.fields.String(required=True)
    start = ma.fields.Date(required=True)
    end = ma.fields.Date(required=True)
    totals = ma.fields.Nested(MoneyTotalsSchema, required=True)
    daily = ma.fields.List(ma.fields.Nested(DailyRevenueSchema), required=True)


class SummaryTopContentSchema(ma.Schema):
    content_id = ma.fields.UUID(required=True)
    title = ma.fields.String(required=True)
    net_cents = ma.fields.Integer(required=True)
    purchase_count = ma.fields.Integer(required=True)


class RecentPurchaseSchema(ma.Schema):
    purchase_id = ma.fields.UUID(required=True)
    content_id = ma.fields.UUID(required=True)
    content_title = ma.fields.String(required=True)
    customer_id = ma.fields.UUID(required=True)
    customer_name = ma.fields.String(required=True)
    customer_email = ma.fields.String(required=True)
    amount_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    purchased_at = Timestamp(required=True)


class SummarySchema(ma.Schema):
    currency = ma.fields.String(required=True)
    all_time = ma.fields.Nested(MoneyTotalsSchema, required=True)
    this_month = ma.fields.Nested(MoneyTotalsSchema, required=True)
    customer_count = ma.fields.Integer(required=True)
    top_content = ma.fields.List(ma.fields.Nested(SummaryTopContentSchema), required=True)
    recent_purchases = ma.fields.List(ma.fields.Nested(RecentPurchaseSchema), required=True)


class TopContentItemSchema(ma.Schema):
    content_id = ma.fields.UUID(required=True)
    title = ma.fields.String(required=True)
    slug = ma.fields.String(required=True)
    net_cents = ma.fields.Integer(required=True)
    purchase_count = ma.fields.Integer(required=True)
    seconds_watched = ma.fields.Integer(required=True)


class TopContentSchema(ma.Schema):
    metric = ma.fields.String(required=True)
    currency = ma.fields.String(required=True)
    start = ma.fields.Date(required=True)
    end = ma.fields.Date(required=True)
    items = ma.fields.List(ma.fields.Nested(TopContentItemSchema), required=True)


class CustomerRowSchema(ma.Schema):
    user_id = ma.fields.UUID(required=True)
    name = ma.fields.String(required=True)
    email = ma.fields.String(required=True)
    purchase_count = ma.fields.Integer(required=True)
    total_spent_cents = ma.fields.Integer(required=True)
    first_purchase_at = Timestamp(required=True, allow_none=True)
    last_purchase_at = Timestamp(required=True, allow_none=True)
    active_grant_count = ma.fields.Integer(required=True)


class CustomerSchema(ma.Schema):
    user_id = ma.fields.UUID(required=True)
    name = ma.fields.String(required=True)
    email = ma.fields.String(required=True)
    created_at = Timestamp(required=True)


class GrantSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    user_id = ma.fields.UUID(required=True)
    content_id = ma.fields.UUID(required=True)
    organization_id = ma.fields.UUID(required=True)
    source = ma.fields.String(required=True)
    purchase_id = ma.fields.UUID(required=True, allow_none=True)
    granted_by = ma.fields.UUID(required=True, allow_none=True)
    granted_at = Timestamp(required=True)
    revoked_at = Timestamp(required=True, allow_none=True)
    revoke_reason = ma.fields.String(required=True, allow_none=True)


class CustomerPurchaseSchema(PurchaseSchema):
    content_title = ma.fields.String(required=True)


class CustomerGrantSchema(GrantSchema):
    content_title = ma.fields.String(required=True)


class CustomerStatsSchema(ma.Schema):
    purchase_count = ma.fields.Integer(required=True)
    total_spent_cents = ma.fields.Integer(required=True)
    first_purchase_at = Timestamp(required=True, allow_none=True)
    last_purchase_at = Timestamp(required=True, allow_none=True)


class CustomerDetailSchema(ma.Schema):
    customer = ma.fields.Nested(CustomerSchema, required=True)
    purchases = ma.fields.List(ma.fields.Nested(CustomerPurchaseSchema), required=True)
    grants = ma.fields.List(ma.fields.Nested(CustomerGrantSchema), required=True)
    stats = ma.fields.Nested(CustomerStatsSchema, required=True)


class AuditEventSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    organization_id = ma.fields.UUID(required=True)
    actor_user_id = ma.fields.UUID(required=True, allow_none=True)
    actor_role = ma.fields.String(required=True)
    action = ma.fields.String(required=True)
    target_type = ma.fields.String(required=True)
    target_id = ma.fields.String(required=True)
    metadata = ma.fields.Dict(required=True, attribute="metadata_")
    request_id = ma.fields.String(required=True, allow_none=True)
    created_at = Timestamp(required=True)


class RetentionPointSchema(ma.Schema):
    percent = ma.fields.Integer(required=True, metadata={"description": "0, 5, .., 100 (% of the duration)"})
    viewers_fraction = ma.fields.Float(
        required=True, metadata={"description": "share of viewers whose furthest position reached `percent`"}
    )


class DailyEngagementSchema(ma.Schema):
    date = ma.fields.Date(required=True)
    views_started = ma.fields.Integer(required=True)
    seconds_watched = ma.fields.Integer(required=True)
    completions = ma.fields.Integer(required=True)


class EngagementSchema(ma.Schema):
    content_id = ma.fields.UUID(required=True)
    title = ma.fields.String(required=True)
    duration_seconds = ma.fields.Integer(required=True, allow_none=True)
    viewers = ma.fields.Integer(required=True)
    completions = ma.fields.Integer(required=True)
    completion_rate = ma.fields.Float(required=True)
    average_percent_watched = ma.fields.Float(required=True)
    seconds_watched = ma.fields.Integer(required=True)
    retention = ma.fields.List(ma.fields.Nested(RetentionPointSchema), required=True)
    daily = ma.fields.List(ma.fields.Nested(DailyEngagementSchema), required=True)
