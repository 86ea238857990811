"""After-commit invalidation of the access cache ``access:{user_id}:{content_id}`` (jobs.md §7.1).

The access module reads that key (60 s TTL). A grant change deletes it only once the change is
committed: deleting earlier would let a concurrent reader re-cache the old answer. Redis being
down only delays the effect by the TTL.
"""

from __future__ import annotations

import uuid

import redis
import structlog
from flask import current_app
from sqlalchemy.orm import Session

from app.db import after_commit

log = structlog.get_logger(__name__)


def access_cache_key(user_id: uuid.UUID | str, content_id: uuid.UUID | str) -> str:
    return f"access:{user_id}:{content_id}"


def invalidate_access_after_commit(db_session: Session, user_id: uuid.UUID, content_id: uuid.UUID) -> None:
    after_commit(db_session, _delete_keys, access_cache_key(user_id, content_id))


def _delete_keys(keys: list[str]) -> None:
    try:
        current_app.extensions["redis"].delete(*sorted(set(keys)))
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access", action="invalidate")
