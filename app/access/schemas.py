"""Access, stream, progress and library schemas (api.md §1 Progress, §10). Load and dump are separate."""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

import marshmallow as ma

from app.access.library import FILTERS, SORTS
from app.identity.schemas import JsonBool
from app.schemas import PageArgsSchema, QueryInt, Timestamp

REASONS = ("staff", "purchased", "complimentary", "free", "none")
MAX_DURATION_SECONDS = 86400


class JsonNumber(ma.fields.Float):
    """A JSON number (int or float); strings, booleans, NaN and infinities are refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("special")
        return float(value)


class AccessSchema(ma.Schema):
    content_id = ma.fields.UUID(required=True)
    has_access = ma.fields.Boolean(required=True)
    reason = ma.fields.String(required=True, metadata={"enum": list(REASONS)})


class StreamArgsSchema(ma.Schema):
    expires_in = QueryInt(load_default=3600, validate=ma.validate.Range(min=300, max=86400))


class StreamSchema(ma.Schema):
    manifest_url = ma.fields.String(required=True)
    expires_at = Timestamp(required=True)
    content_type = ma.fields.String(required=True)
    preview = ma.fields.Boolean(required=True)
    duration_seconds = ma.fields.Integer(required=True, allow_none=True)
    renditions = ma.fields.List(ma.fields.String(), required=True)
    thumbnail_url = ma.fields.String(required=True, allow_none=True)
    waveform_url = ma.fields.String(required=True, allow_none=True)


class ProgressUpdateSchema(ma.Schema):
    position_seconds = JsonNumber(required=True, validate=ma.validate.Range(min=0))
    duration_seconds = JsonNumber(required=True, validate=ma.validate.Range(min=1, max=MAX_DURATION_SECONDS))
    completed = JsonBool(load_default=False)
    client_ts = ma.fields.AwareDateTime(load_default=None, default_timezone=UTC)  # naive = UTC


class ProgressSchema(ma.Schema):
    content_id = ma.fields.UUID(required=True)
    position_seconds = ma.fields.Integer(required=True)
    duration_seconds = ma.fields.Integer(required=True)
    completed = ma.fields.Boolean(required=True)
    percent_complete = ma.fields.Integer(required=True)
    client_ts = Timestamp(required=True)
    updated_at = Timestamp(required=True, allow_none=True)


class LibraryArgsSchema(PageArgsSchema):
    filter = ma.fields.String(load_default="all", validate=ma.validate.OneOf(FILTERS))
    sort = ma.fields.String(load_default="recent", validate=ma.validate.OneOf(SORTS))


class LibraryContentSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    organization_id = ma.fields.UUID(required=True)
    title = ma.fields.String(required=True)
    slug = ma.fields.String(required=True)
    content_type = ma.fields.String(required=True)
    duration_seconds = ma.fields.Integer(required=True, allow_none=True)
    thumbnail_url = ma.fields.String(required=True, allow_none=True)
    status = ma.fields.String(required=True)


class LibraryAccessSchema(ma.Schema):
    reason = ma.fields.String(required=True)
    granted_at = Timestamp(required=True, allow_none=True)


class LibraryItemSchema(ma.Schema):
    content = ma.fields.Nested(LibraryContentSchema, required=True)
    available = ma.fields.Boolean(required=True)
    access = ma.fields.Nested(LibraryAccessSchema, required=True)
    progress = ma.fields.Nested(ProgressSchema, required=True, allow_none=True)
