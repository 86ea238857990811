"""Dropping a user's cached access entries when the user's staff status changes.

app.access caches each (user, content) answer of the entitlement rule in
``access:{user_id}:{content_id}`` (app/access/service.py), and ``staff`` (a member of the
content's org, or a platform owner) is part of that answer. The rows it comes from belong to
identity (``users.role``) and orgs (``memberships``), below app.access, so their writers drop the
entries here: all of the user's, listed in the user's index ``access:u:{user_id}`` (written by
app.access with each entry), once the change is committed (earlier, a concurrent request could
cache the old answer again). Changes are rare (an invitation accepted, a member removed, a
promotion), so dropping every entry of the user costs nothing that matters. Without this, a
removed member would keep ``staff`` for as long as the entry lives, which the sliding TTL of
app.access extends while the entry is in use (up to its maximum age).
"""

from __future__ import annotations

import uuid

import redis
import structlog
from flask import current_app
from sqlalchemy.orm import Session

from app import keys
from app.db import after_commit

log = structlog.get_logger(__name__)


def drop_user_access_after_commit(db_session: Session, user_id: uuid.UUID) -> None:
    """Once ``db_session`` commits: delete every cached access entry of ``user_id``."""
    after_commit(db_session, _drop, user_id)


def drop_user_access(client: redis.Redis, user_id: uuid.UUID) -> None:
    """Delete every cached access entry of ``user_id`` and its index (two round trips)."""
    index = keys.access_index(user_id)
    content_ids = client.smembers(index)
    names = [keys.access_entry(user_id, c.decode() if isinstance(c, bytes) else c) for c in content_ids]
    # The index goes with the entries it lists; an entry cached in between adds itself again.
    pipe = client.pipeline(transaction=True)
    for start in range(0, len(names), 1000):
        pipe.delete(*names[start : start + 1000])
    if content_ids:
        pipe.srem(index, *content_ids)
    pipe.execute()


def _drop(user_ids: list[uuid.UUID]) -> None:
    client: redis.Redis = current_app.extensions["redis"]
    for user_id in dict.fromkeys(user_ids):
        try:
            drop_user_access(client, user_id)
        except redis.RedisError:
            log.warning("cache.unavailable", cache="access", action="invalidate_user")
