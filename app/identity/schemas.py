"""Auth request/response schemas (api.md §1, §3). Load and dump schemas are separate and explicit."""

from __future__ import annotations

import unicodedata
from typing import Any

import marshmallow as ma

from app.identity import passwords
from app.schemas import PageArgsSchema, Str, Timestamp

_CONTROL = {"Cc"}


class EmailField(Str):
    """A valid address of at most 254 characters, lower-cased (security.md §6)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["metadata"] = {"format": "email", **kwargs.get("metadata", {})}  # documented in OpenAPI
        super().__init__(validate=[ma.validate.Length(min=1, max=254), ma.validate.Email()], **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        return text.lower() if isinstance(text, str) else text


class JsonBool(ma.fields.Boolean):
    """Only JSON ``true``/``false``: ``"yes"``, ``1`` or ``"true"`` are 400 (security.md §6)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class PasswordField(ma.fields.String):
    """A password: NFC-normalised, never trimmed, no control characters.

    ``policy=True`` applies the password policy (register, reset, change); otherwise any
    1..128-character string is accepted (login, current password).
    """

    def __init__(self, *, policy: bool = False, **kwargs: Any) -> None:
        self.policy = policy
        lengths = {"minLength": passwords.MIN_LENGTH if policy else 1, "maxLength": passwords.MAX_LENGTH}
        kwargs["metadata"] = {**lengths, **kwargs.get("metadata", {})}  # documented in OpenAPI
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = unicodedata.normalize("NFC", super()._deserialize(value, attr, data, **kwargs))
        if any(unicodedata.category(char) in _CONTROL for char in text):
            raise ma.ValidationError("Must not contain control characters.")
        if self.policy:
            problems = passwords.policy_errors(text)
            if problems:
                raise ma.ValidationError(problems)
        elif not 1 <= len(text) <= passwords.MAX_LENGTH:
            raise ma.ValidationError(f"Length must be between 1 and {passwords.MAX_LENGTH}.")
        return text


# ---- requests -------------------------------------------------------------------------------


class RegisterSchema(ma.Schema):
    email = EmailField(required=True)
    password = PasswordField(required=True, policy=True)
    name = Str(required=True, validate=ma.validate.Length(min=1, max=100))
    org_slug = Str(load_default=None, allow_none=True, blank_as_none=True, validate=ma.validate.Length(max=200))


class LoginSchema(ma.Schema):
    email = EmailField(required=True)
    password = PasswordField(required=True)
    remember_me = JsonBool(load_default=False)


class VerifyEmailSchema(ma.Schema):
    token = Str(required=True, validate=ma.validate.Length(min=1, max=200))


class EmailRequestSchema(ma.Schema):
    email = EmailField(required=True)


class PasswordResetConfirmSchema(ma.Schema):
    token = Str(required=True, validate=ma.validate.Length(min=1, max=200))
    password = PasswordField(required=True, policy=True)


class PasswordChangeSchema(ma.Schema):
    current_password = PasswordField(required=True)
    new_password = PasswordField(required=True, policy=True)


class SessionListArgsSchema(PageArgsSchema):
    pass


# ---- responses ------------------------------------------------------------------------------


class UserSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    email = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    role = ma.fields.String(required=True, metadata={"enum": ["customer", "platform_owner"]})
    email_verified = ma.fields.Boolean(required=True)
    email_verified_at = Timestamp(required=True, allow_none=True)
    created_at = Timestamp(required=True)


class MembershipSummarySchema(ma.Schema):
    organization_id = ma.fields.UUID(required=True)
    organization_name = ma.fields.String(required=True)
    organization_slug = ma.fields.String(required=True)
    role = ma.fields.String(required=True, metadata={"enum": ["owner", "admin", "creator"]})


class MeSchema(UserSchema):
    memberships = ma.fields.List(ma.fields.Nested(MembershipSummarySchema), required=True)


class LoginResponseSchema(ma.Schema):
    token = ma.fields.String(required=True)
    expires_at = Timestamp(required=True)
    user = ma.fields.Nested(UserSchema, required=True)


class SessionSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    remember_me = ma.fields.Boolean(required=True)
    created_at = Timestamp(required=True)
    last_seen_at = Timestamp(required=True)
    expires_at = Timestamp(required=True)
    ip_address = ma.fields.String(required=True, allow_none=True)
    user_agent = ma.fields.String(required=True, allow_none=True)
    current = ma.fields.Boolean(required=True)
