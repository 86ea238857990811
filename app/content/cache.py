"""The content snapshot's generation token ``content:gen:{content_id}``: its key and its writers.

Stream issuance and heartbeats keep, in each process, a 10 s snapshot of the content and media facts
they need (``app.access.service.ContentMeta``), tagged with the content's generation token as read from Redis.
Every hot request reads the token in the round trip it makes anyway (the ``MGET`` with the access
entry, or inside the heartbeat script), and a snapshot whose token differs is reloaded from Postgres.

The content service calls ``content_changed_after_commit`` for every change of a content row (edit,
price, media swap, publish/unpublish/archive, delete), and media's ingest calls
``media_changed_after_commit`` (handed over in app/content/for_media.py) when a media item becomes
ready; once the change is committed the token is replaced by a fresh random one, so every process
drops its snapshot on its next request. Replacing
it earlier could let a concurrent reader re-tag the old row with the new token. A random token (not
a counter) cannot come back to a value an old snapshot holds; the token outlives any snapshot by far
(a day against 10 s), so an expired token (absent = "") cannot match a snapshot taken before the
change either. Redis being down only delays the effect by the snapshot's 10 s.

The same two functions replace the public catalogue's generation of the content's org
(app/orgs/catalog_generation.py): whatever changes a snapshot changes what the catalogue shows.
"""

from __future__ import annotations

import uuid

import redis
import structlog
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import keys
from app.content.models import Content
from app.db import after_commit
from app.orgs.catalog_generation import catalog_changed_after_commit

log = structlog.get_logger(__name__)

GEN_TTL_SECONDS = 86400

gen_key = keys.content_generation
"""The token's key (named in app/keys.py), for its readers too (app.access: stream, heartbeat)."""


def content_changed_after_commit(
    db_session: Session, content_id: uuid.UUID, organization_id: uuid.UUID | None = None
) -> None:
    """After the commit: the content's snapshot token and its org's catalogue generation
    (``organization_id`` saves looking the org up)."""
    after_commit(db_session, _replace_tokens, gen_key(content_id))
    if organization_id is None:
        organization_id = db_session.scalar(select(Content.organization_id).where(Content.id == content_id))
    if organization_id is not None:
        catalog_changed_after_commit(db_session, organization_id)


def media_changed_after_commit(db_session: Session, media_id: uuid.UUID) -> None:
    """The snapshot holds media facts too (ready, renditions, duration, thumbnail): a media item
    that changes (ingest finished) replaces the token of every content item using it."""
    rows = db_session.execute(select(Content.id, Content.organization_id).where(Content.media_id == media_id)).all()
    if rows:
        after_commit(db_session, _replace_tokens, *(gen_key(row.id) for row in rows))
        catalog_changed_after_commit(db_session, *{row.organization_id for row in rows})


def _replace_tokens(names: list[str]) -> None:
    try:
        pipe = current_app.extensions["redis"].pipeline(transaction=False)
        for key in sorted(set(names)):
            pipe.set(key, uuid.uuid4().hex, ex=GEN_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        log.warning("cache.unavailable", cache="content_snapshot", action="invalidate")
