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

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol

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


class Priced(Protocol):
    """What the access rule reads of a content item (a ``Content`` row or a cached ``ContentMeta``)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def organization_id(self) -> uuid.UUID: ...

    @property
    def price_cents(self) -> int | None: ...


def is_free(content: Priced) -> bool:
    return not content.price_cents


def _redis() -> redis.Redis:
    client: redis.Redis = current_app.extensions["redis"]
    return client


def _entitlement_from_db(session: Session, user_id: uuid.UUID, content: Priced) -> Reason:
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


def _decode_reason(raw: Any) -> Reason | None:
    if raw is None:
        return None
    cached = raw.decode() if isinstance(raw, bytes) else str(raw)
    return cached if cached in _CACHEABLE else None  # type: ignore[return-value]


def _store_reason(client: redis.Redis, user_id: uuid.UUID, content_id: uuid.UUID, reason: Reason) -> None:
    try:
        client.set(access_cache_key(user_id, content_id), reason, ex=ACCESS_CACHE_TTL_SECONDS)
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access")


def _cached_entitlement(session: Session, user_id: uuid.UUID, content: Priced) -> Reason:
    client = _redis()
    try:
        raw = client.get(access_cache_key(user_id, content.id))
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access")
        return _entitlement_from_db(session, user_id, content)
    reason = _decode_reason(raw)
    if reason is None:
        reason = _entitlement_from_db(session, user_id, content)
        _store_reason(client, user_id, content.id, reason)
    return reason


def can_access(session: Session, user_id: uuid.UUID, content: Priced, *, use_cache: bool = True) -> AccessDecision:
    """The access rule of api.md §10 for ``user_id`` on ``content`` (visibility is the caller's job)."""
    reason = (
        _cached_entitlement(session, user_id, content) if use_cache else _entitlement_from_db(session, user_id, content)
    )
    return _decide(reason, content)


def _decide(reason: Reason, content: Priced) -> AccessDecision:
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


# ---- the hot paths: stream issuance and heartbeats ----------------------------------------------
#
# Both run for every play and every few seconds of playback. They read a snapshot of the content
# and media fields they need from Redis (``content:meta:{id}``, 10 s) together with the access
# cache entry in one MGET, so a warm request does no database round trip. Grants still act at
# once (commerce deletes the access key); a content or media change (unpublish, delete, new
# media) reaches these two endpoints within 10 s. That is safe because neither hands out
# anything by itself: the HLS proxy re-reads content, media and access on every playlist, and a
# heartbeat only records progress.

META_TTL_SECONDS = 10


@dataclass(frozen=True, slots=True)
class ContentMeta:
    id: uuid.UUID
    organization_id: uuid.UUID
    status: str
    price_cents: int | None
    content_type: str
    media_id: uuid.UUID
    media_status: str
    media_deleted: bool
    hls_master_key: str | None
    renditions: list[str]
    duration_seconds: int | None
    thumbnail_key: str | None
    waveform_key: str | None

    @classmethod
    def of(cls, content: Content, media: MediaItem) -> ContentMeta:
        return cls(
            content.id, content.organization_id, content.status, content.price_cents, content.content_type,
            media.id, media.status, media.deleted_at is not None, media.hls_master_key, list(media.renditions),
            media.duration_seconds, media.thumbnail_key, media.waveform_key,
        )  # fmt: skip

    @property
    def media_ready(self) -> bool:
        return self.media_status == "ready" and not self.media_deleted and bool(self.hls_master_key)

    def dumps(self) -> str:
        return json.dumps([str(self.id), str(self.organization_id), self.status, self.price_cents, self.content_type,
                           str(self.media_id), self.media_status, self.media_deleted, self.hls_master_key,
                           self.renditions, self.duration_seconds, self.thumbnail_key, self.waveform_key])  # fmt: skip

    @classmethod
    def loads(cls, raw: Any) -> ContentMeta | None:
        try:
            v = json.loads(raw)
            return cls(uuid.UUID(v[0]), uuid.UUID(v[1]), v[2], v[3], v[4], uuid.UUID(v[5]), v[6], bool(v[7]), v[8],
                       list(v[9]), v[10], v[11], v[12])  # fmt: skip
        except (ValueError, TypeError, IndexError, KeyError):
            return None


def meta_key(content_id: uuid.UUID) -> str:
    return f"content:meta:{content_id}"


@dataclass(frozen=True, slots=True)
class Playable:
    meta: ContentMeta
    decision: AccessDecision


def playable(session: Session, user_id: uuid.UUID, content_id: uuid.UUID) -> Playable:
    """``visible_content`` for the hot paths: same rules (404 / decision), from the 10 s snapshot."""
    client = _redis()
    try:
        raw_meta, raw_reason = client.mget([meta_key(content_id), access_cache_key(user_id, content_id)])
    except redis.RedisError:
        log.warning("cache.unavailable", cache="content_meta")
        visible = visible_content(session, user_id, content_id)
        return Playable(ContentMeta.of(visible.content, visible.media), visible.decision)
    meta = ContentMeta.loads(raw_meta) if raw_meta is not None else None
    if meta is None:
        loaded = load_content(session, content_id)
        if loaded is None:
            raise not_found(CONTENT_NOT_FOUND)
        meta = ContentMeta.of(*loaded)
        try:
            client.set(meta_key(content_id), meta.dumps(), ex=META_TTL_SECONDS)
        except redis.RedisError:
            log.warning("cache.unavailable", cache="content_meta")
    reason = _decode_reason(raw_reason)
    if reason is None:
        reason = _entitlement_from_db(session, user_id, meta)
        _store_reason(client, user_id, meta.id, reason)
    decision = _decide(reason, meta)
    if meta.status != "published" and not decision.is_staff:
        raise not_found(CONTENT_NOT_FOUND)
    return Playable(meta, decision)
