"""The only place Redis key names are built (the cache/session Redis, ``REDIS_URL``).

Every key the application reads or writes is named by one function (or constant) below, so the
layout is visible in one file and a prefix cannot drift between a writer and its readers. Modules
call these; they never spell a key themselves (tests/foundation/test_ownership.py checks). A Lua
script gets its keys through ``KEYS``/``ARGV``; where a script must build a key itself (it only
learns the member inside Redis, e.g. from ``SPOP``), the caller passes the family's prefix from
here as an ``ARGV`` and the script appends the member. This module imports no domain package.

Layout::

    sess:{token_sha256}                      session cache entry (or the "revoked" tombstone)
    sess:u:{user_id}                         set of a user's cached session hashes
    me:{user_id}                             cached GET /auth/me body, tagged with its generation
    me:gen:{user_id}                         the /me body's generation
    access:{user_id}:{content_id}            cached entitlement reason ("{reason}@{read at, ms}")
    access:u:{user_id}                       set of the content ids of a user's access entries
    content:gen:{content_id}                 the content snapshot's generation token
    org_settings:{org_id}                    cached org settings (branding)
    catalog:gen:{org_id}                     the public catalogue's generation (one per org)
    catalog:page:{org_id_or_slug}:{digest}   a cached catalogue list body, tagged with org and generation
    catalog:item:{content_id}                a cached catalogue item (without its preview token), same tags
    pb:p:{user_id}:{content_id}              buffered playback progress (hash)
    pb:dirty                                 progress members to flush ("{user_id}:{content_id}")
    pb:dirty:u:{user_id}                     one user's dirty content ids
    pb:seen:{yyyymmdd}:{content_id}:{user_id} "views_started counted today" marker
    pb:stats:{yyyymmdd}:{content_id}         the day's watch counters (hash)
    pb:stats:dirty                           stats members to roll up ("{yyyymmdd}:{content_id}")
    pb:stats:inflight:{run_id}:{member}      counters claimed by one rollup run
    lock:beat:{task_name}                    a periodic task's single-run lock
    payments:local:session:{session_id}      the local payment provider's copy of a session it created
    rl:{scope}:{who}                         a rate limit's log of admitted requests (sorted set)
"""

from __future__ import annotations

import uuid

Id = uuid.UUID | str

# ---- sessions (app.identity.sessions) -----------------------------------------------------------

SESSION_PREFIX = "sess:"


def session(token_hash: str) -> str:
    """A session's cache entry: the principal as JSON, or the revoked tombstone."""
    return f"sess:{token_hash}"


def session_index(user_id: Id) -> str:
    """The set of a user's cached session hashes (to tombstone them all at once)."""
    return f"sess:u:{user_id}"


# ---- the /auth/me body (app.identity.me_cache) --------------------------------------------------

ME_PREFIX = "me:"


def me_body(user_id: Id) -> str:
    """The cached ``GET /auth/me`` body: ``<generation>\\n<json>``."""
    return f"me:{user_id}"


def me_generation(user_id: Id) -> str:
    """The current generation of a user's ``/me`` body (a random token)."""
    return f"me:gen:{user_id}"


# ---- access entries (app.access.cache) -----------------------------------------------------------

ACCESS_PREFIX = "access:"


def access_entry(user_id: Id, content_id: Id) -> str:
    """The cached database part of the entitlement rule (``staff``/``purchased``/… or ``none``)."""
    return f"access:{user_id}:{content_id}"


def access_index(user_id: Id) -> str:
    """The content ids of a user's access entries, so that a change of the user's staff status
    (a membership, the platform owner role) can drop all of them (app.identity.access_entries)."""
    return f"access:u:{user_id}"


def access_blocked(user_id: Id) -> str:
    """Present for a while after the user's staff status changed: meanwhile no access entry of the
    user is cached (app.identity.access_entries)."""
    return f"access:x:{user_id}"


ACCESS_REFRESH_BELOW_SECONDS = 30
"""An access entry used with less than this left of its 60 s TTL is extended by the hot path that
used it (app.access.service: the sliding TTL), so a process's near cache drops its copy this much
before the Redis key would expire (``NEAR_CACHE_EXPIRE_EARLY``): the next read then goes to Redis
while the key is still there, and extends it."""


# ---- content snapshot tokens (app.content.cache) ------------------------------------------------

CONTENT_GENERATION_PREFIX = "content:gen:"


def content_generation(content_id: Id) -> str:
    """The generation token of a content item's hot-path snapshot."""
    return f"content:gen:{content_id}"


# ---- org settings (app.orgs.branding) ------------------------------------------------------------

ORG_SETTINGS_PREFIX = "org_settings:"


def org_settings(org_id: Id) -> str:
    """An organization's settings snapshot (JSON)."""
    return f"org_settings:{org_id}"


# ---- the public catalogue (app.catalog.cache; the generation's writer: app.orgs.catalog_generation) --

CATALOG_GENERATION_PREFIX = "catalog:gen:"
CATALOG_PAGE_PREFIX = "catalog:page:"
CATALOG_ITEM_PREFIX = "catalog:item:"


def catalog_generation(org_id: Id) -> str:
    """The generation of an org's public catalogue (a random token, replaced by every change)."""
    return f"catalog:gen:{org_id}"


def catalog_page(org_ref: str, digest: str) -> str:
    """A catalogue list body as the org's slug or id (``org_ref``) and the query (``digest``) ask it:
    ``<org_id>\n<generation>\n<json>``."""
    return f"catalog:page:{org_ref}:{digest}"


def catalog_item(content_id: Id) -> str:
    """A catalogue item's facts (CatalogDetail without the preview), ``<org_id>\\n<generation>\\n<json>``."""
    return f"catalog:item:{content_id}"


# ---- playback progress and watch statistics (app.access.progress, app.access.stats) ------------

PLAYBACK_PREFIX = "pb:"

PROGRESS_PREFIX = "pb:p:"
"""``PROGRESS_PREFIX .. member`` is ``progress(user, content)``: the flush scripts
(app/access/lua/fetch.lua, forget_user.lua) get it as an ARGV and append the member."""

PROGRESS_DIRTY = "pb:dirty"
"""The set of progress members (``{user_id}:{content_id}``) not yet flushed to Postgres."""

USER_DIRTY_PREFIX = "pb:dirty:u:"
"""``USER_DIRTY_PREFIX .. user_id`` is ``user_dirty(user)``: app/access/lua/forget.lua gets it as
an ARGV and appends the user id it reads from each member."""

DAILY_STATS_PREFIX = "pb:stats:"
"""``DAILY_STATS_PREFIX .. stats_member`` is ``daily_stats(day, content)`` (a stats member is
``{yyyymmdd}:{content_id}``): app/access/lua/stats_claim.lua and stats_merge_back.lua get it as an
ARGV and append the member."""

STATS_DIRTY = "pb:stats:dirty"
"""The set of stats members whose counters the next rollup adds to Postgres."""

STATS_INFLIGHT_PREFIX = "pb:stats:inflight:"
"""``stats_inflight(run, member)`` starts with it (a rollup scans for leftovers under it);
app/access/lua/stats_claim.lua gets it as an ARGV and appends ``{run_id}:{member}``."""


def progress(user_id: Id, content_id: Id) -> str:
    """One viewer's buffered progress on one item (hash: pos, dur, completed, completed_at, ts, …)."""
    return f"pb:p:{user_id}:{content_id}"


def user_dirty(user_id: Id) -> str:
    """The content ids of one user's unflushed progress (the library flushes them first)."""
    return f"pb:dirty:u:{user_id}"


def progress_seen(day: str, content_id: Id, user_id: Id) -> str:
    """Set once per viewer, item and day (``yyyymmdd``): the day's ``views_started`` counted."""
    return f"pb:seen:{day}:{content_id}:{user_id}"


def daily_stats(day: str, content_id: Id) -> str:
    """One item's watch counters of one day (``yyyymmdd``), until the rollup claims them."""
    return f"pb:stats:{day}:{content_id}"


def stats_inflight(run_id: str, stats_member: str) -> str:
    """Counters of ``stats_member`` claimed (renamed) by rollup run ``run_id``."""
    return f"pb:stats:inflight:{run_id}:{stats_member}"


# ---- periodic tasks (app.jobs) -------------------------------------------------------------------

LOCK_PREFIX = "lock:"


def beat_lock(task_name: str) -> str:
    """Held (SET NX EX) while a periodic task runs, so an accidental second beat skips it."""
    return f"lock:beat:{task_name}"


# ---- the local payment provider (app.payments.local_provider) ----------------------------------

PAYMENTS_PREFIX = "payments:"


def local_payment_session(session_id: str) -> str:
    """The local provider's own record of a checkout session it created, so a session whose
    ``checkout_sessions`` row was never stored can still be read back (security.md §9)."""
    return f"payments:local:session:{session_id}"


# ---- rate limits (app.ratelimit) ----------------------------------------------------------------

RATE_LIMIT_PREFIX = "rl:"


def rate_limit(scope: str, who: str) -> str:
    """One limit's log: ``scope`` names the limit (a route's, ``api``, ``storage``), ``who`` the
    client (``ip:{address}``, ``user:{user_id}``, or a route's own, e.g. IP and hashed email)."""
    return f"rl:{scope}:{who}"


# ---- derived lists -------------------------------------------------------------------------------

PREFIXES: tuple[str, ...] = (
    SESSION_PREFIX,
    ME_PREFIX,
    ACCESS_PREFIX,
    CONTENT_GENERATION_PREFIX,
    ORG_SETTINGS_PREFIX,
    CATALOG_GENERATION_PREFIX,
    CATALOG_PAGE_PREFIX,
    CATALOG_ITEM_PREFIX,
    PLAYBACK_PREFIX,
    LOCK_PREFIX,
    PAYMENTS_PREFIX,
    RATE_LIMIT_PREFIX,
)
"""Every key above starts with one of these (nothing else in app/ or tasks/ may spell them)."""

NEAR_CACHE_PREFIXES: tuple[str, ...] = (
    SESSION_PREFIX,
    ME_PREFIX,
    ACCESS_PREFIX,
    CONTENT_GENERATION_PREFIX,
    CATALOG_GENERATION_PREFIX,
)
"""The keys each process's near cache tracks (app/speed/nearcache.py): those ``guards.with_session_read``
fetches with the session entry (sessions, /me bodies and generations, access entries, content
snapshot tokens), and the catalogue generations (app/catalog/cache.py; the page bodies are not
tracked: they are kept per process under the generation they were built with). Redis reports
every change under these prefixes."""

NEAR_CACHE_EXPIRE_EARLY: dict[str, float] = {ACCESS_PREFIX: ACCESS_REFRESH_BELOW_SECONDS}
"""Per prefix: how long before its Redis TTL runs out the near cache drops a copy (see
``ACCESS_REFRESH_BELOW_SECONDS``)."""
