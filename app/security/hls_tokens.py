"""HLS stream tokens (security.md §7, purpose ``stream``).

Payload ``{p: "stream", c: content id, m: media id, u: user id | null, s: "full" | "preview", exp}``,
signed with the purpose key derived from ``SECRET_KEY`` by ``app.security.tokens``. A preview
token carries no user; a full token must carry one. Any defect (tamper, other purpose, expiry,
bad shape) is 403 ``INVALID_SIGNED_URL``.

The HLS proxy (``app/access``) verifies with ``verify_hls_token``; the catalogue and the stream
endpoint mint with ``mint_hls_token`` and build the playlist URL with ``hls_master_url``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from flask import current_app

from app.errors import InvalidSignedUrl
from app.security import tokens

PURPOSE = "stream"
Scope = Literal["full", "preview"]
SCOPES: tuple[Scope, ...] = ("full", "preview")


@dataclass(frozen=True, slots=True)
class HlsClaims:
    content_id: uuid.UUID
    media_id: uuid.UUID
    user_id: uuid.UUID | None
    scope: Scope
    expires_at: datetime


def _secret(secret: str | None) -> str:
    return secret if secret is not None else str(current_app.config["SECRET_KEY"])


def mint_hls_token(
    *,
    content_id: uuid.UUID,
    media_id: uuid.UUID,
    user_id: uuid.UUID | None,
    scope: Scope,
    expires_at: datetime,
    secret: str | None = None,
) -> str:
    """Sign a stream token; ``secret`` defaults to the app's ``SECRET_KEY``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown HLS scope {scope!r}")
    if scope == "preview" and user_id is not None:
        raise ValueError("a preview token is not bound to a user")
    if scope == "full" and user_id is None:
        raise ValueError("a full token must be bound to a user")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    claims = {
        "c": str(content_id),
        "m": str(media_id),
        "u": str(user_id) if user_id is not None else None,
        "s": scope,
    }
    return tokens.sign(_secret(secret), PURPOSE, claims, expires_at.timestamp())


def _uuid(value: Any, *, nullable: bool = False) -> uuid.UUID | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise InvalidSignedUrl()
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidSignedUrl() from None


def verify_hls_token(token: str, *, secret: str | None = None, now: float | None = None) -> HlsClaims:
    """Return the claims of a valid, unexpired stream token or raise ``InvalidSignedUrl`` (403)."""
    raw = tokens.verify(_secret(secret), PURPOSE, token, now=now)
    scope = raw.get("s")
    if scope not in SCOPES:
        raise InvalidSignedUrl()
    user_id = _uuid(raw.get("u"), nullable=True)
    if (scope == "preview") != (user_id is None):
        raise InvalidSignedUrl()
    content_id = _uuid(raw.get("c"))
    media_id = _uuid(raw.get("m"))
    assert content_id is not None and media_id is not None
    return HlsClaims(
        content_id=content_id,
        media_id=media_id,
        user_id=user_id,
        scope=scope,
        expires_at=datetime.fromtimestamp(raw["exp"], tz=UTC),
    )


def hls_master_url(token: str, *, base_url: str | None = None) -> str:
    """``PUBLIC_BASE_URL/api/v1/stream/<token>/master.m3u8``."""
    base = base_url if base_url is not None else str(current_app.config["PUBLIC_BASE_URL"])
    return f"{base.rstrip('/')}/api/v1/stream/{token}/master.m3u8"
