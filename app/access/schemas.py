"""Access, stream, progress and library schemas (api.md §1 Progress, §10). Load and dump are separate."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from werkzeug.datastructures import MultiDict

from app.access.library import FILTERS, SORTS
from app.identity.schemas import JsonBool
from app.schemas import PageArgsSchema, QueryInt, Timestamp

REASONS = ("staff", "purchased", "complimentary", "free", "none")
MAX_DURATION_SECONDS = 86400
DEFAULT_EXPIRES_IN = 3600
_SECONDS = re.compile(r"[0-9]{1,6}")


class JsonNumber(ma.fields.Float):
    """A JSON number (int or float); strings, booleans, NaN and infinities are refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("special")
        try:
            return float(value)
        except OverflowError:  # a JSON integer of hundreds of digits
            raise self.make_error("invalid") from None


class AccessSchema(ma.Schema):
    content_id = ma.fields.UUID(required=True)
    has_access = ma.fields.Boolean(required=True)
    reason = ma.fields.String(required=True, metadata={"enum": list(REASONS)})


class StreamArgsSchema(ma.Schema):
    expires_in = QueryInt(load_default=DEFAULT_EXPIRES_IN, validate=ma.validate.Range(min=300, max=86400))


def fast_stream_args(args: MultiDict[str, str]) -> dict[str, Any] | None:
    """``StreamArgsSchema``'s result for the usual query strings (none, or one plain ``expires_in``),
    else None: the schema (through webargs) answers everything else, errors included."""
    items = list(args.lists())
    if not items:
        return {"expires_in": DEFAULT_EXPIRES_IN}
    if len(items) == 1 and items[0][0] == "expires_in" and len(items[0][1]) == 1:
        raw = items[0][1][0]
        if _SECONDS.fullmatch(raw) and 300 <= int(raw) <= 86400:
            return {"expires_in": int(raw)}
    return None


class StreamCaptionSchema(ma.Schema):
    language = ma.fields.String(required=True)
    label = ma.fields.String(required=True)


class StreamSchema(ma.Schema):
    manifest_url = ma.fields.String(required=True)
    expires_at = Timestamp(required=True)
    content_type = ma.fields.String(required=True)
    preview = ma.fields.Boolean(required=True)
    duration_seconds = ma.fields.Integer(required=True, allow_none=True)
    renditions = ma.fields.List(ma.fields.String(), required=True)
    thumbnail_url = ma.fields.String(required=True, allow_none=True)
    waveform_url = ma.fields.String(required=True, allow_none=True)
    captions = ma.fields.List(ma.fields.Nested(StreamCaptionSchema), required=True)


class ProgressUpdateSchema(ma.Schema):
    position_seconds = JsonNumber(required=True, validate=ma.validate.Range(min=0))
    duration_seconds = JsonNumber(required=True, validate=ma.validate.Range(min=1, max=MAX_DURATION_SECONDS))
    completed = JsonBool(load_default=False)
    client_ts = ma.fields.AwareDateTime(load_default=None, default_timezone=UTC)  # naive = UTC


# The two hot endpoints recognise their usual input without webargs and marshmallow (a stream URL
# per play, a heartbeat every few seconds per viewer: the full load was a visible share of both
# requests). A fast loader answers only what is plainly valid, with exactly the schema's result,
# and None for anything else, which then goes through the schema: errors are the schema's.

_FAST_MAX_POSITION = 1e12  # larger positions are valid too (clamped later) but take the schema's path
_PROGRESS_FIELDS = frozenset({"position_seconds", "duration_seconds", "completed", "client_ts"})
# The ISO-8601 shapes clients send ("2025-03-02T12:10:05.000Z"); others take the schema's parser.
_PLAIN_TS = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3}|\.[0-9]{6})?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)


def _number(value: Any, low: float, high: float) -> float | None:
    """A JSON number in [low, high] as the schema loads it (``high`` finite), else None."""
    if type(value) is float:
        return value if math.isfinite(value) and low <= value <= high else None
    if type(value) is int and low <= value <= high:
        return float(value)
    return None


def fast_progress(data: Any) -> dict[str, Any] | None:
    """``ProgressUpdateSchema``'s result for a plainly valid body, else None (use the schema)."""
    if type(data) is not dict or not data.keys() <= _PROGRESS_FIELDS:
        return None
    position = _number(data.get("position_seconds"), 0, _FAST_MAX_POSITION)
    duration = _number(data.get("duration_seconds"), 1, MAX_DURATION_SECONDS)
    completed = data.get("completed", False)
    if position is None or duration is None or type(completed) is not bool:
        return None
    client_ts = data.get("client_ts")
    if client_ts is not None:
        if type(client_ts) is not str or not _PLAIN_TS.fullmatch(client_ts):
            return None
        try:
            client_ts = datetime.fromisoformat(client_ts)
        except ValueError:
            return None
        if client_ts.tzinfo is None:
            client_ts = client_ts.replace(tzinfo=UTC)
    elif "client_ts" in data:
        return None  # an explicit null: the schema's answer
    return {"position_seconds": position, "duration_seconds": duration, "completed": completed, "client_ts": client_ts}


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
