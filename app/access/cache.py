"""The access entry ``access:{user_id}:{content_id}``: its key and its after-commit invalidation (jobs.md §7.1).

``app.access.service`` reads and fills the entry (60 s TTL). Whatever changes a grant (a purchase,
refund or dispute in commerce, a complimentary grant in the dashboard) deletes it only once the
change is committed: deleting earlier would let a concurrent reader re-cache the old answer. Redis
being down only delays the effect by the TTL.
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

access_cache_key = keys.access_entry
"""The entry's key (named in app/keys.py)."""


def invalidate_access_after_commit(db_session: Session, user_id: uuid.UUID, content_id: uuid.UUID) -> None:
    after_commit(db_session, _delete_keys, access_cache_key(user_id, content_id))


def _delete_keys(names: list[str]) -> None:
    try:
        current_app.extensions["redis"].delete(*sorted(set(names)))
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access", action="invalidate")
