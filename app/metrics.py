"""Prometheus metrics (api.md §2). Request metrics are recorded by the request hooks; queue
depths and backlog gauges are read at scrape time.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several gunicorn workers) the scrape aggregates the
per-process files; otherwise the default registry is served.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text
from sqlalchemy.orm import Session

HTTP_REQUESTS = Counter(
    "codex_http_requests_total", "HTTP requests by route and status", ["method", "endpoint", "status"]
)
HTTP_DURATION = Histogram(
    "codex_http_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TASKS = Counter("codex_tasks_total", "Celery task runs by outcome", ["task", "outcome"])
WEBHOOK_SIGNATURE_FAILURES = Counter(
    "codex_webhook_signature_failures_total", "Stripe webhook deliveries with a bad signature"
)
PAYMENT_MISMATCHES = Counter(
    "codex_payment_mismatch_total",
    "Paid checkout sessions refused because amount or currency differ from the session this app created",
)
QUEUE_LENGTH = Gauge("codex_queue_length", "Messages waiting per Celery queue", ["queue"], multiprocess_mode="max")

# Backlog gauges: table -> gauge of rows per status. A table that does not exist yet is skipped.
BACKLOG_GAUGES = {
    "stripe_events": Gauge("codex_stripe_events", "Stripe events by status", ["status"], multiprocess_mode="max"),
    "email_outbox": Gauge("codex_email_outbox", "Outbox rows by status", ["status"], multiprocess_mode="max"),
    "media_items": Gauge("codex_media_items", "Media items by status", ["status"], multiprocess_mode="max"),
}


# (method, route, status) -> its two children. ``labels()`` validates and locks on every call; the
# routes are a fixed set, so each combination is looked up once per process.
_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, endpoint: str, status: int, seconds: float) -> None:
    key = (method, endpoint, status)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        children = (HTTP_REQUESTS.labels(method, endpoint, str(status)), HTTP_DURATION.labels(method, endpoint))
        _REQUEST_CHILDREN[key] = children
    children[0].inc()
    children[1].observe(seconds)


def refresh_gauges(session: Session, broker: redis.Redis, queues: tuple[str, ...]) -> None:
    """Read queue depths from the broker and row counts by status from Postgres."""
    for queue in queues:
        try:
            QUEUE_LENGTH.labels(queue).set(int(broker.llen(queue)))
        except redis.RedisError:
            continue
    for table, gauge in BACKLOG_GAUGES.items():
        if session.scalar(text("SELECT to_regclass(:t)"), {"t": table}) is None:
            continue
        rows = session.execute(text(f"SELECT status, count(*) FROM {table} GROUP BY status")).all()  # noqa: S608
        gauge.clear()
        for status, count in rows:
            gauge.labels(status).set(count)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
