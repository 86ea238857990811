"""Dropping a user's cached access entries when the user's staff status changes.

app.access caches each (user, content) answer of the entitlement rule in
``access:{user_id}:{content_id}`` (app/access/service.py), and ``staff`` (a member of the
content's org, or a platform owner) is part of that answer. The rows it comes from belong to
identity (``users.role``) and orgs (``memberships``), below app.access, so their writers drop the
entries here: all of the user's, listed in the user's index ``access:u:{user_id}`` (written by
app.access with each entry), once the change is committed (earlier, a concurrent request could
cache the old answer again). Each entry is replaced by a tombstone and the user is marked
(``keys.access_blocked``) for ``TOMBSTONE_SECONDS``: app.access caches no answer of the
user meanwhile, so a request that read Postgres before the commit cannot cache the old answer after
it. Changes are rare (an invitation accepted, a member removed, a promotion), so dropping every
entry of the user costs nothing that matters. Without this, a removed member would keep ``staff``
for as long as the entry lives, which the sliding TTL of app.access extends while the entry is in
use (up to its maximum age).
"""

from __future__ import annotations

import uuid

import redis
import structlog
from flask import current_app
from sqlalchemy.orm import Session

from app import keys
from app.db import after_commit
from app.extensions import redis_script

log = structlog.get_logger(__name__)

TOMBSTONE = "!"
"""What replaces an access entry when its answer changes (a grant, a refund, a membership), instead of
a delete: for ``TOMBSTONE_SECONDS`` no request caches an answer over it. A request that read Postgres
just before the change committed, and caches its answer just after the writer's delete, would
otherwise keep the old answer for as long as the sliding TTL extends it (up to its maximum age).
Every reader takes it as a miss and asks Postgres. (Here, below app.access, because the staff
writers here leave it too.)"""

TOMBSTONE_SECONDS = 30


def drop_user_access_after_commit(db_session: Session, user_id: uuid.UUID) -> None:
    """Once ``db_session`` commits: bury every cached access entry of ``user_id``."""
    after_commit(db_session, _drop, user_id)


# KEYS: 1 access:u:{user} (the index), 2 access:x:{user}; ARGV: 1 the user's entry prefix
# (``keys.access_entry(user, "")``; .. content id is an entry), 2 the tombstone, 3 its seconds.
# The mark first: an entry cached after it is refused, one cached before is in the index.
_DROP_LUA = """
redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
for _, content in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('SET', ARGV[1] .. content, ARGV[2], 'EX', ARGV[3])
end
redis.call('DEL', KEYS[1])
return 1
"""


def drop_user_access(client: redis.Redis, user_id: uuid.UUID) -> None:
    """Bury every cached access entry of ``user_id`` and mark the user, in one call."""
    redis_script(client, _DROP_LUA)(
        keys=[keys.access_index(user_id), keys.access_blocked(user_id)],
        args=[keys.access_entry(user_id, ""), TOMBSTONE, TOMBSTONE_SECONDS],
    )


def _drop(user_ids: list[uuid.UUID]) -> None:
    client: redis.Redis = current_app.extensions["redis"]
    for user_id in dict.fromkeys(user_ids):
        try:
            drop_user_access(client, user_id)
        except redis.RedisError:
            log.warning("cache.unavailable", cache="access", action="invalidate_user")
