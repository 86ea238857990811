"""A warm anonymous catalogue page answered below Flask.

``GET /api/v1/orgs/{org_slug}/catalog`` is the hottest anonymous read: every visit to an org's
page asks it. Warm, the route runs no query and no parsing: the page's bytes are in this process
(app/catalog/cache.py, ``LocalPages``) and its org's generation in the near cache
(app/speed/nearcache.py, kept exact by Redis), and the only Redis call is the rate limiter's.
Flask's request context, routing, hooks and response object then cost more than that work, so
this WSGI middleware answers exactly that warm case, and hands every other request to Flask:

- ``GET`` of the exact path, with a plain slug or id (anything the route would decode is its own);
- anonymous: no ``Authorization`` header and no session cookie (a signed-in caller's limit is
  keyed by its user, which only the route resolves);
- a page held here under the exact raw query string, with its org's generation held and current
  (``cache.warm_body``: the same test ``cache.lookup`` makes);
- the route's limits (the shared ``/api/v1`` budget, per client IP) counted here in one call: a
  refusal is answered 429 here in the limiter's shape; Redis unreachable lets it through, as
  the route does.

The answer is the route's: the same bytes, its ``Cache-Control``, and what ``_finish`` adds
(``app.speed.answer``). tests/catalog/test_fast_path.py compares both answers.
"""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Flask

from app import ratelimit
from app.catalog import cache
from app.catalog.routes import CACHE_CONTROL
from app.identity.sessions import COOKIE_NAME
from app.speed import answer
from app.speed.nearcache import NearCache

ENDPOINT = "/api/v1/orgs/<org_slug>/catalog"  # the URL rule: the request metric's label
_PATH = re.compile(r"/api/v1/orgs/([A-Za-z0-9_-]{1,100})/catalog")
_SESSION_COOKIE = f"{COOKIE_NAME}="


class CatalogFastPath(answer.FastPath):
    """WSGI middleware in front of ``app.wsgi_app`` (installed by ``install``)."""

    def __init__(self, app: Flask, wsgi_app: answer.WsgiApp, near: NearCache) -> None:
        super().__init__(app, wsgi_app)
        self.near = near
        self.pages = cache.LocalPages()
        self.answered = 0  # (tests, and operators who wonder)

    def reply(self, environ: dict[str, Any]) -> answer.Answer | None:
        if environ.get("REQUEST_METHOD") == "GET":
            match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
            if match is not None:
                return self._page(environ, match.group(1))
        return None

    def _page(self, environ: dict[str, Any], org_ref: str) -> answer.Answer | None:
        started = time.perf_counter()
        if "HTTP_AUTHORIZATION" in environ or _SESSION_COOKIE in environ.get("HTTP_COOKIE", ""):
            return None
        key = cache.page_key(org_ref, environ.get("QUERY_STRING", "").encode("latin-1"))
        body = cache.warm_body(self.pages, self.near, key)
        if body is None:
            return None
        config = self.app.config
        counted: ratelimit.Outcome | None = None
        if config["RATELIMIT_ENABLED"]:
            bound = ratelimit.bind(self.rules("GET", ENDPOINT), environ.get("REMOTE_ADDR") or "unknown", None)
            counted = ratelimit.check(self.app.extensions["redis"], bound)
            if counted is not None and not counted.allowed:
                self.refused += 1
                return answer.refusal(config, environ, None, counted, ENDPOINT, started)
        self.answered += 1
        return answer.json_answer(config, environ, None, body, counted, ENDPOINT, started, cache_control=CACHE_CONTROL)


def install(app: Flask) -> None:
    """Put the fast path in front of Flask (inside any proxy fix-up, so ``REMOTE_ADDR`` is the
    client); only with a near cache. Its ``LocalPages`` becomes the app's, so the route fills
    what this answers from."""
    near: NearCache | None = app.extensions.get("near_cache")
    if near is None:
        return
    middleware = CatalogFastPath(app, app.wsgi_app, near)
    middleware.pages = app.extensions.setdefault("catalog_pages", middleware.pages)
    app.wsgi_app = middleware  # type: ignore[method-assign]
