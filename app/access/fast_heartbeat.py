"""Warm progress heartbeats answered below Flask (``PUT /api/v1/content/{id}/progress``).

A player sends a heartbeat every few seconds for as long as it plays, so this is the API's most
frequent request, and a warm one needs no database: the session comes from the process's near
cache (app/nearcache.py) and one Lua call checks access and applies the write
(``progress.record_warm_heartbeat``). Flask's request context, routing, hooks and response
object cost about as much again as that work, so this WSGI middleware answers exactly that case
itself, with the same functions the Flask route uses, and hands every other request to Flask
untouched (the body it read is put back). It answers only when everything is known to succeed:

- ``PUT`` on the exact path with a canonical content UUID; no rate limit to count
  (``RATELIMIT_ENABLED`` off; with limits on every heartbeat goes through flask-limiter);
- ``Authorization: Bearer`` (a cookie needs the CSRF check) whose session entry this process's
  near cache holds, live and not due to slide (``auth.warm_bearer_principal``);
- a JSON object body of at most 4 KiB that ``fast_progress`` accepts as it stands, i.e. what
  the route's schema would load unchanged;
- the content's snapshot in this process and a script answer of applied/ignored.

Anything else — a cold cache, a stale snapshot, a missing access entry, a denial, a bad body,
an error — is Flask's to answer, so every error and its shape come from the one implementation.
The answer is the route's: 204 with the headers ``app.http._finish`` adds
(``http.plain_api_headers``), the same request metric and the same request log line.
tests/access/test_fast_heartbeat.py checks both paths give the same answers and state.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from flask import Flask

from app import http, metrics
from app.access import progress
from app.access.schemas import fast_progress
from app.identity import auth
from app.logging import mask_path

log = structlog.get_logger("codex.request")
_REQUEST_LOG = logging.getLogger("codex.request")

_PATH = re.compile(r"/api/v1/content/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/progress")
ENDPOINT = "/api/v1/content/<content_id>/progress"  # the route's rule: the metric's label
MAX_BODY = 4096  # a heartbeat is about 100 bytes; anything bigger is Flask's (413 and all)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FastHeartbeat:
    """WSGI middleware in front of ``app.wsgi_app`` (installed by ``install``)."""

    def __init__(self, app: Flask, wsgi_app: WsgiApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.answered = 0  # heartbeats answered here (tests and curious operators)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "PUT":
            match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
            if match is not None:
                answer = self._try(environ, match.group(1))
                if answer is not None:
                    status, headers = answer
                    start_response(status, headers)
                    return []
        return self.wsgi_app(environ, start_response)

    def _try(self, environ: dict[str, Any], content_id: str) -> tuple[str, list[tuple[str, str]]] | None:
        started = time.perf_counter()
        config = self.app.config
        near = self.app.extensions.get("near_cache")
        authorization = environ.get("HTTP_AUTHORIZATION")
        if (
            near is None
            or not authorization
            or config["CODEX_RATELIMIT_ENABLED"]
            or environ.get("HTTP_TRANSFER_ENCODING")
            or _mimetype(environ.get("CONTENT_TYPE", "")) != "application/json"
        ):
            return None
        now = datetime.now(UTC)
        principal = auth.warm_bearer_principal(near, authorization, now)
        length = environ.get("CONTENT_LENGTH", "")
        if principal is None or not length.isdigit() or not 0 < int(length) <= min(MAX_BODY, _body_limit(config)):
            return None
        body = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(body)  # Flask reads it again if the answer is not ours
        try:
            data = fast_progress(json.loads(body))
        except ValueError:  # (UnicodeDecodeError and JSONDecodeError included)
            return None
        if data is None:
            return None
        heartbeat = progress.normalise(
            data["position_seconds"], data["duration_seconds"], data["completed"], data["client_ts"], now
        )
        try:
            outcome = progress.record_warm_heartbeat(
                self.app.extensions["redis"],
                user_id=principal.user_id,
                content_id=uuid.UUID(content_id),
                heartbeat=heartbeat,
                now=now,
            )
        except Exception:  # Redis trouble and the rest: the route settles it (and logs it)
            return None
        if outcome is None:
            return None
        self.answered += 1
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if http.REQUEST_ID.match(incoming) else uuid.uuid4().hex
        headers = http.plain_api_headers(request_id, environ.get("HTTP_ORIGIN"), "PUT", config)
        duration = time.perf_counter() - started
        metrics.observe_request("PUT", ENDPOINT, 204, duration)
        if _REQUEST_LOG.isEnabledFor(logging.INFO):
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=request_id, user_id=str(principal.user_id))
            log.info(
                "request",
                method="PUT",
                path=mask_path(environ.get("PATH_INFO", "")),
                status=204,
                duration_ms=round(duration * 1000, 2),
                user_id=str(principal.user_id),
                ip=environ.get("REMOTE_ADDR"),
            )
        return "204 NO CONTENT", headers


def _mimetype(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _body_limit(config: Any) -> int:
    limit = config.get("MAX_CONTENT_LENGTH")
    return int(limit) if limit else MAX_BODY


def install(app: Flask) -> None:
    """Put the fast path in front of Flask (inside any proxy fix-up, so ``REMOTE_ADDR`` is the client)."""
    app.wsgi_app = FastHeartbeat(app, app.wsgi_app)  # type: ignore[method-assign]
