"""The cached body of ``GET /auth/me`` (Redis ``me:{user_id}``), kept right by generations.

``/auth/me`` is the hottest authenticated read: every page load of a client asks it. Its body
(the user's columns and memberships with organization names) is cached as the exact JSON bytes
of the response, and read with the session entry (``guards.with_session_read``: from the process's
near cache when warm, else in the same Redis call), so a warm request makes no round trip of its
own, no Postgres query and no schema dump.

Nothing authorizes from this cache: org-scoped guards still read the membership from Postgres on
every request (security.md §1.1), so a stale entry could only show an old name or role, and the
scheme below prevents even that:

- Every write that can change the view (a ``User`` flushed through the ORM here; a ``Membership``
  or renamed ``Organization``, by app/orgs/for_identity.py, which builds the view) sets a fresh
  random *generation* ``me:gen:{user_id}`` once the transaction commits (``stale_after_commit``).
- An entry is stored tagged with the generation read *before* the database read, and is served
  only while that generation is still current. A reader that raced a writer (read old rows, then
  stored them after the writer's commit) stored them under the old generation, so they are never
  served. Generations are random, so a generation key that expired and came back cannot match an
  old entry; it outlives every entry stored under it (2 x TTL, refreshed on each write).

Redis being down or flushed only costs the database read.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from itertools import chain
from typing import Any, cast

import redis
import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

from app import keys
from app.db import after_commit
from app.extensions import get_redis
from app.identity.models import User
from app.identity.sessions import NOTHING_PREFETCHED, Prefetched

log = structlog.get_logger(__name__)

TTL_SECONDS = 300
GENERATION_TTL_SECONDS = 2 * TTL_SECONDS
NO_GENERATION = b"-"  # the generation while ``me:gen:{id}`` does not exist
_SEPARATOR = b"\n"  # "<generation>\n<json body>"; a generation never contains a newline


class Lookup:
    """One read of the cache: the body when it is current, else the generation to store under."""

    __slots__ = ("body", "generation")

    def __init__(self, body: bytes | None, generation: bytes | None) -> None:
        self.body = body
        self.generation = generation  # None: Redis was unavailable, do not store


def lookup(user_id: uuid.UUID, prefetched: Prefetched = NOTHING_PREFETCHED) -> Lookup:
    """The cached body if its generation is current: ``prefetched`` with the session when the
    view asked for it (``session_keys``), else one ``MGET``."""
    body_key, generation_key = keys.me_body(user_id), keys.me_generation(user_id)
    if body_key in prefetched and generation_key in prefetched:
        stored, generation = prefetched[body_key], prefetched[generation_key]
    else:
        try:
            # The client returns bytes (no decode_responses); redis-py's own types allow str too.
            stored, generation = cast("list[bytes | None]", get_redis().mget(body_key, generation_key))
        except redis.RedisError:
            log.warning("cache.unavailable", cache="me")
            return Lookup(None, None)
    return _current(stored, generation)


def session_keys(_path_args: dict[str, Any]) -> list[str]:
    """For ``guards.with_session_read``: the caller's body and generation, read with the session."""
    return [keys.me_body("{user}"), keys.me_generation("{user}")]


def current_body(stored: bytes | None, generation: bytes | None) -> bytes | None:
    """The body in the entry ``stored`` when it was stored under ``generation`` (both as read
    from Redis), else None: for app/identity/fast_path.py, which reads them from the near cache."""
    return _current(stored, generation).body


def _current(stored: bytes | None, generation: bytes | None) -> Lookup:
    current = generation or NO_GENERATION
    if stored:
        tag, _, body = stored.partition(_SEPARATOR)
        if tag == current:
            return Lookup(body, current)
    return Lookup(None, current)


def store(user_id: uuid.UUID, generation: bytes | None, body: bytes) -> None:
    """Keep ``body`` under the generation that ``lookup`` saw before the database was read."""
    if generation is None:
        return
    try:
        get_redis().set(keys.me_body(user_id), generation + _SEPARATOR + body, ex=TTL_SECONDS)
    except redis.RedisError:
        log.warning("cache.unavailable", cache="me")


def bump(user_ids: Iterable[uuid.UUID | str]) -> None:
    """Make every cached body of these users stale (a fresh random generation each)."""
    ids = {str(user_id) for user_id in user_ids}
    if not ids:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for user_id in ids:
            pipe.set(keys.me_generation(user_id), secrets.token_hex(8), ex=GENERATION_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        # Entries expire within TTL_SECONDS; nothing authorizes from them.
        log.warning("cache.unavailable", cache="me", action="bump")


def stale_after_commit(db_session: Session, user_ids: Iterable[uuid.UUID]) -> None:
    """``bump`` these users once ``db_session`` commits (nothing if it rolls back); one ``bump``
    for all the users of a transaction, whoever noted them."""
    after_commit(db_session, bump, *user_ids)


# ---- invalidation from the ORM ----------------------------------------------------------------


@event.listens_for(Session, "after_flush")
def _collect(db_session: Session, flush_context: UOWTransaction) -> None:
    """Note the users whose row this flush changed (``new``/``dirty``/``deleted`` still hold the
    flushed objects here); their generations are replaced after the commit."""
    users = [obj.id for obj in chain(db_session.new, db_session.dirty, db_session.deleted) if isinstance(obj, User)]
    if users:
        stale_after_commit(db_session, users)
