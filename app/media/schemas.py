"""Media schemas (api.md §1 Media/Upload, §6). Load and dump are separate; unknown fields are 400."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app

from app.media.models import AUDIO_MIME_TYPES, MEDIA_STATUSES, MEDIA_TYPES, MIME_TYPES, VIDEO_MIME_TYPES
from app.media.multipart import MAX_PARTS, MAX_PARTS_PER_REQUEST, SINGLE_UPLOAD_MAX_BYTES, UPLOAD_MODES
from app.schemas import PageArgsSchema, Str, StrictInt, Timestamp

MIME_BY_TYPE: dict[str, tuple[str, ...]] = {"video": VIDEO_MIME_TYPES, "audio": AUDIO_MIME_TYPES}
SORTS = ("created_at", "updated_at", "title")
ORDERS = ("asc", "desc")


def max_bytes_for(media_type: str) -> int:
    key = "MEDIA_MAX_VIDEO_BYTES" if media_type == "video" else "MEDIA_MAX_AUDIO_BYTES"
    return int(current_app.config[key])


def title_field(**kwargs: Any) -> Str:
    return Str(validate=ma.validate.Length(min=1, max=255), **kwargs)


def description_field(**kwargs: Any) -> Str:
    return Str(
        allow_none=True,
        blank_as_none=True,
        multiline=True,
        validate=ma.validate.Length(max=5000),
        **kwargs,
    )


class MediaCreateSchema(ma.Schema):
    title = title_field(required=True)
    description = description_field(load_default=None)
    media_type = ma.fields.String(required=True, validate=ma.validate.OneOf(MEDIA_TYPES))
    mime_type = ma.fields.String(required=True, validate=ma.validate.OneOf(MIME_TYPES))
    file_size_bytes = StrictInt(required=True, validate=ma.validate.Range(min=1))
    upload_mode = ma.fields.String(load_default="single", validate=ma.validate.OneOf(UPLOAD_MODES))

    @ma.validates_schema(skip_on_field_errors=False)
    def _type_rules(self, data: dict[str, Any], **kwargs: Any) -> None:
        media_type = data.get("media_type")
        if media_type not in MIME_BY_TYPE:
            return
        problems: dict[str, list[str]] = {}
        mime = data.get("mime_type")
        if mime is not None and mime not in MIME_BY_TYPE[media_type]:
            allowed = ", ".join(MIME_BY_TYPE[media_type])
            problems["mime_type"] = [f"Must be one of {allowed} for {media_type}."]
        size = data.get("file_size_bytes")
        limit = max_bytes_for(media_type)
        if isinstance(size, int) and size > limit:
            problems["file_size_bytes"] = [f"Must be at most {limit} bytes for {media_type}."]
        elif isinstance(size, int) and size > SINGLE_UPLOAD_MAX_BYTES and data.get("upload_mode") == "single":
            problems["upload_mode"] = [f"Files above {SINGLE_UPLOAD_MAX_BYTES} bytes need upload_mode multipart."]
        if problems:
            raise ma.ValidationError(problems)


class MediaUpdateSchema(ma.Schema):
    """Only ``title`` and ``description``; anything else (status, keys, …) is an unknown field."""

    title = title_field()
    description = description_field()


class MediaListArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(MEDIA_STATUSES))
    media_type = ma.fields.String(validate=ma.validate.OneOf(MEDIA_TYPES))
    sort = ma.fields.String(load_default="created_at", validate=ma.validate.OneOf(SORTS))
    order = ma.fields.String(load_default="desc", validate=ma.validate.OneOf(ORDERS))


class UploadSchema(ma.Schema):
    """``PUT``: ``url`` + ``headers``; ``MULTIPART`` (api.md §6.1): ``part_size_bytes`` + ``part_count``."""

    method = ma.fields.String(required=True, metadata={"enum": ["PUT", "MULTIPART"]})
    url = ma.fields.String()
    headers = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String())
    part_size_bytes = ma.fields.Integer()
    part_count = ma.fields.Integer()
    expires_at = Timestamp(required=True)


def _distinct(field: str) -> ma.validate.Validator:
    def check(items: list[Any]) -> None:
        numbers = [item[field] if isinstance(item, dict) else item for item in items]
        if len(set(numbers)) != len(numbers):
            raise ma.ValidationError("Part numbers must be distinct.")

    return check  # type: ignore[return-value]


class PartNumbersSchema(ma.Schema):
    """POST …/upload/parts: 1..100 distinct part numbers (their upper bound is the media's part count)."""

    part_numbers = ma.fields.List(
        StrictInt(validate=ma.validate.Range(min=1, max=MAX_PARTS)),
        required=True,
        validate=[ma.validate.Length(min=1, max=MAX_PARTS_PER_REQUEST), _distinct("part_number")],
    )


class SignedPartSchema(ma.Schema):
    part_number = ma.fields.Integer(required=True)
    url = ma.fields.String(required=True)
    headers = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), required=True)
    expires_at = Timestamp(required=True)


class SignedPartsSchema(ma.Schema):
    parts = ma.fields.List(ma.fields.Nested(SignedPartSchema), required=True)


class StoredPartSchema(ma.Schema):
    part_number = ma.fields.Integer(required=True)
    size_bytes = ma.fields.Integer(required=True)
    etag = ma.fields.String(required=True)


class StoredPartsSchema(ma.Schema):
    parts = ma.fields.List(ma.fields.Nested(StoredPartSchema), required=True)


class PartEtagSchema(ma.Schema):
    part_number = StrictInt(required=True, validate=ma.validate.Range(min=1, max=MAX_PARTS))
    etag = Str(required=True, validate=ma.validate.Length(min=1, max=200))


class UploadCompleteSchema(ma.Schema):
    """upload-complete: an empty body, or for a multipart upload the optional ``parts`` it consists of."""

    parts = ma.fields.List(
        ma.fields.Nested(PartEtagSchema),
        validate=[ma.validate.Length(min=1, max=MAX_PARTS), _distinct("part_number")],
    )


class MediaSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    organization_id = ma.fields.UUID(required=True)
    created_by = ma.fields.UUID(required=True)
    title = ma.fields.String(required=True)
    description = ma.fields.String(required=True, allow_none=True)
    media_type = ma.fields.String(required=True, metadata={"enum": list(MEDIA_TYPES)})
    mime_type = ma.fields.String(required=True, metadata={"enum": list(MIME_TYPES)})
    file_size_bytes = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True, metadata={"enum": list(MEDIA_STATUSES)})
    attempts = ma.fields.Integer(required=True)
    max_attempts = ma.fields.Integer(required=True)
    error_message = ma.fields.String(required=True, allow_none=True)
    duration_seconds = ma.fields.Integer(required=True, allow_none=True)
    width = ma.fields.Integer(required=True, allow_none=True)
    height = ma.fields.Integer(required=True, allow_none=True)
    renditions = ma.fields.List(ma.fields.String(), required=True)
    has_preview = ma.fields.Boolean(required=True)
    thumbnail_url = ma.fields.String(required=True, allow_none=True)
    waveform_url = ma.fields.String(required=True, allow_none=True)
    uploaded_at = Timestamp(required=True, allow_none=True)
    ready_at = Timestamp(required=True, allow_none=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)


class MediaCreatedSchema(MediaSchema):
    """Media + the ``upload`` target (POST /orgs/{org_id}/media)."""

    upload = ma.fields.Nested(UploadSchema, required=True)


class CaptionPutArgsSchema(ma.Schema):
    """Query of PUT …/captions/{language} (the body is the WebVTT file itself)."""

    label = Str(validate=ma.validate.Length(min=1, max=100))


class CaptionSchema(ma.Schema):
    language = ma.fields.String(required=True)
    label = ma.fields.String(required=True)
    cue_count = ma.fields.Integer(required=True)
    size_bytes = ma.fields.Integer(required=True)
    url = ma.fields.String(required=True, allow_none=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)


class CaptionListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(CaptionSchema), required=True)
