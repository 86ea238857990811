"""Invalidation of the hot paths' content snapshot: the generation token ``content:gen:{content_id}``.

Stream issuance and heartbeats keep, in each process, a 10 s snapshot of the content and media facts
they need (``service.ContentMeta``), tagged with the content's generation token as read from Redis.
Every hot request reads the token in the round trip it makes anyway (the ``MGET`` with the access
entry, or inside the heartbeat script), and a snapshot whose token differs is reloaded from Postgres.

The content service calls ``content_changed_after_commit`` for every change of a content row (edit,
price, media swap, publish/unpublish/archive, delete); once the change is committed the token is
replaced by a fresh random one, so every process drops its snapshot on its next request. Replacing
it earlier could let a concurrent reader re-tag the old row with the new token. A random token (not
a counter) cannot come back to a value an old snapshot holds; the token outlives any snapshot by far
(a day against 10 s), so an expired token (absent = "") cannot match a snapshot taken before the
change either. Redis being down only delays the effect by the snapshot's 10 s.
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

GEN_TTL_SECONDS = 86400
_PENDING = "codex_content_snapshot_invalidations"


def gen_key(content_id: uuid.UUID | str) -> str:
    return f"content:gen:{content_id}"


def content_changed_after_commit(db_session: Session, content_id: uuid.UUID) -> None:
    db_session.info.setdefault(_PENDING, set()).add(gen_key(content_id))


@event.listens_for(Session, "after_commit")
def _invalidate(db_session: Session) -> None:
    if db_session.in_nested_transaction():  # a savepoint released: the change is not committed yet
        return
    keys: set[str] = db_session.info.pop(_PENDING, set())
    if not keys or not has_app_context():
        return
    try:
        pipe = current_app.extensions["redis"].pipeline(transaction=False)
        for key in sorted(keys):
            pipe.set(key, uuid.uuid4().hex, ex=GEN_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        log.warning("cache.unavailable", cache="content_snapshot", action="invalidate")


@event.listens_for(Session, "after_soft_rollback")
def _drop(db_session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        db_session.info.pop(_PENDING, None)
