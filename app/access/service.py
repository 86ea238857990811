"""The one entitlement rule (api.md §10) and the visibility of content to a signed-in caller.

``can_access(session, user_id, content)`` is used by the access check, the stream endpoint, the
HLS proxy, progress writes and the library. Reason, first match: ``staff`` (a member of the
content's org, or a platform_owner) -> ``purchased`` / ``complimentary`` (an active grant, i.e.
``revoked_at IS NULL``) -> ``free`` (``price_cents`` null or 0) -> ``none``.

The database part (staff or grant) is cached in Redis under ``access:{user_id}:{content_id}``
with a 60 s TTL (jobs.md §7.1), as ``{reason}@{read at, ms}``. The ``free`` rule is applied on
top of the cached answer from the content row the caller already loaded, so a price change is
never hidden by the cache, nor is an unpublish (the content's generation token). Every writer of
what the entry caches drops it once its change is committed:

- grants (``content_access``: purchase, refund, dispute, complimentary grant and revocation) go
  through ``app.access.grants``, which deletes the (user, content) entry (``app.access.cache``);
- staff status (a membership added or removed, the platform owner role) is changed by
  app.orgs and app.identity, which delete all of the user's entries
  (``app.identity.access_entries``, through the user's index ``access:u:{user_id}``, written here
  with each entry).

Sliding TTL: since no writer relies on the TTL to end a stale answer, the hot paths (a heartbeat's
script, a stream URL's read, app/access/fast_path.py) extend an entry they use when less than 30 s
of its TTL is left (``lua/refresh.lua``): it expires 60 s after the last use that extended it, as
jobs.md's "TTL 60 s" reads for a key that is touched, and an active viewer does not go back to
Postgres every minute. The TTL still bounds what no writer can announce: a writer whose tombstone did
not reach Redis (it logs ``cache.unavailable``). For that, an entry is never extended past
``ACCESS_CACHE_MAX_AGE_SECONDS`` (5 minutes, as long as a session entry lives) after its database
read. A request that read Postgres just before a change committed cannot cache its (old) answer
after it: writers leave a tombstone (``access_entries.TOMBSTONE``, 30 s) instead of deleting the
entry, and an entry is cached only where there is none (``lua/fill.lua``). Redis being down costs
one query per request.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import redis
import structlog
from flask import current_app
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app import errors, keys
from app.access.cache import access_cache_key
from app.access.lua import source
from app.access.models import ContentAccess
from app.content.cache import gen_key
from app.content.models import Content
from app.extensions import redis_script
from app.http import not_found, parse_uuid
from app.identity.access_entries import TOMBSTONE
from app.identity.models import User
from app.identity.sessions import Prefetched
from app.media.models import MediaCaption, MediaItem
from app.orgs.models import Membership
from app.speed.bounded import make_room

log = structlog.get_logger(__name__)

Reason = Literal["staff", "purchased", "complimentary", "free", "none"]
ACCESS_CACHE_TTL_SECONDS = 60
ACCESS_CACHE_MAX_AGE_SECONDS = 300  # never extended past this after its database read
ACCESS_LUA_CONSTANTS = (
    f"local ACCESS_TTL_MS, ACCESS_REFRESH_BELOW_MS, ACCESS_MAX_AGE_MS = {ACCESS_CACHE_TTL_SECONDS * 1000}, "
    f"{keys.ACCESS_REFRESH_BELOW_SECONDS * 1000}, {ACCESS_CACHE_MAX_AGE_SECONDS * 1000}\n"
    f"local ACCESS_TOMBSTONE = '{TOMBSTONE}'\n"
)
"""What app/access/lua/refresh.lua and checked_write.lua expect before them (``refresh_access``'s
limits, and the tombstone a writer leaves in an entry's place)."""
_FILL_LUA = source("fill")
# The access index outlives every entry it lists (an entry dies by its read time + the max age).
_INDEX_TTL_SECONDS = ACCESS_CACHE_MAX_AGE_SECONDS + ACCESS_CACHE_TTL_SECONDS
CONTENT_NOT_FOUND = "CONTENT_NOT_FOUND"
_CACHED_REASONS: tuple[Reason, ...] = ("staff", "purchased", "complimentary", "none")
_CACHEABLE: frozenset[str] = frozenset(_CACHED_REASONS)


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


def decode_reason(raw: Any) -> Reason | None:
    """The reason of an access entry as read (``{reason}@{read at}``, or a bare reason)."""
    if raw is None:
        return None
    cached = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition("@")[0]
    return cached if cached in _CACHEABLE else None  # type: ignore[return-value]


def _store_reason(client: redis.Redis, user_id: uuid.UUID, content_id: uuid.UUID, reason: Reason) -> None:
    """Cache ``reason`` (read from Postgres just now) with its read time, and list it in the
    user's index (``keys.access_index``), in one round trip; not over a writer's tombstone
    (``access_entries.TOMBSTONE``: the answer read may predate the change)."""
    try:
        redis_script(client, _FILL_LUA)(
            keys=[access_cache_key(user_id, content_id), keys.access_index(user_id), keys.access_blocked(user_id)],
            args=[
                f"{reason}@{time.time_ns() // 1_000_000}",
                ACCESS_CACHE_TTL_SECONDS,
                str(content_id),
                _INDEX_TTL_SECONDS,
                TOMBSTONE,
            ],
        )
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access")


def _cached_entitlement(session: Session, user_id: uuid.UUID, content: Priced) -> Reason:
    client = _redis()
    try:
        raw = client.get(access_cache_key(user_id, content.id))
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access")
        return _entitlement_from_db(session, user_id, content)
    reason = decode_reason(raw)
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
# Both run for every play and every few seconds of playback. The content and media facts they need
# are kept per process (``ContentMeta``, 10 s), tagged with the content's generation token
# (``app.content.cache``); the token and the access entry come with the session read (the process's
# near cache, app/speed/nearcache.py, or the one Redis call a cold request makes; an MGET here otherwise),
# or from inside the heartbeat script, so a warm request does no database round trip and decodes no
# snapshot. What acts at once: grants (commerce deletes the access entry),
# any committed change of the content row (edit, price, media swap, unpublish, delete: the
# content service replaces the token) and a caption added or removed (app/media/captions.py
# replaces the tokens of the content using the media). What may lag up to 10 s: the media facts (ready,
# renditions, duration, thumbnail) after a re-ingest of media already in use. That is safe because
# neither endpoint hands out anything by itself: the HLS proxy re-reads content, media and access
# on every playlist, and a heartbeat only records progress.

SNAPSHOT_TTL_SECONDS = 10.0
SNAPSHOT_MAX_ENTRIES = 10_000


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
    captions: tuple[tuple[str, str], ...] = ()  # (language, label) by language (api.md §6.2)

    @classmethod
    def of(cls, content: Content, media: MediaItem, captions: tuple[tuple[str, str], ...] = ()) -> ContentMeta:
        return cls(
            content.id, content.organization_id, content.status, content.price_cents, content.content_type,
            media.id, media.status, media.deleted_at is not None, media.hls_master_key, list(media.renditions),
            media.duration_seconds, media.thumbnail_key, media.waveform_key, captions,
        )  # fmt: skip

    @classmethod
    def load(cls, session: Session, content: Content, media: MediaItem) -> ContentMeta:
        """``of`` with the media's captions read (video only: audio has none)."""
        return cls.of(content, media, caption_tracks(session, media) if media.media_type == "video" else ())

    @property
    def media_ready(self) -> bool:
        return self.media_status == "ready" and not self.media_deleted and bool(self.hls_master_key)


def caption_tracks(session: Session, media: MediaItem) -> tuple[tuple[str, str], ...]:
    """``(language, label)`` of the media's captions, by language."""
    rows = session.execute(
        select(MediaCaption.language, MediaCaption.label)
        .where(MediaCaption.media_id == media.id)
        .order_by(MediaCaption.language)
    ).all()
    return tuple((row.language, row.label) for row in rows)


def _permitted(meta: ContentMeta) -> str:
    """The cached reasons that let the caller play ``meta`` (``decide_playable`` neither raises 404
    nor denies), as ``",purchased,staff,"`` for the heartbeat script."""
    ok = []
    for reason in _CACHED_REASONS:
        try:
            if decide_playable(reason, meta).has_access:
                ok.append(reason)
        except errors.NotFound:  # not visible to a caller with that reason
            pass
    return "," + ",".join(ok) + ","


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: ContentMeta
    gen: str  # the content's generation token when the rows were read ("" when Redis had none)
    permitted: str  # ``_permitted(meta)``
    loaded_at: float


_snapshots: dict[uuid.UUID, Snapshot] = {}


def cached_snapshot(content_id: uuid.UUID) -> Snapshot | None:
    """This process's snapshot of the content, if younger than 10 s (its token is not checked here)."""
    snapshot = _snapshots.get(content_id)
    if snapshot is None or time.monotonic() - snapshot.loaded_at >= SNAPSHOT_TTL_SECONDS:
        return None
    return snapshot


def load_snapshot(session: Session, content_id: uuid.UUID, gen: str) -> Snapshot:
    """Read content + media (404 when deleted or missing) and keep them tagged with ``gen``.

    ``gen`` must have been read before the rows: a change committed in between replaces the token
    after its commit, so the next request sees a new token and reloads."""
    loaded = load_content(session, content_id)
    if loaded is None:
        raise not_found(CONTENT_NOT_FOUND)
    meta = ContentMeta.load(session, *loaded)
    snapshot = Snapshot(meta, gen, _permitted(meta), time.monotonic())
    make_room(_snapshots, SNAPSHOT_MAX_ENTRIES)  # (the oldest go; a reload costs one indexed query)
    _snapshots[content_id] = snapshot
    return snapshot


def forget_snapshots() -> None:
    _snapshots.clear()


def gen_of(raw: Any) -> str:
    return "" if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)


def entitlement(session: Session, client: redis.Redis, user_id: uuid.UUID, meta: Priced) -> Reason:
    """The database answer for an access entry that was not cached; cached (60 s, sliding)."""
    reason = _entitlement_from_db(session, user_id, meta)
    _store_reason(client, user_id, meta.id, reason)
    return reason


def decide_playable(reason: Reason, meta: ContentMeta) -> AccessDecision:
    """``visible_content``'s rule on a snapshot: not published -> 404 unless staff; else the
    decision (403 is the caller's call)."""
    decision = _decide(reason, meta)
    if meta.status != "published" and not decision.is_staff:
        raise not_found(CONTENT_NOT_FOUND)
    return decision


@dataclass(frozen=True, slots=True)
class Playable:
    meta: ContentMeta
    decision: AccessDecision


def playable_session_keys(path_args: dict[str, Any]) -> list[str] | None:
    """For ``guards.with_session_read``: ``playable``'s two keys, read with the session entry."""
    content_id = parse_uuid(path_args.get("content_id"))
    if content_id is None:
        return None  # the route answers 404 for it
    return [access_cache_key("{user}", content_id), gen_key(content_id)]


def playable(session: Session, user_id: uuid.UUID, content_id: uuid.UUID, prefetched: Prefetched) -> Playable:
    """``visible_content`` for the hot paths: same rules (404 / decision); it makes no Redis round
    trip of its own when the route read its keys with the session (``prefetched``: near cache or
    Redis), else one ``MGET``."""
    client = _redis()
    access_key, content_gen_key = access_cache_key(user_id, content_id), gen_key(content_id)
    if access_key in prefetched and content_gen_key in prefetched:
        raw_reason, raw_gen = prefetched[access_key], prefetched[content_gen_key]
    else:
        try:
            # The client returns bytes (no decode_responses); redis-py's own types allow str too.
            raw_reason, raw_gen = cast("list[bytes | None]", client.mget([access_key, content_gen_key]))
        except redis.RedisError:
            log.warning("cache.unavailable", cache="content_snapshot")
            visible = visible_content(session, user_id, content_id)
            return Playable(ContentMeta.load(session, visible.content, visible.media), visible.decision)
    gen = gen_of(raw_gen)
    snapshot = cached_snapshot(content_id)
    if snapshot is None or snapshot.gen != gen:
        snapshot = load_snapshot(session, content_id, gen)
    meta = snapshot.meta
    reason = decode_reason(raw_reason)
    if reason is None:
        reason = entitlement(session, client, user_id, meta)
    return Playable(meta, decide_playable(reason, meta))
