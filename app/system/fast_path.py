"""``GET /health`` answered below Flask.

Load balancers and orchestrators probe ``/health`` every few seconds on every web process, and
the answer is a constant: no authentication, no database, no rate limit (the route is exempt), no
log line. Through Flask it still pays for the request context, routing and every request hook
(request id, the limiter's rule lookup, the route pre-checks, the body checks, the finishing
headers): in-process about 200 µs against about 125 µs for the smallest Flask app's ``/health``.
This middleware answers exactly that probe with the route's bytes and the headers ``_finish``
adds (``http.plain_api_headers`` without ``Cache-Control``, which ``/health`` does not get), and
counts it in the request metric; it hands everything else on untouched:

- only ``GET /health``, exactly (``/health/ready`` checks the dependencies: the route's);
- no body (a GET with one is the route's to judge, 413 and all).

It is the outermost layer, outside the proxy fix-up: the answer depends on nothing the proxy
headers change (the client's address, scheme or host). tests/system/test_health_fast_path.py
compares its answer with the route's.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask

from app import http
from app.speed import answer
from app.system.routes import HEALTH_BODY

PATH = "/health"
_CONTENT = [("Content-Type", "application/json"), ("Content-Length", str(len(HEALTH_BODY)))]


class HealthFastPath(answer.FastPath):
    """WSGI middleware, outermost around the app (installed by ``install``)."""

    def __init__(self, app: Flask, wsgi_app: answer.WsgiApp) -> None:
        super().__init__(app, wsgi_app)
        self.answered = 0  # (tests, and operators who wonder)

    def reply(self, environ: dict[str, Any]) -> answer.Answer | None:
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "GET"
            or environ.get("CONTENT_LENGTH", "0") not in ("", "0")
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            return None
        started = time.perf_counter()
        request_id = http.request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        origin = environ.get("HTTP_ORIGIN")
        headers = _CONTENT + http.plain_api_headers(request_id, origin, "GET", self.app.config, cache_control=False)
        # (the metric only: record_answer writes no log line for /health)
        http.record_answer("GET", PATH, PATH, 200, time.perf_counter() - started, None, None)
        self.answered += 1
        return "200 OK", headers, HEALTH_BODY


def install(app: Flask) -> None:
    """Put the probe's answer in front of everything else (call last: outermost)."""
    app.wsgi_app = HealthFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
