"""``POST /webhooks/stripe`` answered below Flask when the delivery is new or a duplicate and valid.

Why: a delivery's own work is small (verify an HMAC, parse, one autocommit INSERT, one LPUSH);
Flask's request context, routing, hooks and response object cost about as much again, and the
webhook endpoint is measured against a bare WSGI floor doing only that work
(bench/webhook_floor_app.py). So this WSGI middleware does the route's work with the route's own
functions (``webhooks.delivery_of``, ``store_delivery``, ``stored``) and hands everything else
to Flask untouched (the body it read is put back):

- only ``POST /webhooks/stripe`` with a ``Content-Length`` within the route's body limit;
- with rate limits on, the route's per-IP limit is counted here, once, in one limiter call (as
  app/access/fast_path.py does): a refusal is answered here with the limiter's 429, and a
  request handed to the route after counting carries the outcome in the WSGI environ
  (``ratelimit.ENVIRON_KEY``), so Flask does not count it again. The count is sent first and its
  answer read once the body is verified and parsed (``_PendingCount``): Redis works while this
  thread does, and the INSERT still waits for the answer;
- only when the app's sessions are bound to the engine (the autocommit path; the test suite's
  rollback fixtures keep the route);
- a signature that does not verify or a body that is not an event: the route answers (it counts
  the metric and logs, once), as it does when the INSERT raises (it tries once more: the INSERT is
  idempotent, and a DataError or an unreachable database is answered there, 400 or 503).

Once the row is stored the answer is this path's: 200 ``{"received":true}`` with the headers
``app.http._finish`` adds (``http.plain_headers``), the request metric and the one log line, with
the event's fields. tests/commerce/test_webhook_fast_path.py compares both paths' answers.
``FAST_PATH_ENABLED`` switches it with the other fast path.
"""

from __future__ import annotations

import io
import time
from typing import Any

import redis
import structlog
from flask import Flask

from app import http, ratelimit
from app.commerce import webhooks
from app.commerce.routes import WEBHOOK_MAX_BYTES
from app.extensions import redis_script
from app.payments.signature import SignatureError, verify
from app.speed import answer
from app.speed.connections import thread_connection
from app.speed.resp import pack

PATH = "/webhooks/stripe"
BODY = b'{"received":true}\n'  # what the route's ``jsonify({"received": True})`` writes
# Bodies up to this size are verified and parsed while the limiter counts the request; a larger
# one waits for its answer first, so a refused flood of big bodies costs no HMAC over them.
EARLY_BYTES = 64 * 1024
# The limits alone, through the limiter's public way of running them in a script of one's own.
_COUNT_SCRIPT = ratelimit.guard("return 1")


class WebhookFastPath(answer.FastPath):
    """WSGI middleware in front of ``app.wsgi_app`` (installed by ``install``)."""

    def __init__(self, app: Flask, wsgi_app: answer.WsgiApp) -> None:
        super().__init__(app, wsgi_app)
        self.answered = 0  # deliveries answered here (tests, and operators who wonder)

    def reply(self, environ: dict[str, Any]) -> answer.Answer | None:
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST":
            return self._ingest(environ)
        return None

    def _ingest(self, environ: dict[str, Any]) -> answer.Answer | None:
        """The answer once the delivery is stored (or refused by the rate limit), or None: the
        route's to answer."""
        config = self.app.config
        length = environ.get("CONTENT_LENGTH") or ""
        if not length.isdigit() or not 0 < int(length) <= WEBHOOK_MAX_BYTES:
            return None
        size = int(length)
        started = time.perf_counter()
        with self.app.app_context():
            # Counted first, as the route's hook does (every attempt counts). The limiter's answer
            # is read after the body is verified and parsed (a small body: a refusal then cost
            # little) while Redis works on it, so this thread seldom waits for it.
            pending = self._count(environ) if config["RATELIMIT_ENABLED"] else None
            try:
                counted = pending.read() if pending is not None and size > EARLY_BYTES else None
                refused = counted is not None and not counted.allowed
                delivery = None if refused else self._read(environ, size, config)
                counted = pending.read() if pending is not None else None
            except BaseException:
                if pending is not None:
                    pending.abandon()
                raise
            limited: list[tuple[str, str]] = []
            if counted is not None:
                if not counted.allowed:
                    return self._refuse(environ, counted, started)
                environ[ratelimit.ENVIRON_KEY] = counted  # (handed over: the route must not count it again)
                limited = counted.headers()
            if delivery is None:
                return None
            engine = webhooks.autocommit_engine()
            if engine is None:
                return None
            try:
                inserted = webhooks.store_delivery(engine, delivery)
            except Exception:
                return None  # not stored: the route tries once more and answers the error
            # Stored: from here on the answer is ours (the route would see a duplicate).
            request_id = http.request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=request_id)
            # The message is sent now, after the INSERT; the broker's answer is read after the log
            # line is written, so this thread does not wait for it (a failure is logged then).
            published = webhooks.publish(delivery, inserted)
            try:
                webhooks.log_fields(delivery, inserted)
                self.answered += 1
                duration = time.perf_counter() - started
                http.record_answer("POST", PATH, PATH, 200, duration, None, environ.get("REMOTE_ADDR"))
            finally:
                published()
        content = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY))), *limited]
        return "200 OK", content + http.plain_headers(request_id, config), BODY

    @staticmethod
    def _read(environ: dict[str, Any], size: int, config: Any) -> webhooks.Delivery | None:
        """The body (put back for the route), verified and parsed; None when it is the route's."""
        body = environ["wsgi.input"].read(size)
        environ["wsgi.input"] = io.BytesIO(body)  # put back for the route, whatever happens next
        if len(body) != size:
            return None
        try:
            # Side-effect free, unlike ``verify_delivery``: a refusal is counted by the route.
            verify(body, environ.get("HTTP_STRIPE_SIGNATURE"), config["STRIPE_WEBHOOK_SECRET"])
            return webhooks.delivery_of(body, "webhook")
        except (SignatureError, webhooks.InvalidPayload):
            return None

    def _count(self, environ: dict[str, Any]) -> _PendingCount:
        """The route's limit (per client IP) for this request, sent to Redis (read later)."""
        bound = ratelimit.bind(self.rules("POST", PATH), environ.get("REMOTE_ADDR") or "unknown", None)
        return _PendingCount(self.app.extensions["redis"], bound)

    def _refuse(self, environ: dict[str, Any], counted: ratelimit.Outcome, started: float) -> answer.Answer:
        """The limiter's 429, as the route would answer it (same body, headers, metric and log line)."""
        self.refused += 1
        request_id = http.request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        if http.request_log_enabled():
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=request_id)
        duration = time.perf_counter() - started
        http.record_answer("POST", PATH, PATH, 429, duration, None, environ.get("REMOTE_ADDR"))
        body = counted.error_body()
        content = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *counted.headers()]
        return "429 TOO MANY REQUESTS", content + http.plain_headers(request_id, self.app.config), body


class _PendingCount:
    """One count of the route's limits on the wire: sent when made, its answer read by ``read``
    (the same as ``ratelimit.check``'s: None when Redis cannot be reached or fails, let through).

    Why not ``ratelimit.check``: it waits for Redis, and this path has the body to verify and
    parse meanwhile. The call goes on this thread's own connection (``app.speed.connections``: one
    outstanding reply at most, ``read`` or ``abandon`` always follows before its next use).
    """

    def __init__(self, client: redis.Redis, bound: ratelimit.Bound) -> None:
        self.keys, self.args = bound.tail()
        self.script: Any = redis_script(client, _COUNT_SCRIPT)  # (the stubs lack Script's attributes)
        self.outcome: ratelimit.Outcome | None = None
        self.connection: Any = None
        connection = thread_connection(client)  # (nothing else uses it before ``read``/``abandon``)
        try:
            connection.send_packed_command([pack("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)])
        except redis.RedisError:
            connection.disconnect()
            ratelimit.unavailable()
            return
        except BaseException:
            connection.disconnect()
            raise
        self.connection = connection

    def read(self) -> ratelimit.Outcome | None:
        """The limits' outcome (read once; later calls return it again)."""
        connection, self.connection = self.connection, None
        if connection is None:
            return self.outcome
        try:
            reply = connection.read_response()
        except redis.exceptions.NoScriptError:  # (a restarted or flushed Redis: nothing was counted)
            try:
                reply = self.script(keys=self.keys, args=self.args)  # loads it and counts
            except redis.RedisError:
                ratelimit.unavailable()
                return None
        except redis.ResponseError:  # an error reply, read whole: the connection is still in step
            ratelimit.unavailable()
            return None
        except redis.RedisError:
            connection.disconnect()
            ratelimit.unavailable()
            return None
        except BaseException:
            connection.disconnect()  # (out of step mid-reply)
            raise
        self.outcome, _ = ratelimit.split(reply)
        return self.outcome

    def abandon(self) -> None:
        """The request failed before ``read``: the unread reply would put the connection out of step."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.disconnect()


def install(app: Flask) -> None:
    """Put the webhook fast path in front of Flask (inside any proxy fix-up: ``REMOTE_ADDR``)."""
    app.wsgi_app = WebhookFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
