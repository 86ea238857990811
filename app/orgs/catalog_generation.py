"""The public catalogue's generation ``catalog:gen:{org_id}``: its key and its replacement by the writers.

The catalogue (app/catalog/cache.py, api.md §8) keeps each list page it built as the final JSON
body (and each item's facts), tagged with the org it resolved to and the org's generation read *before* the database
read, and serves it only while that generation is still current. Everything that can change what
an org's catalogue shows replaces the generation with a fresh random token once its transaction
commits (``catalog_changed_after_commit``):

- content: every change of a content row (app/content/cache.py ``content_changed_after_commit``:
  edit, price, media swap, publish/unpublish/archive, delete);
- media: a media item whose facts change (ingest finished: duration, thumbnail), through the same
  module's ``media_changed_after_commit``, for the orgs of the content using it;
- orgs: a slug or name change (the list resolves ``{org_slug}``; an item shows the org's name and
  slug), in ``service.update_org``.

It lives here, in the lowest of those layers (orgs, below media and content), because the token is
per organization and every writer must reach it without an upward import (media reaches it through
content's hand-over, app/content/for_media.py). Replacing it before the commit could let a
concurrent reader tag the old rows with the new token. A random token (not a counter) never comes
back to a value an old page holds; a reader that finds none (expired, or Redis flushed) creates one
(``SET NX``, app/catalog/cache.py), so no page is stored under "absent" and a flush cannot revive an
old page. Redis being down only delays the effect by a page's TTL (pages live in Redis and in each
process for at most that long).
"""

from __future__ import annotations

import uuid

import redis
import structlog
from sqlalchemy.orm import Session

from app import keys
from app.db import after_commit
from app.extensions import get_near_cache, get_redis

log = structlog.get_logger(__name__)

GEN_TTL_SECONDS = 86400

generation_key = keys.catalog_generation
"""The token's key (named in app/keys.py), for its reader too (app.catalog.cache)."""


def catalog_changed_after_commit(db_session: Session, *org_ids: uuid.UUID) -> None:
    """Replace these orgs' catalogue generations once ``db_session`` commits (nothing on rollback)."""
    if org_ids:
        after_commit(db_session, replace_generations, *org_ids)


def replace_generations(org_ids: list[uuid.UUID]) -> None:
    """A fresh random generation for each org: every cached page of theirs stops being served."""
    names = sorted({generation_key(org_id) for org_id in org_ids})
    try:
        pipe = get_redis().pipeline(transaction=False)
        for name in names:
            pipe.set(name, uuid.uuid4().hex, ex=GEN_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        log.warning("cache.unavailable", cache="catalog", action="invalidate")
    finally:
        near = get_near_cache()
        if near is not None:  # (Redis reports the change to every process; this one need not wait)
            near.evict(names)
