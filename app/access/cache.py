"""The access entry ``access:{user_id}:{content_id}``: its key and its after-commit invalidation (jobs.md §7.1).

``app.access.service`` reads and fills the entry (60 s TTL). Whatever changes a grant (a purchase,
refund or dispute in commerce, a complimentary grant in the dashboard) replaces it with a tombstone
(``app.identity.access_entries.TOMBSTONE``, 30 s) only once the change is committed: earlier would let a concurrent
reader re-cache the old answer, and a plain delete would let a reader that read Postgres before the
commit cache its old answer right after it (fills never overwrite a tombstone). Readers take the
tombstone as a miss. Redis being down only delays the effect by the entry's maximum age.
"""

from __future__ import annotations

import uuid

import redis
import structlog
from flask import current_app
from sqlalchemy.orm import Session

from app import keys
from app.db import after_commit
from app.identity.access_entries import TOMBSTONE, TOMBSTONE_SECONDS

log = structlog.get_logger(__name__)

access_cache_key = keys.access_entry
"""The entry's key (named in app/keys.py)."""


def invalidate_access_after_commit(db_session: Session, user_id: uuid.UUID, content_id: uuid.UUID) -> None:
    after_commit(db_session, _bury, access_cache_key(user_id, content_id))


def _bury(names: list[str]) -> None:
    try:
        pipe = current_app.extensions["redis"].pipeline(transaction=False)
        for name in sorted(set(names)):
            pipe.set(name, TOMBSTONE, ex=TOMBSTONE_SECONDS)
        pipe.execute()
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access", action="invalidate")
