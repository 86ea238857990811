"""After-commit invalidation of the access cache ``access:{user_id}:{content_id}`` (jobs.md §7.1).

The access module reads that key (60 s TTL). A grant change deletes it only once the change is
committed: deleting earlier would let a concurrent reader re-cache the old answer. Redis being
down only delays the effect by the TTL.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis
import structlog
from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)

_PENDING = "codex_access_invalidations"


def access_cache_key(user_id: uuid.UUID | str, content_id: uuid.UUID | str) -> str:
    return f"access:{user_id}:{content_id}"


def invalidate_access_after_commit(db_session: Session, user_id: uuid.UUID, content_id: uuid.UUID) -> None:
    db_session.info.setdefault(_PENDING, set()).add(access_cache_key(user_id, content_id))


@event.listens_for(Session, "after_commit")
def _invalidate(db_session: Session) -> None:
    if db_session.in_nested_transaction():  # a savepoint released: wait for the real commit
        return
    keys: set[str] = db_session.info.pop(_PENDING, set())
    if not keys or not has_app_context():
        return
    try:
        current_app.extensions["redis"].delete(*sorted(keys))
    except redis.RedisError:
        log.warning("cache.unavailable", cache="access", action="invalidate")


@event.listens_for(Session, "after_soft_rollback")
def _drop(db_session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        db_session.info.pop(_PENDING, None)
