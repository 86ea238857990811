"""Public catalogue schemas (api.md §1 CatalogItem/CatalogDetail, §8)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.content.models import CONTENT_TYPES
from app.content.schemas import TAG_MAX
from app.schemas import PageArgsSchema, Str, Timestamp

SORTS = ("published_at", "title", "price_cents")
ORDERS = ("asc", "desc")


class TagArg(Str):
    """Tags are stored lower-cased, so the filter is too."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return super()._deserialize(value, attr, data, **kwargs).lower()


class CatalogListArgsSchema(PageArgsSchema):
    q = Str(validate=ma.validate.Length(min=1, max=100))
    content_type = ma.fields.String(validate=ma.validate.OneOf(CONTENT_TYPES))
    category = Str(validate=ma.validate.Length(min=1, max=50))
    tag = TagArg(validate=ma.validate.Length(min=1, max=TAG_MAX))
    sort = ma.fields.String(load_default="published_at", validate=ma.validate.OneOf(SORTS))
    order = ma.fields.String(load_default="desc", validate=ma.validate.OneOf(ORDERS))


class CatalogItemSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    organization_id = ma.fields.UUID(required=True)
    title = ma.fields.String(required=True)
    slug = ma.fields.String(required=True)
    description = ma.fields.String(required=True, allow_none=True)
    content_type = ma.fields.String(required=True, metadata={"enum": list(CONTENT_TYPES)})
    price_cents = ma.fields.Integer(required=True, allow_none=True)
    currency = ma.fields.String(required=True)
    is_free = ma.fields.Boolean(required=True)
    category = ma.fields.String(required=True, allow_none=True)
    tags = ma.fields.List(ma.fields.String(), required=True)
    duration_seconds = ma.fields.Integer(required=True, allow_none=True)
    thumbnail_url = ma.fields.String(required=True, allow_none=True)
    published_at = Timestamp(required=True)


class CatalogOrgSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    name = ma.fields.String(required=True)
    slug = ma.fields.String(required=True)


class PreviewSchema(ma.Schema):
    manifest_url = ma.fields.String(required=True)
    expires_at = Timestamp(required=True)


class CatalogDetailSchema(CatalogItemSchema):
    organization = ma.fields.Nested(CatalogOrgSchema, required=True)
    preview = ma.fields.Nested(PreviewSchema, required=True, allow_none=True)
