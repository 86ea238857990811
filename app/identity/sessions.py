"""Login sessions: token -> ``Principal`` through the Redis session cache, sliding expiry, cookies
(security.md §1, §1.1).

A request presents a token as ``Authorization: Bearer <token>`` or the ``codex_session`` cookie
(Bearer wins; a malformed Authorization header is a 401 even when a cookie is present). The
token is resolved once per request (memoised on ``g``): Redis ``sess:{sha256}`` first, then
Postgres; Redis being down only costs the database read. Resolution never writes: the sliding
expiry update happens in ``after_request`` and only for successful responses, so a rejected
request writes nothing (README §3.4).

The session read can fetch the view's own keys in the same round trip (``KeysFor``, declared on
the view with ``guards.with_session_read``); they travel on the principal (``Principal.prefetched``).
The guards that views use sit in app/identity/guards.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, cast

import redis
import structlog
from flask import Flask, Response, current_app, g, request
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app import db, keys, ratelimit
from app.extensions import get_near_cache, get_redis, redis_script, run_script
from app.http import view_option
from app.identity.models import AuthSession, User
from app.speed.bounded import make_room
from app.speed.nearcache import Miss, NearCache

log = structlog.get_logger(__name__)

COOKIE_NAME = "codex_session"
CACHE_TTL_SECONDS = 300
REVOKED = b"revoked"  # the cache entry of a revoked session (a tombstone, see ``evict``)
# Never over a tombstone: this put follows a database read that may have happened just before
# the revocation committed; the tombstone written after that commit must win, or the revoked token
# would work for up to CACHE_TTL_SECONDS. Every index member expires within CACHE_TTL_SECONDS of
# being added, so the index may too.
_PUT_UNLESS_REVOKED = """
if redis.call('GET', KEYS[1]) == ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""
_DELETE_UNLESS_REVOKED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
SLIDE_AFTER = timedelta(minutes=5)

_BEARER = re.compile(r"(?i:bearer) +([A-Za-z0-9_-]{1,256})")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---- tokens ---------------------------------------------------------------------------------


def new_token() -> tuple[str, str]:
    """A fresh opaque token (32 random bytes, URL-safe base64) and its hex SHA-256."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def session_lifetime(remember_me: bool) -> timedelta:
    config = current_app.config
    if remember_me:
        return timedelta(days=config["SESSION_REMEMBER_DAYS"])
    return timedelta(hours=config["SESSION_TTL_HOURS"])


# ---- the principal --------------------------------------------------------------------------

Prefetched = Mapping[str, bytes | None]
"""Keys the session read fetched for the view (``KeysFor``), by name; ``None``: no such key in
Redis. Only keys of the principal's own user: they were built from the session entry that
authenticated the request. A key that is absent was not fetched: read it yourself."""

NOTHING_PREFETCHED: Prefetched = MappingProxyType({})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as the session cache knows it (no user row loaded)."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    expires_at: datetime
    last_seen_at: datetime
    remember_me: bool
    token_hash: str
    token: str
    via: str  # "bearer" | "cookie"
    # This request's; the rest is the session's (and shared through ``_PARSED``).
    prefetched: Prefetched = field(default_factory=lambda: NOTHING_PREFETCHED, compare=False, repr=False)

    @property
    def is_platform_owner(self) -> bool:
        return self.role == "platform_owner"

    def with_prefetched(self, prefetched: Prefetched) -> Principal:
        """This principal carrying one request's prefetched keys. A shallow copy by hand: it runs
        on every request of a view that prefetches, and ``dataclasses.replace`` costs several
        times more (it goes through ``fields()`` and the frozen ``__init__``)."""
        clone = object.__new__(Principal)
        state = clone.__dict__
        state.update(self.__dict__)
        state["prefetched"] = prefetched
        return clone

    def cache_value(self) -> str:
        # The spec's {session_id, user_id, role, expires_at} plus what sliding expiry needs.
        return json.dumps(
            {
                "session_id": str(self.session_id),
                "user_id": str(self.user_id),
                "role": self.role,
                "expires_at": self.expires_at.isoformat(),
                "last_seen_at": self.last_seen_at.isoformat(),
                "remember_me": self.remember_me,
            }
        )


# Parsed cache entries: the same bytes come back on every request of a session, and parsing them
# (JSON, two UUIDs, two timestamps) is a visible share of an authenticated request. The entry
# holds every field, so equal bytes (with the same token and transport) mean an equal Principal;
# expiry is still checked against the clock on each request. Bounded like the near cache that holds
# the entries (20,000; about 1 KB each here), so every session the near cache keeps stays parsed.
_PARSED: dict[tuple[bytes | str, str, str], Principal | None] = {}
_PARSED_MAX = 20_000


def _from_cache(raw: bytes | str, token_hash: str, token: str, via: str) -> Principal | None:
    key = (raw, token, via)
    try:
        return _PARSED[key]
    except KeyError:
        pass
    principal = _parse_cache_entry(raw, token_hash, token, via)
    make_room(_PARSED, _PARSED_MAX)
    _PARSED[key] = principal
    return principal


def _parse_cache_entry(raw: bytes | str, token_hash: str, token: str, via: str) -> Principal | None:
    try:
        data = json.loads(raw)
        return Principal(
            session_id=uuid.UUID(data["session_id"]),
            user_id=uuid.UUID(data["user_id"]),
            role=data["role"],
            expires_at=datetime.fromisoformat(data["expires_at"]),
            last_seen_at=datetime.fromisoformat(data["last_seen_at"]),
            remember_me=bool(data["remember_me"]),
            token_hash=token_hash,
            token=token,
            via=via,
        )
    except (ValueError, KeyError, TypeError):
        return None


# ---- the session cache (keys named in app/keys.py) -------------------------------------------

KeysFor = Callable[[dict[str, Any]], list[str] | None]
"""The keys a view reads right after authentication, from its path arguments; ``{user}`` stands
for the session's user id. They arrive as ``Principal.prefetched``."""
SESSION_KEYS_OPTION = "_codex_session_keys"
"""The view option that holds the view's ``KeysFor`` (set by ``guards.with_session_read``)."""

# The session entry plus the view's keys in one round trip. The keys depend on the session's
# user id, so a pipeline cannot send them with the GET; the script fills ``{user}`` in. (Keys built
# inside a script are fine on a single Redis; a Redis Cluster would need them on one slot.) Each
# value comes with its PTTL, for the near cache: ``{session, pttl, user_id, value_1, pttl_1, ...}``.
_SESSION_WITH_KEYS = """
local session = redis.call('GET', KEYS[1])
if not session then return false end
local out = {session, redis.call('PTTL', KEYS[1])}
-- (a pattern, not cjson: cheaper, and the entry is our own json.dumps output)
local user_id = string.match(session, '"user_id": "([0-9a-f-]+)"')
if not user_id then return out end
out[3] = user_id
for i, template in ipairs(ARGV) do
  local key = (string.gsub(template, '{user}', user_id))
  out[2 + 2 * i] = redis.call('GET', key) or false
  out[3 + 2 * i] = redis.call('PTTL', key)
end
return out
"""
_USER_ID = re.compile(rb'"user_id": "([0-9a-f-]+)"')  # the script's pattern, for near-cache hits

# The same read with the request's rate limits (app/ratelimit) counted under the session's user,
# for a request whose limiter needs the user anyway: one round trip for both. KEYS: 1 the session,
# then the limits' keys (``{user}`` stands for the user id); ARGV: the view's
# templates, then the limiter's (the member suffix, a (limit, window ms) pair per limit key, then
# the number of limit keys). Returns {limits, read}: ``read`` as above, ``limits`` as
# ``rate_limit()`` answers, or empty when no session entry names a user (the caller counts then).
_SESSION_WITH_KEYS_LIMITED = (
    ratelimit.FRAGMENT
    + """
local rl_n = tonumber(ARGV[#ARGV])
local views = #ARGV - 2 * rl_n - 2
local session = redis.call('GET', KEYS[1])
if not session then return {{}, false} end
local out = {session, redis.call('PTTL', KEYS[1])}
local user_id = string.match(session, '"user_id": "([0-9a-f-]+)"')
if not user_id then return {{}, out} end
out[3] = user_id
for i = 1, views do
  local key = (string.gsub(ARGV[i], '{user}', user_id))
  out[2 + 2 * i] = redis.call('GET', key) or false
  out[3 + 2 * i] = redis.call('PTTL', key)
end
local names = {}
for i = 1, rl_n do names[i] = (string.gsub(KEYS[1 + i], '{user}', user_id)) end
return {rate_limit(names, views + 1), out}
"""
)


def _ttl(pttl: int) -> float | None:
    """A key's remaining lifetime for the near cache: None when it has no expiry or does not exist."""
    return pttl / 1000 if pttl >= 0 else None


CacheRead = tuple[bytes | None, dict[str, bytes | None] | None]
"""The session entry (None: not cached, or Redis unavailable) and the view's keys fetched with
it (None: none were)."""

_NOT_CACHED: CacheRead = (None, None)


def _cache_get(token_hash: str, keys_for: KeysFor | None = None, limits: ratelimit.Pending | None = None) -> CacheRead:
    """The session entry and the view's keys: from this process's near cache when it holds them
    all (app/speed/nearcache.py: exact, Redis reports every change), else from Redis, with ``limits``
    counted in the same call when the entry names a user (``limits.settle``)."""
    templates = (keys_for(request.view_args or {}) if keys_for is not None else None) or []
    key = keys.session(token_hash)
    near = get_near_cache()
    epoch = near.sync() if near is not None else None
    if near is not None and epoch is not None:
        held = _near_get(near, key, templates)
        if held is not None:
            return held
    try:
        if limits is None and epoch is None and not templates:
            return cast(bytes | None, get_redis().get(key)), None
        read = read_session(get_redis(), near, epoch, key, templates, limits.templates() if limits else None)
    except redis.RedisError:
        log.warning("cache.unavailable", cache="sessions")
        return _NOT_CACHED
    if limits is not None and read.limited:
        limits.settle(read.limited)
    return read.session, read.fetched


@dataclass(frozen=True, slots=True)
class SessionRead:
    """One Redis read of a session entry (``session``: None when not cached), the view's keys
    read with it (``fetched``: None when none were) and the limits counted with it (``limited``:
    ``rate_limit()``'s answer; empty when they were not counted: no entry naming a user)."""

    session: bytes | None
    fetched: dict[str, bytes | None] | None
    limited: Sequence[Any]


def read_session(
    client: redis.Redis,
    near: NearCache | None,
    epoch: int | None,
    key: str,
    templates: list[str],
    limits: tuple[list[str], list[Any]] | None,
) -> SessionRead:
    """The session entry ``key`` and the view's keys (``templates``, ``{user}``: the entry's user
    id) from Redis in one call, kept in ``near`` (filled under ``epoch``, taken before the call);
    ``limits``: the keys of the request's rate limits with ``{user}`` for the user id and their
    ARGV (``Pending.templates``; or ``names`` and ``args()`` of a ``Bound`` bound to ``"{user}"``),
    counted in that call. Raises ``redis.RedisError``."""
    limited: Sequence[Any] = ()
    if limits is not None:
        limit_keys, limit_args = limits
        both = run_script(
            redis_script(client, _SESSION_WITH_KEYS_LIMITED),
            [key, *limit_keys],
            [*templates, *limit_args, len(limit_keys)],
        )
        limited, result = both[0], both[1]
    else:
        result = redis_script(client, _SESSION_WITH_KEYS)(keys=[key], args=templates)
    if not result:
        return SessionRead(None, None, limited)
    session = cast(bytes, result[0])
    fills = [(key, session, _ttl(result[1]))]
    fetched: dict[str, bytes | None] | None = None
    if len(result) > 2 and templates:  # (a tombstone or an unreadable entry brings nothing more)
        user_id = result[2].decode()
        fetched = {}
        for i, template in enumerate(templates):
            view_key, value = template.replace("{user}", user_id), result[3 + 2 * i]
            fetched[view_key] = value
            fills.append((view_key, value, _ttl(result[4 + 2 * i])))
    if near is not None and epoch is not None:
        near.fill(epoch, fills)
    return SessionRead(session, fetched, limited)


def _near_get(near: NearCache, key: str, templates: list[str]) -> CacheRead | None:
    """``_cache_get``'s answer when the near cache holds the session entry and every view key."""
    session = near.get(key)
    if not isinstance(session, bytes):  # not held, or held as absent (the database decides)
        return None
    if not templates or session == REVOKED:
        return session, None
    match = _USER_ID.search(session)
    if match is None:
        return None
    user_id = match.group(1).decode()
    fetched: dict[str, bytes | None] = {}
    for template in templates:
        view_key = template.replace("{user}", user_id)
        value = near.get(view_key)
        if isinstance(value, Miss):
            return None
        fetched[view_key] = value
    return session, fetched


def _cache_put(principal: Principal, now: datetime) -> None:
    remaining = int((principal.expires_at - now).total_seconds())
    ttl = min(CACHE_TTL_SECONDS, remaining)
    if ttl <= 0:
        return
    try:
        redis_script(get_redis(), _PUT_UNLESS_REVOKED)(
            keys=[keys.session(principal.token_hash), keys.session_index(principal.user_id)],
            args=[principal.cache_value(), ttl, REVOKED, principal.token_hash, CACHE_TTL_SECONDS],
        )
    except redis.RedisError:
        log.warning("cache.unavailable", cache="sessions")


def evict(user_id: uuid.UUID | str, token_hashes: Iterable[str], *, all_sessions: bool = False) -> None:
    """Replace the cache entries of revoked sessions (and, with ``all_sessions``, every entry of the
    user) by tombstones: a revoked token is refused without a database read, and a request that
    read the row just before the revocation cannot cache it again (``_cache_put`` checks)."""
    hashes = set(token_hashes)
    near = get_near_cache()
    try:
        client = get_redis()
        if all_sessions:
            hashes.update(
                h.decode() if isinstance(h, bytes) else h for h in client.smembers(keys.session_index(user_id))
            )
        pipe = client.pipeline(transaction=False)
        for token_hash in hashes:
            pipe.set(keys.session(token_hash), REVOKED, ex=CACHE_TTL_SECONDS)
        if all_sessions:
            pipe.delete(keys.session_index(user_id))
        elif hashes:
            pipe.srem(keys.session_index(user_id), *hashes)
        pipe.execute()
    except redis.RedisError:
        # Entries expire within CACHE_TTL_SECONDS on their own.
        log.warning("cache.unavailable", cache="sessions", action="evict")
    finally:
        if near is not None:  # (Redis reports the change to every process; this one need not wait)
            near.evict([keys.session(token_hash) for token_hash in hashes])


def evict_after_commit(
    db_session: Session, user_id: uuid.UUID, token_hashes: Iterable[str], *, all_sessions: bool
) -> None:
    """Evict once the revocation is committed (evicting earlier could let a concurrent request
    re-cache the not-yet-revoked row)."""
    db.after_commit(db_session, _evict_committed, (user_id, list(token_hashes), all_sessions))


def _evict_committed(pending: list[tuple[uuid.UUID, list[str], bool]]) -> None:
    for user_id, hashes, all_sessions in pending:
        evict(user_id, hashes, all_sessions=all_sessions)


# ---- resolution -----------------------------------------------------------------------------


def _presented_token() -> tuple[str | None, str | None]:
    """(token, via) for the current request; none for a malformed Authorization header, even
    with a cookie."""
    headers = request.headers
    header = headers.get("Authorization")
    if header is not None:
        match = _BEARER.fullmatch(header.strip())
        if match is None:
            return None, None
        return match.group(1), "bearer"
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie and _TOKEN.fullmatch(cookie):
        return cookie, "cookie"
    return None, None


def _load_from_db(token_hash: str, token: str, via: str, now: datetime) -> Principal | None:
    row = db.session.execute(
        select(
            AuthSession.id,
            AuthSession.user_id,
            User.role,
            AuthSession.expires_at,
            AuthSession.last_seen_at,
            AuthSession.remember_me,
        )
        .join(User, User.id == AuthSession.user_id)
        .where(
            AuthSession.token_hash == token_hash,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
    ).first()
    if row is None:
        return None
    return Principal(
        session_id=row.id,
        user_id=row.user_id,
        role=row.role,
        expires_at=row.expires_at,
        last_seen_at=row.last_seen_at,
        remember_me=row.remember_me,
        token_hash=token_hash,
        token=token,
        via=via,
    )


def resolve(keys_for: KeysFor | None = None, limits: ratelimit.Pending | None = None) -> Principal | None:
    """The caller's session, or None (anonymous, unknown, expired, revoked or malformed).

    Memoised for the request; reads only (cache, then database). ``keys_for``: what the view will
    read next, fetched in the same round trip as the session entry (``Principal.prefetched``);
    ``limits``: the request's rate limits, counted in that round trip when it goes to Redis.
    """
    state = g._get_current_object()  # the request's g itself: read and written a dozen times here
    if "codex_auth_resolved" in state:
        return cast(Principal | None, state.codex_principal)
    state.codex_auth_resolved = True
    state.codex_principal = None
    token, via = _presented_token()
    if token is None or via is None:
        return None
    now = utcnow()
    token_hash = hash_token(token)
    cached, prefetched = _cache_get(token_hash, keys_for, limits)
    if cached == REVOKED:
        return None
    principal = _from_cache(cached, token_hash, token, via) if cached is not None else None
    if principal is None:  # miss (or an unreadable entry): the database decides
        principal = _load_from_db(token_hash, token, via, now)
        if principal is not None:
            _cache_put(principal, now)
    elif principal.expires_at <= now:
        principal = None
    if principal is None:
        return None
    if prefetched is not None:
        principal = principal.with_prefetched(prefetched)
    state.codex_principal = principal
    state.user_id = principal.user_id
    structlog.contextvars.bind_contextvars(user_id=str(principal.user_id))
    return principal


def warm_bearer_principal(near: NearCache, authorization: str, now: datetime) -> Principal | None:
    """``resolve``'s answer for a bearer token when this process's near cache holds the live
    session entry and the session is not due to slide; None in every other case (``resolve``
    then decides, 401 included). For app/access/fast_path.py, which has no request context."""
    match = _BEARER.fullmatch(authorization.strip())
    if match is None or near.sync() is None:
        return None
    token = match.group(1)
    token_hash = hash_token(token)
    raw = near.get(keys.session(token_hash))
    return _live_bearer(raw, token_hash, token, now) if isinstance(raw, bytes) else None


def bearer_principal(near: NearCache, client: redis.Redis, authorization: str, now: datetime) -> Principal | None:
    """``warm_bearer_principal``, reading the session entry from Redis (one call, kept in the near
    cache) when this process does not hold it: a returning user's first request in a process
    (each one holds its own copy). None in every case ``warm_bearer_principal`` declines, and on
    a Redis error (``resolve`` then decides, 401 included)."""
    principal = warm_bearer_principal(near, authorization, now)
    if principal is not None:
        return principal
    cold = cold_bearer_principal(near, client, authorization, now, [], None)
    return cold[0] if cold is not None else None


def cold_bearer_principal(
    near: NearCache,
    client: redis.Redis,
    authorization: str,
    now: datetime,
    templates: list[str],
    limits: tuple[list[str], list[Any]] | None,
) -> tuple[Principal | None, SessionRead] | None:
    """For a bearer token whose session entry this process does not hold (a returning user's
    first request in it): the session entry, the view's keys and the limits in one call, as the
    route's own read makes it (``read_session``), kept in the near cache. The principal is None
    in every case ``warm_bearer_principal`` declines (the route then decides; the read says
    whether it counted the limits). None when the entry is held after all, the near cache is not
    in use, or on a Redis error: nothing was counted."""
    match = _BEARER.fullmatch(authorization.strip())
    epoch = near.sync()  # (before the read: a change in between then keeps nothing)
    if match is None or epoch is None:
        return None
    token = match.group(1)
    token_hash = hash_token(token)
    key = keys.session(token_hash)
    if not isinstance(near.get(key), Miss):
        return None  # held: ``warm_bearer_principal``'s to answer
    try:
        read = read_session(client, near, epoch, key, templates, limits)
    except redis.RedisError:
        return None
    raw = read.session
    return (_live_bearer(raw, token_hash, token, now) if raw is not None else None), read


def _live_bearer(raw: bytes, token_hash: str, token: str, now: datetime) -> Principal | None:
    """The principal of a bearer's session entry when it is live and not due to slide."""
    if raw == REVOKED:
        return None
    principal = _from_cache(raw, token_hash, token, "bearer")
    if principal is None or principal.expires_at <= now or now - principal.last_seen_at > SLIDE_AFTER:
        return None
    return principal


def mark_session_ended() -> None:
    """The current session was revoked by this request: no sliding, no cookie re-issue."""
    g.codex_session_ended = True


def rate_limit_identity(limits: ratelimit.Pending) -> str | None:
    """User id for per-user rate limits (the limiter runs before any guard); None when anonymous.

    The view's own session read, with the limits in its round trip when it goes to Redis: the
    stream URL and /auth/me keep their one round trip with limits on."""
    try:
        principal = resolve(view_option(SESSION_KEYS_OPTION), limits)
    except Exception:  # the limiter must never fail a request because of the identity lookup
        log.warning("ratelimit.identity_unavailable")
        return None
    return str(principal.user_id) if principal else None


# ---- cookies --------------------------------------------------------------------------------


def _cookie_options() -> dict[str, Any]:
    config = current_app.config
    return {
        "path": "/",
        "domain": config["SESSION_COOKIE_DOMAIN"] or None,
        "secure": config["APP_ENV"] not in {"development", "test"},
        "httponly": True,
        "samesite": "Lax",
    }


def set_session_cookie(response: Response, token: str, remember_me: bool) -> None:
    # Without remember_me the cookie lives for the browser session (no Max-Age).
    max_age = int(session_lifetime(True).total_seconds()) if remember_me else None
    response.set_cookie(COOKIE_NAME, token, max_age=max_age, **_cookie_options())


def clear_session_cookie(response: Response) -> None:
    response.set_cookie(COOKIE_NAME, "", max_age=0, expires=0, **_cookie_options())


# ---- sliding expiry -------------------------------------------------------------------------


def _slide(response: Response) -> Response:
    principal: Principal | None = g.get("codex_principal")
    if principal is None or g.get("codex_session_ended") or response.status_code >= 400:
        return response
    now = utcnow()
    if now - principal.last_seen_at <= SLIDE_AFTER:
        return response
    session = db.session
    try:
        slid = session.execute(
            update(AuthSession)
            .where(AuthSession.id == principal.session_id, AuthSession.revoked_at.is_(None))
            .values(last_seen_at=now, expires_at=now + session_lifetime(principal.remember_me))
            .returning(AuthSession.id)
        ).first()
        session.commit()
    except SQLAlchemyError:
        session.rollback()
        log.warning("session.slide_failed")
        return response
    if slid is None:
        return response
    # Drop the cached copy rather than rewrite it, unless it is a tombstone: a concurrent
    # revocation must win.
    with contextlib.suppress(redis.RedisError):
        redis_script(get_redis(), _DELETE_UNLESS_REVOKED)(keys=[keys.session(principal.token_hash)], args=[REVOKED])
    if principal.remember_me and principal.via == "cookie" and "Set-Cookie" not in response.headers:
        set_session_cookie(response, principal.token, remember_me=True)
    return response


def init_app(app: Flask) -> None:
    """Register the rate-limit identity, the route pre-checks and the sliding-expiry hook.

    Called after the limiter and before ``http.register_request_hooks`` so that route limits
    (429) are checked before body size (413) and Content-Type (415), as README §3.4 orders.
    """
    from app.identity import prechecks

    app.extensions["rate_limit_identity"] = rate_limit_identity
    app.before_request(prechecks.before_request)
    app.after_request(_slide)
