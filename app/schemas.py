"""Shared marshmallow pieces: strict strings, UTC timestamps, paging args and the list envelope."""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_STRICT = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Str(ma.fields.String):
    """NFC-normalised, trimmed string; control characters rejected (``\\n``/``\\t`` only when multiline).

    ``blank_as_none``: an optional nullable string that is empty after trimming becomes ``None``.
    """

    def __init__(self, *, multiline: bool = False, blank_as_none: bool = False, **kwargs: Any) -> None:
        self.multiline = multiline
        self.blank_as_none = blank_as_none
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        text = unicodedata.normalize("NFC", text).strip()
        pattern = _CONTROL if self.multiline else _CONTROL_STRICT
        if pattern.search(text):
            raise ma.ValidationError("Must not contain control characters.")
        if text == "" and self.blank_as_none and self.allow_none:
            return None
        return text

    def _validate(self, value: Any) -> None:
        # A blank that became None is "absent": length/pattern validators apply to text only.
        if value is None and self.blank_as_none:
            return
        super()._validate(value)


class Timestamp(ma.fields.DateTime):
    """ISO-8601 UTC with milliseconds and ``Z`` (``2025-03-01T12:00:00.000Z``)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return format_timestamp(value)


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class StrictBool(ma.fields.Boolean):
    """Query booleans accept only ``true``/``false`` (security.md §6)."""

    truthy = {"true", True}
    falsy = {"false", False}


class StrictInt(ma.fields.Integer):
    """JSON integers only: ``"12"``, ``true`` and ``1.5`` are rejected (security.md §6)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class QueryInt(ma.fields.Integer):
    """Query-string integers: decimal digits only (no sign, no spaces, no exponent)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,18}", value):
            raise self.make_error("invalid")
        return super()._deserialize(int(value), attr, data, **kwargs)


class EmptySchema(ma.Schema):
    """Body of body-less actions: an empty body or ``{}``; any field is unknown."""


class PageArgsSchema(ma.Schema):
    page = QueryInt(load_default=1, validate=ma.validate.Range(min=1))
    per_page = QueryInt(load_default=20, validate=ma.validate.Range(min=1, max=100))


class PageSchema(ma.Schema):
    page = ma.fields.Integer(required=True)
    per_page = ma.fields.Integer(required=True)
    total = ma.fields.Integer(required=True)
    pages = ma.fields.Integer(required=True)


_LIST_SCHEMAS: dict[type[ma.Schema], type[ma.Schema]] = {}


def list_schema(item: type[ma.Schema]) -> type[ma.Schema]:
    """``{"items": [...], "page", "per_page", "total", "pages"}`` for ``item`` (one class per item)."""
    if item not in _LIST_SCHEMAS:
        name = item.__name__.removesuffix("Schema") + "ListSchema"
        _LIST_SCHEMAS[item] = type(name, (PageSchema,), {"items": ma.fields.List(ma.fields.Nested(item))})
    return _LIST_SCHEMAS[item]


def paginate(session: Session, stmt: Select[Any], page: int, per_page: int) -> dict[str, Any]:
    """Run ``stmt`` for one page plus a count; the list envelope of spec README §3.1."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    offset = (page - 1) * per_page
    # A page past the end is empty without asking; a huge page's offset would overflow bigint (a 500).
    rows = session.execute(stmt.limit(per_page).offset(offset)).all() if offset < total else []
    items = [row[0] if len(row) == 1 else row for row in rows]
    return page_envelope(items, page, per_page, total)


def page_envelope(items: list[Any], page: int, per_page: int, total: int) -> dict[str, Any]:
    return {
        "items": items,
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": math.ceil(total / per_page) if total else 0,
    }
