"""Organization, member, invitation and settings schemas (api.md §1, §4, §5). Load and dump are separate."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma
from flask import request

from app import errors
from app.identity.schemas import EmailField, JsonBool
from app.orgs.models import INVITATION_ROLES, MEMBER_ROLES, RESERVED_SLUGS
from app.schemas import PageArgsSchema, Str, StrictBool, Timestamp

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_UUID_SHAPED = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")

LOGO_MAX_BYTES = 5 * 1024 * 1024
LOGO_REQUEST_MAX_BYTES = LOGO_MAX_BYTES + 64 * 1024


def validate_slug(value: str) -> None:
    problems = []
    if not 3 <= len(value) <= 50:
        problems.append("Length must be between 3 and 50.")
    if not SLUG_PATTERN.match(value):
        problems.append("Use lower-case letters, digits and single hyphens (not at either end).")
    if _UUID_SHAPED.match(value):
        problems.append("Must not look like a UUID.")
    if value in RESERVED_SLUGS:
        problems.append("This slug is reserved.")
    if problems:
        raise ma.ValidationError(problems)


@cache
def known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in known_timezones():
        raise ma.ValidationError("Unknown time zone (use an IANA name such as Europe/Paris).")


def validate_http_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ma.ValidationError("Must be an http or https URL.")
    if parts.username is not None or parts.password is not None:
        raise ma.ValidationError("Must not contain a user name or password.")
    if any(ch.isspace() for ch in value):
        raise ma.ValidationError("Must not contain spaces.")


def validate_display_text(value: str) -> None:
    if "<" in value or ">" in value:
        raise ma.ValidationError("Must not contain < or >.")


class ColorField(Str):
    """``#RRGGBB`` in any case, returned upper-case (stored upper-case, data-model.md)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=ma.validate.Regexp(_COLOR, error="Must be a colour like #3B82F6."), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        return text.upper() if isinstance(text, str) else text


# ---- organizations --------------------------------------------------------------------------


# What OpenAPI can say of the rules the validators apply (not the UUID shape or the reserved words).
SLUG_DOC = {"minLength": 3, "maxLength": 50, "pattern": SLUG_PATTERN.pattern}


class OrgCreateSchema(ma.Schema):
    name = Str(required=True, validate=ma.validate.Length(min=1, max=100))
    slug = Str(required=True, validate=validate_slug, metadata=SLUG_DOC)
    description = Str(
        load_default=None,
        allow_none=True,
        blank_as_none=True,
        multiline=True,
        validate=ma.validate.Length(max=1000),
    )


class OrgUpdateSchema(ma.Schema):
    name = Str(validate=ma.validate.Length(min=1, max=100))
    slug = Str(validate=validate_slug, metadata=SLUG_DOC)
    description = Str(
        allow_none=True,
        blank_as_none=True,
        multiline=True,
        validate=ma.validate.Length(max=1000),
    )


class OrgListArgsSchema(PageArgsSchema):
    all_orgs = StrictBool(load_default=False, data_key="all")


class OrganizationSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    name = ma.fields.String(required=True)
    slug = ma.fields.String(required=True)
    description = ma.fields.String(required=True, allow_none=True)
    my_role = ma.fields.String(required=True, allow_none=True, metadata={"enum": [*MEMBER_ROLES, None]})
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)


# ---- members --------------------------------------------------------------------------------


class MemberListArgsSchema(PageArgsSchema):
    role = ma.fields.String(validate=ma.validate.OneOf(MEMBER_ROLES))


class MemberUpdateSchema(ma.Schema):
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(MEMBER_ROLES))


class MemberSchema(ma.Schema):
    user_id = ma.fields.UUID(required=True)
    email = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    role = ma.fields.String(required=True, metadata={"enum": list(MEMBER_ROLES)})
    joined_at = Timestamp(required=True)


# ---- invitations ----------------------------------------------------------------------------

#: The API's invitation statuses: the stored ones plus ``expired`` (pending and past ``expires_at``).
INVITATION_VIEW_STATUSES = ("pending", "accepted", "revoked", "expired")


class InvitationCreateSchema(ma.Schema):
    """Who to invite: an email address (matched case-insensitively) and the role it will get."""

    email = EmailField(required=True)
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(INVITATION_ROLES))


class InvitationListArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(INVITATION_VIEW_STATUSES))


class InvitationSchema(ma.Schema):
    """An invitation as managers see it; ``status`` ``expired`` = pending and past ``expires_at``."""

    id = ma.fields.UUID(required=True)
    organization_id = ma.fields.UUID(required=True)
    email = ma.fields.String(required=True)
    role = ma.fields.String(required=True, metadata={"enum": list(INVITATION_ROLES)})
    status = ma.fields.String(required=True, metadata={"enum": list(INVITATION_VIEW_STATUSES)})
    invited_by = ma.fields.UUID(required=True)
    expires_at = Timestamp(required=True)
    accepted_at = Timestamp(required=True, allow_none=True)
    created_at = Timestamp(required=True)


class InvitationLookupSchema(ma.Schema):
    """What the accept page may show anyone holding the link: never the full address."""

    organization_name = ma.fields.String(required=True)
    organization_slug = ma.fields.String(required=True)
    role = ma.fields.String(required=True, metadata={"enum": list(INVITATION_ROLES)})
    email_hint = ma.fields.String(required=True, metadata={"example": "c***@example.com"})
    expires_at = Timestamp(required=True)


class InvitationAcceptSchema(ma.Schema):
    """The token from the invitation link."""

    token = Str(required=True, validate=ma.validate.Length(min=1, max=200))


class AcceptedMemberSchema(MemberSchema):
    """The caller's new membership."""

    organization_id = ma.fields.UUID(required=True)


# ---- settings -------------------------------------------------------------------------------


class SettingsUpdateSchema(ma.Schema):
    """PUT is a full replacement: optional fields left out take their defaults."""

    platform_name = Str(required=True, validate=[ma.validate.Length(min=1, max=100), validate_display_text])
    primary_color = ColorField(required=True)
    secondary_color = ColorField(load_default=None, allow_none=True, blank_as_none=True)
    support_email = EmailField(required=True)
    contact_url = Str(
        load_default=None,
        allow_none=True,
        blank_as_none=True,
        validate=[ma.validate.Length(max=500), validate_http_url],
    )
    business_name = Str(load_default=None, allow_none=True, blank_as_none=True, validate=ma.validate.Length(max=200))
    timezone = Str(required=True, validate=[ma.validate.Length(min=1, max=64), validate_timezone])
    enable_signups = JsonBool(load_default=True)
    enable_purchases = JsonBool(load_default=True)


class SettingsSchema(ma.Schema):
    organization_id = ma.fields.UUID(required=True)
    organization_slug = ma.fields.String(required=True)
    platform_name = ma.fields.String(required=True)
    primary_color = ma.fields.String(required=True)
    secondary_color = ma.fields.String(required=True, allow_none=True)
    support_email = ma.fields.String(required=True)
    contact_url = ma.fields.String(required=True, allow_none=True)
    business_name = ma.fields.String(required=True, allow_none=True)
    timezone = ma.fields.String(required=True)
    enable_signups = ma.fields.Boolean(required=True)
    enable_purchases = ma.fields.Boolean(required=True)
    logo_url = ma.fields.String(required=True, allow_none=True)
    updated_at = Timestamp(required=True)


@dataclass(frozen=True)
class LogoUpload:
    data: bytes
    content_type: str
    extension: str


LOGO_TYPES = (
    # (content type, extension, test on the leading bytes) - security.md §8
    ("image/png", "png", lambda head: head.startswith(b"\x89PNG\r\n\x1a\n")),
    ("image/jpeg", "jpg", lambda head: head.startswith(b"\xff\xd8\xff")),
    ("image/webp", "webp", lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP"),
)


def detect_logo_type(head: bytes) -> tuple[str, str] | None:
    for content_type, extension, matches in LOGO_TYPES:
        if matches(head):
            return content_type, extension
    return None


class LogoFileField(ma.fields.Raw):
    """The uploaded part: at most 5 MiB (else 413), PNG/JPEG/WebP by magic bytes (else 415).

    The client's filename and part Content-Type are ignored (security.md §8).
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> LogoUpload:
        stream = getattr(value, "stream", None)
        if stream is None:
            raise ma.ValidationError("Must be a file.")
        content = stream.read(LOGO_MAX_BYTES + 1)
        if len(content) > LOGO_MAX_BYTES:
            raise errors.PayloadTooLarge("The logo must be at most 5 MiB.")
        detected = detect_logo_type(content[:16])
        if detected is None:
            raise errors.UnsupportedMediaType("The logo must be a PNG, JPEG or WebP image.")
        return LogoUpload(content, *detected)


class LogoUploadSchema(ma.Schema):
    """``multipart/form-data`` with the single file field ``file``."""

    file = LogoFileField(required=True, metadata={"type": "string", "format": "binary"})

    @ma.pre_load
    def _only_one_file(self, data: Any, **kwargs: Any) -> Any:
        problems: dict[str, list[str]] = {name: ["Unknown field."] for name in request.form}
        for name in request.files:
            if name != "file":
                problems[name] = ["Unknown field."]
            elif len(request.files.getlist(name)) > 1:
                problems[name] = ["Send exactly one file."]
        if problems:
            raise ma.ValidationError(problems)
        return data


class LogoSchema(ma.Schema):
    logo_url = ma.fields.String(required=True)
