"""The least a webhook endpoint can do, for bench_webhook_floor: a bare WSGI callable that checks
the signature (the real verifier), parses the event, stores it with one autocommit INSERT on a
per-thread psycopg connection and pushes a message with one LPUSH. No Flask, no logging, no
metrics, no error handling; ``GET /health`` is the trivial app's. Not part of Codex."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

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


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["REQUEST_METHOD"] != "POST":
        return trivial(environ, start_response)
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
