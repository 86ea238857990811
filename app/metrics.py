"""Prometheus metrics (api.md §2).

Two kinds of metric, so that one scrape adds up however many processes serve:

- **Recorded** counters and histograms (requests, tasks, webhook signature failures, payment
  mismatches), incremented by the process that did the work. Under gunicorn and in Celery
  workers ``PROMETHEUS_MULTIPROC_DIR`` is set and prometheus_client keeps each process's values
  in files there (``counter_<pid>.db``, ``histogram_<pid>.db``); a scrape merges every file, so it
  sums all web workers (and the counts of workers that have exited). Without the variable
  (tests, ``flask run``) they live in the default in-process registry.
- **Read at scrape time**: queue depths and backlog rows per status. They are not stored per
  process at all: the scrape reads Redis and Postgres and adds them as fresh gauge families.
  (Per-process gauge files would need a merge mode, and every mode is wrong for these:
  ``max``/``mostrecent`` keep a status that has since drained to no rows at its last value, and
  ``livesum`` multiplies by the number of workers that happened to be scraped.)

Celery tasks record ``codex_tasks_total`` and ``codex_task_duration_seconds`` through signals
(``connect_task_signals``); a worker serves its processes' files on ``CELERY_METRICS_PORT``
(``serve_worker_metrics``, started by ``tasks/worker.py``).
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    make_wsgi_app,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector
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
TASKS = Counter("codex_tasks_total", "Celery task runs by outcome (success, failure, retry)", ["task", "outcome"])
TASK_DURATION = Histogram(
    "codex_task_duration_seconds",
    "Celery task run time by task, whatever the outcome",
    ["task"],
    # From a webhook delivery (milliseconds) to a media ingest (minutes).
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
WEBHOOK_SIGNATURE_FAILURES = Counter(
    "codex_webhook_signature_failures_total", "Stripe webhook deliveries with a bad signature"
)
PAYMENT_MISMATCHES = Counter(
    "codex_payment_mismatch_total",
    "Paid checkout sessions refused because amount or currency differ from the session this app created",
)

# Backlog gauges read at scrape time: table -> (metric name, help). A table that does not exist yet is skipped.
BACKLOG_TABLES = {
    "stripe_events": ("codex_stripe_events", "Stripe events by status"),
    "email_outbox": ("codex_email_outbox", "Outbox rows by status"),
    "media_items": ("codex_media_items", "Media items by status"),
}


def multiprocess_dir() -> str | None:
    """The directory of per-process metric files, or None for the in-process registry."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


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


# ---- read at scrape time --------------------------------------------------------------------


def queue_lengths(broker: redis.Redis, queues: tuple[str, ...]) -> Metric:
    """Messages waiting per Celery queue (a queue Redis does not answer for is left out)."""
    family = GaugeMetricFamily("codex_queue_length", "Messages waiting per Celery queue", labels=["queue"])
    for queue in queues:
        try:
            family.add_metric([queue], int(broker.llen(queue)))
        except redis.RedisError:
            continue
    return family


def backlog(session: Session) -> list[Metric]:
    """Rows per status of the tables that hold pending work."""
    families: list[Metric] = []
    for table, (name, documentation) in BACKLOG_TABLES.items():
        family = GaugeMetricFamily(name, documentation, labels=["status"])
        families.append(family)
        if session.scalar(text("SELECT to_regclass(:t)"), {"t": table}) is None:
            continue
        rows = session.execute(text(f"SELECT status, count(*) FROM {table} GROUP BY status")).all()  # noqa: S608
        for status, count in rows:
            family.add_metric([status], count)
    return families


class _Scrape:
    """One scrape: the recorded metrics plus the gauge families read for it."""

    def __init__(self, recorded: Collector, read_now: Iterable[Metric]) -> None:
        self._recorded = recorded
        self._read_now = list(read_now)

    def collect(self) -> Iterator[Metric]:
        yield from self._recorded.collect()
        yield from self._read_now


def recorded_metrics() -> CollectorRegistry:
    """Every process's files when ``PROMETHEUS_MULTIPROC_DIR`` is set, else this process's registry."""
    directory = multiprocess_dir()
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


def render(read_now: Iterable[Metric] = ()) -> tuple[bytes, str]:
    return generate_latest(_Scrape(recorded_metrics(), read_now)), CONTENT_TYPE_LATEST


# ---- Celery tasks ---------------------------------------------------------------------------

# task id -> perf_counter at task_prerun, popped at task_postrun (same process, same thread).
_TASK_STARTED: dict[str, float] = {}


def _task_name(sender: Any) -> str:
    return getattr(sender, "name", None) or "?"


def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _TASK_STARTED[task_id] = time.perf_counter()


def _on_postrun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    started = _TASK_STARTED.pop(task_id, None) if task_id else None
    if started is not None:
        TASK_DURATION.labels(_task_name(task)).observe(time.perf_counter() - started)


def _on_success(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_task_name(sender), "success").inc()


def _on_failure(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_task_name(sender), "failure").inc()


def _on_retry(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_task_name(sender), "retry").inc()


def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    # Drops the pool process's files of live-mode gauges (there are none today); its counters stay summed.
    directory = multiprocess_dir()
    if directory:
        multiprocess.mark_process_dead(pid or os.getpid(), directory)


def connect_task_signals() -> None:
    """Count every task run by outcome and time it, in whichever process runs it."""
    from celery import signals

    handlers: list[tuple[Any, Callable[..., None], str]] = [
        (signals.task_prerun, _on_prerun, "codex.metrics.task_prerun"),
        (signals.task_postrun, _on_postrun, "codex.metrics.task_postrun"),
        (signals.task_success, _on_success, "codex.metrics.task_success"),
        (signals.task_failure, _on_failure, "codex.metrics.task_failure"),
        (signals.task_retry, _on_retry, "codex.metrics.task_retry"),
        (signals.worker_process_shutdown, _on_process_shutdown, "codex.metrics.process_shutdown"),
    ]
    for signal, handler, uid in handlers:
        signal.connect(handler, weak=False, dispatch_uid=uid)


# ---- a Celery worker's own endpoint ---------------------------------------------------------

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def guarded(metrics_app: WsgiApp, token: str, production: bool) -> WsgiApp:
    """``metrics_app`` behind the rules of ``/metrics``: the bearer token when one is set, and
    nothing at all in production without one (api.md §2)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not token and production:
            return _error(start_response, "404 Not Found", "NOT_FOUND", "Not found.")
        if token:
            supplied = str(environ.get("HTTP_AUTHORIZATION", ""))
            if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
                return _error(start_response, "401 Unauthorized", "UNAUTHENTICATED", "Authentication required.")
        return metrics_app(environ, start_response)

    return app


def _error(start_response: Callable[..., Any], status: str, code: str, message: str) -> list[bytes]:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log (as for the web server: scrapes every few seconds are noise)."""


def serve_worker_metrics(addr: str, port: int, token: str, production: bool) -> ThreadingWSGIServer:
    """Serve this Celery worker's metrics (every one of its pool processes) on ``addr:port``.

    Runs in the worker's main process on a daemon thread; the pool processes write their files
    to ``PROMETHEUS_MULTIPROC_DIR`` and each scrape merges them.
    """
    app = guarded(make_wsgi_app(recorded_metrics()), token, production)
    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="codex-worker-metrics", daemon=True).start()
    return server
