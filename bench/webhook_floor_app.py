"""The least a webhook endpoint can do, for bench_webhook_floor: a bare WSGI callable that checks
the signature (the real verifier), parses the event, stores it with one autocommit INSERT on a
per-thread psycopg connection and pushes a message with one LPUSH. No Flask, no logging, no
metrics, no error handling; ``GET /health`` is the trivial app's. Not part of Codex.

With ``FLOOR_PRODUCTION=1`` it adds, each in its cheapest form, what the production configuration
obliges any implementation to do on top: the per-IP limit counted in Redis before the work (one
round trip, a fixed-window ``INCR``), the spec's response headers (request id, rate-limit and
security headers, CSP: ``app.http.plain_api_headers``), the request metric (prometheus_client,
multiprocess mode under ``gunicorn -c python:app.gunicorn_conf``) and a JSON log line on stderr.
bench_webhooks measures both against each other: the ratio bounds issue 19's webhook goal."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from prometheus_client import Counter, Histogram

from app.http import plain_api_headers
from app.payments.signature import verify
from bench.trivial_app import app as trivial

SECRETS = [os.environ["STRIPE_WEBHOOK_SECRET"]]
DSN = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
QUEUE = "bench:floor"  # in the bench's broker database; emptied by the bench
BROKER = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
INSERT = """
    INSERT INTO stripe_events (id, type, source, livemode, api_version, stripe_created_at, object_id,
                               payment_intent_id, payload, status, last_error)
    VALUES (%s, %s, 'webhook', %s, %s, %s, %s, %s, %s::jsonb, 'ignored', NULL)
    ON CONFLICT (id) DO NOTHING RETURNING id
"""
MESSAGE = b"m" * 900  # about the size of the Celery message Codex pushes
_local = threading.local()


def _connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(DSN, autocommit=True, prepare_threshold=1)
    return conn


PRODUCTION = os.environ.get("FLOOR_PRODUCTION") == "1"
LIMITER = redis.Redis.from_url(os.environ.get("REDIS_URL") or os.environ["CELERY_BROKER_URL"])
LIMIT = 1000  # per client IP per minute, as Codex's webhook route
_COUNT = LIMITER.register_script(
    "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], 60) end return n"
)
_REQUESTS = Counter("floor_webhook_requests_total", "requests", ["method", "endpoint", "status"])
_DURATION = Histogram(
    "floor_webhook_request_duration_seconds",
    "latency",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_CONFIG = {"APP_ENV": "development", "CORS_ORIGINS": []}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["REQUEST_METHOD"] != "POST":
        return trivial(environ, start_response)
    if PRODUCTION:
        return production(environ, start_response)
    return bare(environ, start_response)


def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    verify(body, environ.get("HTTP_STRIPE_SIGNATURE"), SECRETS)
    event = json.loads(body)
    obj = event["data"]["object"]
    row = (
        event["id"], event["type"], event["livemode"], event.get("api_version"),
        datetime.fromtimestamp(event["created"], UTC), obj.get("id"), obj.get("payment_intent"), body.decode(),
    )  # fmt: skip
    if _connection().execute(INSERT, row).fetchone() is not None:
        BROKER.lpush(QUEUE, MESSAGE)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "17")])
    return [b'{"received":true}']


def production(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``bare`` with the per-IP limit before it, and the headers, metric and log line after it."""
    started = time.perf_counter()
    ip = environ.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip() or environ.get("REMOTE_ADDR", "")
    count = int(_COUNT(keys=[f"floor:rl:webhook:{ip}:{int(time.time()) // 60}"]))
    if count > LIMIT:
        start_response("429 TOO MANY REQUESTS", [("Content-Length", "0")])
        return []
    status: list[str] = []
    answer = bare(environ, lambda line, headers: status.append(line))
    request_id = os.urandom(16).hex()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", "17"),
        ("X-RateLimit-Limit", str(LIMIT)),
        ("X-RateLimit-Remaining", str(LIMIT - count)),
        ("X-RateLimit-Reset", str(60 - int(time.time()) % 60)),
        *plain_api_headers(request_id, None, "POST", _CONFIG, cache_control=False),
    ]
    duration = time.perf_counter() - started
    _REQUESTS.labels("POST", "/webhooks/stripe", "200").inc()
    _DURATION.labels("POST", "/webhooks/stripe").observe(duration)
    line = {
        "method": "POST", "path": "/webhooks/stripe", "status": 200, "duration_ms": round(duration * 1000, 2),
        "user_id": None, "ip": ip, "event": "request", "request_id": request_id, "level": "info",
        "logger": "codex.request", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z",
    }  # fmt: skip
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()
    start_response(status[0], headers)
    return answer
