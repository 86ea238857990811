"""Content schemas (api.md §1 Content, §7). Load and dump are separate; unknown fields are 400.

``content_type`` is accepted on create only (immutable). Rules that need the stored row
(visibility against the current price on PATCH) live in the service.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app

from app.content.models import CONTENT_STATUSES, CONTENT_TYPES, VISIBILITIES
from app.content.slugs import SLUG_MAX, SLUG_PATTERN
from app.media.models import MEDIA_STATUSES
from app.schemas import PageArgsSchema, Str, StrictInt, Timestamp

PRICE_MIN = 50
PRICE_MAX = 10_000_000
TAGS_MAX = 10
TAG_MAX = 30
SORTS = ("created_at", "updated_at", "published_at", "title")
ORDERS = ("asc", "desc")


def validate_price(value: int | None) -> None:
    if value is None or value == 0 or PRICE_MIN <= value <= PRICE_MAX:
        return
    raise ma.ValidationError(f"Must be null, 0 or between {PRICE_MIN} and {PRICE_MAX}.")


def validate_currency(value: str) -> None:
    supported = current_app.config["SUPPORTED_CURRENCIES"]
    if value not in supported:
        raise ma.ValidationError(f"Must be one of: {', '.join(supported)}.")


class CurrencyField(Str):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return super()._deserialize(value, attr, data, **kwargs).lower()


class TagsField(ma.fields.List):
    """≤ 10 strings of 1..30 characters; lower-cased and de-duplicated keeping the first order."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Str(validate=ma.validate.Length(min=1, max=TAG_MAX)), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if isinstance(value, list) and len(value) > TAGS_MAX:
            raise ma.ValidationError(f"At most {TAGS_MAX} tags.")
        tags = super()._deserialize(value, attr, data, **kwargs)
        return list(dict.fromkeys(str(tag).lower() for tag in tags))


def title_field(**kwargs: Any) -> Str:
    return Str(validate=ma.validate.Length(min=1, max=200), **kwargs)


def slug_field(**kwargs: Any) -> Str:
    return Str(
        validate=[
            ma.validate.Length(min=1, max=SLUG_MAX),
            ma.validate.Regexp(SLUG_PATTERN, error="Use lower-case letters, digits and single hyphens."),
        ],
        **kwargs,
    )


def description_field(**kwargs: Any) -> Str:
    return Str(allow_none=True, blank_as_none=True, multiline=True, validate=ma.validate.Length(max=5000), **kwargs)


def category_field(**kwargs: Any) -> Str:
    return Str(allow_none=True, blank_as_none=True, validate=ma.validate.Length(min=1, max=50), **kwargs)


def price_field(**kwargs: Any) -> StrictInt:
    return StrictInt(allow_none=True, validate=validate_price, **kwargs)


class ContentUpdateSchema(ma.Schema):
    """PATCH: any of these; ``{}`` leaves the item unchanged."""

    title = title_field()
    slug = slug_field()
    description = description_field()
    media_id = ma.fields.UUID()
    visibility = ma.fields.String(validate=ma.validate.OneOf(VISIBILITIES))
    price_cents = price_field()
    currency = CurrencyField(validate=validate_currency)
    category = category_field()
    tags = TagsField()


class ContentCreateSchema(ContentUpdateSchema):
    title = title_field(required=True)
    slug = slug_field(load_default=None)
    description = description_field(load_default=None)
    content_type = ma.fields.String(required=True, validate=ma.validate.OneOf(CONTENT_TYPES))
    media_id = ma.fields.UUID(required=True)
    visibility = ma.fields.String(load_default=None, validate=ma.validate.OneOf(VISIBILITIES))
    price_cents = price_field(load_default=None)
    currency = CurrencyField(load_default=None, validate=validate_currency)
    category = category_field(load_default=None)
    tags = TagsField(load_default=list)


class ContentListArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(CONTENT_STATUSES))
    content_type = ma.fields.String(validate=ma.validate.OneOf(CONTENT_TYPES))
    category = Str(validate=ma.validate.Length(min=1, max=50))
    q = Str(validate=ma.validate.Length(min=1, max=100))
    created_by = ma.fields.UUID()
    sort = ma.fields.String(load_default="created_at", validate=ma.validate.OneOf(SORTS))
    order = ma.fields.String(load_default="desc", validate=ma.validate.OneOf(ORDERS))


class ContentSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    organization_id = ma.fields.UUID(required=True)
    created_by = ma.fields.UUID(required=True)
    media_id = ma.fields.UUID(required=True)
    title = ma.fields.String(required=True)
    slug = ma.fields.String(required=True)
    description = ma.fields.String(required=True, allow_none=True)
    content_type = ma.fields.String(required=True, metadata={"enum": list(CONTENT_TYPES)})
    visibility = ma.fields.String(required=True, metadata={"enum": list(VISIBILITIES)})
    price_cents = ma.fields.Integer(required=True, allow_none=True)
    currency = ma.fields.String(required=True)
    is_free = ma.fields.Boolean(required=True)
    category = ma.fields.String(required=True, allow_none=True)
    tags = ma.fields.List(ma.fields.String(), required=True)
    status = ma.fields.String(required=True, metadata={"enum": list(CONTENT_STATUSES)})
    published_at = Timestamp(required=True, allow_none=True)
    archived_at = Timestamp(required=True, allow_none=True)
    media_status = ma.fields.String(required=True, allow_none=True, metadata={"enum": list(MEDIA_STATUSES)})
    duration_seconds = ma.fields.Integer(required=True, allow_none=True)
    thumbnail_url = ma.fields.String(required=True, allow_none=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)
