"""Cached catalogue list bodies (api.md §8), kept exact by the org's catalogue generation.

``GET /orgs/{org_slug}/catalog`` is the hottest anonymous read: every visit to an org's page
asks it, with the same few queries (the default sort, the first pages, popular searches). Its
answer is kept as the exact JSON bytes of the response, so a hit runs no query, no dump, and not
even the query-string parsing (routes.py looks the page up first: a page is stored only under a
query string that parsed, and it parses the same way every time):

- in Redis, ``catalog:page:{org_slug_or_id}:{digest of the raw query string}``, shared by every
  process, as ``<org_id>\\n<generation>\\n<json>`` for ``TTL_SECONDS`` (a minute, the response's own
  ``max-age``, and well inside the thumbnails' signed-URL lifetime);
- the facts of ``GET /catalog/{content_id}`` likewise, under ``catalog:item:{content_id}`` (the
  preview token in it is minted per request, so only the rest is kept);
- and in each process (``LocalPages``, bounded by ``LOCAL_MAX_BYTES``), so a warm request makes no
  Redis call at all: the org's generation comes from the process's near cache (app/speed/nearcache.py
  tracks ``catalog:gen:``, so Redis reports every replacement to every process).

Exactness: a page is tagged with the org it resolved to and the generation ``catalog:gen:{org_id}``
read *before* its database reads, and is served only while that generation is current. Every
writer that can change what the catalogue shows replaces the generation after its commit
(app/orgs/catalog_generation.py lists them). A fill that raced a write (read the old rows, then
stored them after the writer's commit and its new generation) stored them under the old
generation, so they are never served. The ``org_slug`` a page was asked under is part of its key
and a slug change replaces the org's generation, so an old slug cannot keep resolving.

What a hit bypasses, and what keeps it honest: flask-smorest's query parsing and response dump
(the bytes are built once, by ``service._item_json`` and ``jsonify``, not by the schemas), never
Flask's hooks (request id, rate limits, headers, the log line all run). tests/catalog/test_cache.py
checks the bytes against the schemas', a hit without parsing, every writer, a fill racing a write,
other processes, a flushed and an unreachable Redis.

Redis being down only costs the database read (nothing is served or stored without a generation).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import cast

import redis
import structlog
from flask import current_app

from app import keys
from app.extensions import get_near_cache, get_redis
from app.orgs.catalog_generation import GEN_TTL_SECONDS
from app.speed.nearcache import NearCache

log = structlog.get_logger(__name__)

TTL_SECONDS = 60
LOCAL_MAX_BYTES = 16 * 1024 * 1024
"""What one process keeps of page bodies; when full, everything is dropped and refilled."""
_ENTRY_OVERHEAD = 200  # bytes of a dict slot, the key and the Page object, roughly
_SEPARATOR = b"\n"  # "<org_id>\n<generation>\n<json>": neither an id nor a generation has a newline


@dataclass(frozen=True, slots=True)
class Page:
    org_id: str
    generation: bytes
    body: bytes
    expires: float  # time.monotonic()


@dataclass(slots=True)
class Lookup:
    """One read of the cache: the body when it is current; else what a fill should know."""

    key: str
    body: bytes | None = None
    org_id: str | None = None
    """The org a stale page had resolved to (a guess that saves resolving the slug first)."""
    generation: bytes | None = None
    """``org_id``'s current generation, read before any database read (None: unknown)."""


class LocalPages:
    """This process's pages of one app (``app.extensions["catalog_pages"]``), bounded by bytes."""

    def __init__(self, max_bytes: int = LOCAL_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._pages: dict[str, Page] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Page | None:
        page = self._pages.get(key)
        return page if page is not None and page.expires > time.monotonic() else None

    def keep(self, key: str, page: Page) -> None:
        size = len(page.body) + len(key) + _ENTRY_OVERHEAD
        with self._lock:
            previous = self._pages.pop(key, None)
            if previous is not None:
                self._bytes -= len(previous.body) + len(key) + _ENTRY_OVERHEAD
            if self._bytes + size > self.max_bytes:
                # The oldest pages go until a quarter is free (a miss costs one Redis read); the
                # pages read in the last minutes stay.
                target, dropped = self.max_bytes * 3 // 4 - size, []
                for oldest, kept in self._pages.items():
                    if self._bytes <= target:
                        break
                    self._bytes -= len(kept.body) + len(oldest) + _ENTRY_OVERHEAD
                    dropped.append(oldest)
                for oldest in dropped:
                    del self._pages[oldest]
            self._pages[key] = page
            self._bytes += size

    def drop(self, key: str) -> None:
        with self._lock:
            page = self._pages.pop(key, None)
            if page is not None:
                self._bytes -= len(page.body) + len(key) + _ENTRY_OVERHEAD

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()
            self._bytes = 0


def local_pages() -> LocalPages:
    pages = current_app.extensions.get("catalog_pages")
    if pages is None:
        pages = current_app.extensions.setdefault("catalog_pages", LocalPages())
    return cast(LocalPages, pages)


def page_key(org_ref: str, query_string: bytes) -> str:
    """The key of one list request: the org as the path names it and the raw query string. (Raw,
    so a warm page is found before parsing; a query that did not parse is never stored.)"""
    return keys.catalog_page(org_ref, hashlib.blake2b(query_string, digest_size=16).hexdigest())


def item_key(content_id: uuid.UUID) -> str:
    """The key of one catalogue item's facts (``GET /catalog/{content_id}`` without its preview token)."""
    return keys.catalog_item(content_id)


def ttl_seconds() -> int:
    """A minute, or less when signed thumbnail URLs live shorter (a reused URL is up to a minute old)."""
    return max(1, min(TTL_SECONDS, int(current_app.config["DOWNLOAD_URL_TTL_SECONDS"]) // 4))


def lookup(key: str) -> Lookup:
    """The page under ``key`` if it is current: from this process, else from Redis."""
    near = get_near_cache()
    epoch = near.sync() if near is not None else None
    found = Lookup(key)
    pages = local_pages()
    page = pages.get(key)
    if page is not None:
        current = _generation(page.org_id, near, epoch)
        if current is not None and current == page.generation:
            found.body = page.body
            return found
        found.org_id, found.generation = page.org_id, current
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.get(key)
        pipe.pttl(key)  # (a copy kept here must not outlive the page in Redis: its thumbnail URLs age)
        stored, remaining_ms = cast("tuple[bytes | None, int]", tuple(pipe.execute()))
    except redis.RedisError:
        log.warning("cache.unavailable", cache="catalog")
        return found
    if stored:
        org_id_bytes, _, rest = stored.partition(_SEPARATOR)
        tag, _, body = rest.partition(_SEPARATOR)
        org_id = org_id_bytes.decode()
        current = found.generation if org_id == found.org_id else _generation(org_id, near, epoch)
        if current is not None and current == tag:
            if remaining_ms > 0:
                pages.keep(key, Page(org_id, tag, body, time.monotonic() + remaining_ms / 1000))
            found.body = body
            return found
        found.org_id, found.generation = org_id, current
    return found


def warm_body(pages: LocalPages, near: NearCache, key: str) -> bytes | None:
    """The page under ``key`` when this process holds it and the near cache holds its org's
    generation, which it matches: ``lookup``'s warm answer without a request context or any
    Redis call (for app/catalog/fast_path.py). None in every other case (``lookup`` decides)."""
    page = pages.get(key)
    if page is None or near.sync() is None:
        return None
    held = near.get(keys.catalog_generation(page.org_id))
    return page.body if isinstance(held, bytes) and held == page.generation else None


def generation(org_id: str) -> bytes | None:
    """``org_id``'s current generation (None: Redis unavailable, do not store). Read it before
    the database reads whose result is stored under it."""
    near = get_near_cache()
    return _generation(org_id, near, near.sync() if near is not None else None)


def store(key: str, org_id: str, generation: bytes | None, body: bytes) -> None:
    """Keep ``body`` (built from reads that began after ``generation`` was read) under it."""
    if generation is None:
        return
    ttl = ttl_seconds()
    try:
        get_redis().set(key, org_id.encode() + _SEPARATOR + generation + _SEPARATOR + body, ex=ttl)
    except redis.RedisError:
        log.warning("cache.unavailable", cache="catalog")
        return
    local_pages().keep(key, Page(org_id, generation, body, time.monotonic() + ttl))


def forget(key: str) -> None:
    """Drop the page under ``key`` here and in Redis: its org no longer answers to its slug, so its
    org id is no use as a guess (the next request resolves the slug first)."""
    local_pages().drop(key)
    try:
        get_redis().delete(key)
    except redis.RedisError:
        log.warning("cache.unavailable", cache="catalog")


def _generation(org_id: str, near: NearCache | None, epoch: int | None) -> bytes | None:
    key = keys.catalog_generation(org_id)
    if near is not None and epoch is not None:
        held = near.get(key)
        if isinstance(held, bytes):
            return held
    try:
        client = get_redis()
        value = cast("bytes | None", client.get(key))
        if value is None:
            # Pages are only ever stored under a random token: a page tagged before a FLUSHDB (or
            # an expiry) can never match the token that comes next. A writer's SET wins over this.
            pipe = client.pipeline(transaction=False)
            pipe.set(key, uuid.uuid4().hex, nx=True, ex=GEN_TTL_SECONDS)
            pipe.get(key)
            value = cast("bytes | None", pipe.execute()[1])
    except redis.RedisError:
        log.warning("cache.unavailable", cache="catalog")
        return None
    if value is None:
        return None
    if near is not None and epoch is not None:
        # No TTL passed: the token only ever changes by a SET, which Redis reports; its expiry (a
        # day without any change) changes nothing a page shows.
        near.fill(epoch, [(key, value, None)])
    return value
