"""Answers built below Flask, exactly as a route's would leave ``app.http._finish``.

The WSGI fast paths (app/access/fast_path.py, app/identity/fast_path.py, app/catalog/fast_path.py,
app/commerce/webhook_fast_path.py) answer a few warm, hot requests without a request context; each
is a ``FastPath``: its ``reply`` answers a request or hands it on. Whatever they send must be
indistinguishable from the route's answer: the same headers (``http.plain_api_headers``: request
id, security headers, CSP, HSTS in production, ``Cache-Control``, ``Vary`` and CORS), the same
rate-limit headers and 429 body, and the same request metric and log line. Each fast path's tests
compare the two answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from flask import Flask

from app import http
from app.ratelimit import Outcome, Rule, rules_of

Answer = tuple[str, list[tuple[str, str]], bytes]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FastPath:
    """WSGI middleware in front of ``app.wsgi_app``: ``reply`` answers the requests it can settle
    below Flask (and counts its 429s in ``refused``); anything it returns None for goes to
    ``wsgi_app`` untouched."""

    def __init__(self, app: Flask, wsgi_app: WsgiApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.refused = 0  # 429s answered here (tests, and operators who wonder)
        self._rules: dict[tuple[str, str], tuple[Rule, ...]] = {}

    def rules(self, method: str, endpoint: str) -> tuple[Rule, ...]:
        """The rate limits the route of ``method`` ``endpoint`` (its URL rule) declares, read once."""
        found = self._rules.get((method, endpoint))
        if found is None:
            found = self._rules[(method, endpoint)] = rules_of(self.app, method, endpoint)
        return found

    def reply(self, environ: dict[str, Any]) -> Answer | None:
        raise NotImplementedError

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        reply = self.reply(environ)
        if reply is None:
            return self.wsgi_app(environ, start_response)
        status, headers, body = reply
        start_response(status, headers)
        return [body] if body else []


def answer(
    config: Mapping[str, Any],
    environ: dict[str, Any],
    user_id: str | None,
    status: str,
    content: list[tuple[str, str]],
    body: bytes,
    endpoint: str,
    started: float,
    *,
    own_cache_control: bool = False,
) -> Answer:
    """``status``, ``content`` (the route's own headers; ``own_cache_control``: a Cache-Control
    among them) and ``body`` with what ``_finish`` adds; the request is counted in the metric and
    logged under ``endpoint`` (the URL rule) for ``user_id`` (None: anonymous)."""
    method = environ["REQUEST_METHOD"]
    request_id = http.request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
    headers = content + http.plain_api_headers(
        request_id, environ.get("HTTP_ORIGIN"), method, config, cache_control=not own_cache_control
    )
    if http.request_log_enabled():  # the log line carries these, as the route's does
        structlog.contextvars.clear_contextvars()
        if user_id is None:
            structlog.contextvars.bind_contextvars(request_id=request_id)
        else:
            structlog.contextvars.bind_contextvars(request_id=request_id, user_id=user_id)
    path, duration = environ.get("PATH_INFO", ""), time.perf_counter() - started
    http.record_answer(method, endpoint, path, int(status[:3]), duration, user_id, environ.get("REMOTE_ADDR"))
    return status, headers, body


def json_answer(
    config: Mapping[str, Any],
    environ: dict[str, Any],
    user_id: str | None,
    body: bytes,
    counted: Outcome | None,
    endpoint: str,
    started: float,
    *,
    cache_control: str | None = None,
) -> Answer:
    """A 200 JSON ``body``, with the limiter's headers when the request was counted (and the
    route's own ``cache_control``, else ``_finish``'s no-store)."""
    content = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if cache_control is not None:
        content.append(("Cache-Control", cache_control))
    if counted is not None:
        content += counted.headers()
    own = cache_control is not None
    return answer(config, environ, user_id, "200 OK", content, body, endpoint, started, own_cache_control=own)


def refusal(
    config: Mapping[str, Any],
    environ: dict[str, Any],
    user_id: str | None,
    counted: Outcome,
    endpoint: str,
    started: float,
) -> Answer:
    """The limiter's 429, as the route would answer it."""
    body = counted.error_body()
    content = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *counted.headers()]
    return answer(config, environ, user_id, "429 TOO MANY REQUESTS", content, body, endpoint, started)
