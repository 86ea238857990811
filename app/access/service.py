"""The one entitlement rule (api.md §10) and the visibility of content to a signed-in caller.

``can_access(session, user_id, content)`` is used by the access check, the stream endpoint, the
HLS proxy, progress writes and the library. Reason, first match: ``staff`` (a member of the
content's org, or a platform_owner) -> ``purchased`` / ``complimentary`` (an active grant, i.e.
``revoked_at IS NULL``) -> ``free`` (``price_cents`` null or 0) -> ``none``.

The database part (staff or grant) is cached in Redis under ``access:{user_id}:{content_id}``
for 60 s (jobs.md §7.1); commerce deletes that key after committing a purchase, refund,
dispute or grant change (``app.commerce.cache``), so a revoked buyer loses access at once. The
``free`` rule is applied on top of the cached answer from the content row the caller already
loaded, so a price change is never hidden by the cache. Redis being down costs one query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

import redis
import structlog
from flask import current_app
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app import errors
from app.access.models import ContentAccess
from app.commerce.cache import access_cache_key
from app.content.models import Content
from app.identity.auth import not_found
from app.identity.models import User
from app.media.models import MediaItem
from app.orgs.models import Membership

log = structlog.get_logger(__name__)

Reason = Literal["staff", "purchased", "complimentary", "free", "none"]
ACCESS_CACHE_TTL_SECONDS = 60
CONTENT_NOT_FOUND = "CONTENT_NOT_FOUND"
_CACHEABLE: frozenset[str] = frozenset({"staff", "purchased", "complimentary", "none"})


@dataclass(frozen=True, slots=True)
class AccessDecision:
    reason: Reason

    @property
    def has_access(self) -> bool:
        return self.reason != "none"

    @property
    def is_staff(self) -> bool:
        return self.reason == "staff"


class AccessDenied(errors.AppError):
    status, code, message = 403, "ACCESS_DENIED", "You do not have access to this content."


class MediaNotReady(errors.AppError):
    status, code, message = 422, "MEDIA_NOT_READY", "The media of this content is not ready."


def is_free(content: Content) -> bool:
    return not content.price_cents


def _redis() -> redis.Redis:
    client: redis.Redis = current_app.extensions["redis"]
    return client


def _entitlement_from_db(session: Session, user_id: uuid.UUID, content: Content) -> Reason:
    """staff / purchased / complimentary / none in one round trip."""
    staff = exists().where(
        Membership.organization_id == content.organization_id, Membership.user_id == user_id
    ) | exists().where(User.id == user_id, User.role == "platform_owner")
    source = (
        select(ContentAccess.source)
        .where(
            ContentAccess.user_id == user_id,
            ContentAccess.content_id == content.id,
            ContentAccess.revoked_at.is_(None),
        )
        .scalar_subquery()
    )
    row = session.execute(select(staff.label("staff"), source.label("source"))).one()
    if row.staff:
        return "staff"
    if row.source == "purchase":
        return "purchased"
    if row.source == "complimentary":
        return "complimentary"
    return "none"


def _cached_entitlement(session: Session, user_id: uuid.UUID, content: Content) -> Reason:
    key = access_cache_key(user_id, content.id)
    client = _redis()
    try:
        raw = client.get(key)
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access")
        return _entitlement_from_db(session, user_id, content)
    if raw is not None:
        cached = raw.decode() if isinstance(raw, bytes) else str(raw)
        if cached in _CACHEABLE:
            return cached  # type: ignore[return-value]
    reason = _entitlement_from_db(session, user_id, content)
    try:
        client.set(key, reason, ex=ACCESS_CACHE_TTL_SECONDS)
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access")
    return reason


def can_access(session: Session, user_id: uuid.UUID, content: Content, *, use_cache: bool = True) -> AccessDecision:
    """The access rule of api.md §10 for ``user_id`` on ``content`` (visibility is the caller's job)."""
    reason = (
        _cached_entitlement(session, user_id, content) if use_cache else _entitlement_from_db(session, user_id, content)
    )
    if reason == "none" and is_free(content):
        reason = "free"
    return AccessDecision(reason)


@dataclass(frozen=True, slots=True)
class Visible:
    """Content the caller may see, its media, and the caller's access to it."""

    content: Content
    media: MediaItem
    decision: AccessDecision


def load_content(session: Session, content_id: uuid.UUID) -> tuple[Content, MediaItem] | None:
    """A non-deleted content item and its media, in one query."""
    row = session.execute(
        select(Content, MediaItem)
        .join(MediaItem, MediaItem.id == Content.media_id)
        .where(Content.id == content_id, Content.deleted_at.is_(None))
    ).first()
    return (row[0], row[1]) if row is not None else None


def visible_content(session: Session, user_id: uuid.UUID, content_id: uuid.UUID) -> Visible:
    """Deleted -> 404; not ``published`` -> 404 unless the caller is staff of its org (api.md §10)."""
    loaded = load_content(session, content_id)
    if loaded is None:
        raise not_found(CONTENT_NOT_FOUND)
    content, media = loaded
    decision = can_access(session, user_id, content)
    if content.status != "published" and not decision.is_staff:
        raise not_found(CONTENT_NOT_FOUND)
    return Visible(content, media, decision)


def require_access(visible: Visible) -> None:
    if not visible.decision.has_access:
        raise AccessDenied()


def require_ready(media: MediaItem) -> None:
    if media.status != "ready" or media.deleted_at is not None or not media.hls_master_key:
        raise MediaNotReady()
