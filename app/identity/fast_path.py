"""A warm ``GET /api/v1/auth/me`` answered below Flask.

``/auth/me`` is the hottest authenticated read: every page load of every client asks it. Warm, the
route needs no database and no Redis read: the session entry, the cached body and its generation
(app/identity/me_cache.py) are in the process's near cache (app/speed/nearcache.py, kept exact by
Redis), and the only Redis call is the rate limiter's. Flask's request context, routing, hooks and
response object then cost more than that work, so this WSGI middleware answers exactly that warm
case itself, and hands every other request to Flask untouched:

- the exact path, ``GET``;
- ``Authorization: Bearer`` whose session entry this process holds, live and not due to slide
  (``sessions.warm_bearer_principal``; a cookie, or anything else, is the route's);
- the body and its generation held too, and current (``me_cache.current_body``);
- the route's limits (the shared ``/api/v1`` budget, per user) counted here in one call
  (``ratelimit.check``): a refusal is answered 429 here in the limiter's shape; with Redis
  unreachable the request goes through uncounted, as the route lets it.

Nothing is answered here that the route would answer differently: the body is the bytes the route
would send, and ``app.speed.answer`` adds the headers, the metric and the log line ``_finish``
adds. tests/identity/test_me_fast_path.py compares both answers and checks the limits.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask

from app import keys, ratelimit
from app.identity import me_cache, sessions
from app.speed import answer
from app.speed.nearcache import Miss, NearCache

PATH = "/api/v1/auth/me"
ENDPOINT = PATH  # the URL rule: the request metric's label


class MeFastPath(answer.FastPath):
    """WSGI middleware in front of ``app.wsgi_app`` (installed by ``install``)."""

    def __init__(self, app: Flask, wsgi_app: answer.WsgiApp, near: NearCache) -> None:
        super().__init__(app, wsgi_app)
        self.near = near
        self.answered = 0  # (tests, and operators who wonder)

    def reply(self, environ: dict[str, Any]) -> answer.Answer | None:
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "GET":
            return self._me(environ)
        return None

    def _me(self, environ: dict[str, Any]) -> answer.Answer | None:
        started = time.perf_counter()
        authorization = environ.get("HTTP_AUTHORIZATION")
        if not authorization:
            return None
        near = self.near
        principal = sessions.warm_bearer_principal(near, authorization, datetime.now(UTC))
        if principal is None:
            return None
        user_id = principal.user_id
        stored, generation = near.get(keys.me_body(user_id)), near.get(keys.me_generation(user_id))
        if isinstance(stored, Miss) or isinstance(generation, Miss):
            return None
        body = me_cache.current_body(stored, generation)
        if body is None:
            return None
        config, who = self.app.config, str(user_id)
        counted: ratelimit.Outcome | None = None
        if config["RATELIMIT_ENABLED"]:
            bound = ratelimit.bind(self.rules("GET", ENDPOINT), environ.get("REMOTE_ADDR") or "unknown", who)
            counted = ratelimit.check(self.app.extensions["redis"], bound)
            if counted is not None and not counted.allowed:
                self.refused += 1
                return answer.refusal(config, environ, who, counted, ENDPOINT, started)
        self.answered += 1
        return answer.json_answer(config, environ, who, body, counted, ENDPOINT, started)


def install(app: Flask) -> None:
    """Put the fast path in front of Flask (inside any proxy fix-up, so ``REMOTE_ADDR`` is the
    client); only with a near cache, which is what it answers from."""
    near: NearCache | None = app.extensions.get("near_cache")
    if near is not None:
        app.wsgi_app = MeFastPath(app, app.wsgi_app, near)  # type: ignore[method-assign]
