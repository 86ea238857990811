"""The least a webhook endpoint can do, for bench_webhook_floor: a bare WSGI callable that checks
the signature (the real verifier), parses the event, stores it with one autocommit INSERT on a
per-thread psycopg connection and pushes a message with one LPUSH. No Flask, no logging, no
metrics, no error handling; ``GET /health`` is the trivial app's. Not part of Codex.

With ``FLOOR_PRODUCTION=1`` it adds, each in its cheapest form, what the production configuration
obliges any implementation to do on top (bench/floor_obligations.py): the per-IP limit counted in
Redis before the work (one round trip), the rate-limit and the spec's response headers, the request
metric and a JSON log line. bench_webhooks measures both against each other: the ratio bounds
issue 19's webhook goal."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from app.payments.signature import verify
from bench import floor_obligations as obliged
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
_COUNT = LIMITER.register_script(obliged.COUNT_LUA + "return n")


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
    count = int(_COUNT(keys=[obliged.limit_key("webhook", obliged.client_ip(environ))]))
    if count > LIMIT:
        start_response("429 TOO MANY REQUESTS", [("Content-Length", "0")])
        return []
    status: list[str] = []
    answer = bare(environ, lambda line, headers: status.append(line))
    content = [("Content-Type", "application/json"), ("Content-Length", "17"), *obliged.limit_headers(LIMIT, count)]
    headers = obliged.finish(environ, status[0], content, "/webhooks/stripe", started, None, cache_control=False)
    start_response(status[0], headers)
    return answer
