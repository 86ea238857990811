"""Celery wiring: the app, a Flask-context task base, queue routing and the hardened settings.

Nothing in ``app/`` imports ``tasks/``: routes enqueue by task *name* through
``enqueue_after_commit``, and the routing table below decides each task's queue (jobs.md §3).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis
import structlog
from celery import Celery, Task, signals
from flask import Flask

from app import keys
from app.speed.publisher import RedisTaskPublisher

log = structlog.get_logger(__name__)

QUEUES = ("webhooks", "email", "media", "playback", "default")

# Task name -> queue (jobs.md §3). Names not listed go to ``default``.
TASK_QUEUES: dict[str, str] = {
    "payments.process_stripe_event": "webhooks",
    "payments.submit_refund": "webhooks",
    "payments.reconcile_checkouts": "webhooks",
    "email.send": "email",
    "media.ingest": "media",
    "playback.flush_progress": "playback",
    "playback.rollup_daily_stats": "playback",
}


def queue_for(task_name: str) -> str:
    return TASK_QUEUES.get(task_name, "default")


def _route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str]:
    return {"queue": queue_for(name)}


def celery_init_app(app: Flask) -> Celery[Any]:
    """Create the Celery app bound to ``app`` (Flask's ``examples/celery`` pattern)."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                structlog.contextvars.bind_contextvars(task_id=self.request.id, task_name=self.name)
                try:
                    return self.run(*args, **kwargs)
                finally:
                    structlog.contextvars.unbind_contextvars("task_id", "task_name")

    celery_app = Celery(app.name, task_cls=FlaskTask)
    config = app.config
    celery_app.conf.update(
        broker_url=config["CELERY_BROKER_URL"],
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        timezone="UTC",
        enable_utc=True,
        worker_prefetch_multiplier=1,
        task_default_queue="default",
        task_create_missing_queues=True,
        task_routes=(_route,),
        broker_transport_options={"visibility_timeout": app.extensions["codex_config"].broker_visibility_timeout},
        broker_connection_retry_on_startup=True,
        # On a lost broker connection, let running tasks finish: cancelling one that already
        # handed a message to SMTP but had not committed `sent` would send it twice. Its
        # unacknowledged message comes back later and finds the row done. Set explicitly because
        # the default flips in Celery 6 (the worker still logs a pending-deprecation note).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        # Task events cost a Redis publish per state change on every task; they are off by default
        # and Flower switches them on in the workers it watches (its --enable_events default), so
        # monitoring costs nothing when nobody is looking.
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


@signals.setup_logging.connect(weak=False, dispatch_uid="codex.keep_logging")
def _keep_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Every Celery process (worker, its pool, beat) keeps the logging ``create_app`` set up.

    Without a receiver for this signal, Celery configures logging itself when a worker or beat
    starts: ``worker_hijack_root_logger=False`` keeps our JSON handler, but Celery still sets the
    root logger to its own ``-l`` level, WARNING when none is given, as the Procfile gives none.
    Every INFO line of the tasks (``email.sent`` and the rest) was dropped, whatever LOG_LEVEL
    said. With a receiver, Celery leaves logging alone (its documented override): the app's
    loggers follow LOG_LEVEL everywhere, and Celery's own (``celery.*``: "Task ... received",
    "succeeded in ...") keep the level ``-l`` gives them, WARNING by default, as before."""
    logging.getLogger("celery").setLevel(loglevel or logging.WARNING)


TaskSender = Callable[[str, tuple[Any, ...], float | None], None]


def make_task_sender(celery_app: Celery) -> TaskSender:
    """What ``enqueue_after_commit`` calls after a commit: publish by name to the task's queue.

    On a plain ``redis://`` broker this is ``app.speed.publisher.RedisTaskPublisher`` (one LPUSH of
    the message Celery builds, a pipeline for several); any other broker goes through ``send_task``.
    """
    if RedisTaskPublisher.supports(celery_app):
        return RedisTaskPublisher(celery_app, queue_for)

    def send(name: str, args: tuple[Any, ...], countdown: float | None) -> None:
        celery_app.send_task(name, args=list(args), queue=queue_for(name), countdown=countdown)

    return send


def beat_lock(redis_client: redis.Redis, task_name: str, ttl_seconds: int) -> bool:
    """Take ``lock:beat:<task>`` (SET NX EX); False when another run holds it (jobs.md §5)."""
    try:
        return bool(redis_client.set(keys.beat_lock(task_name), "1", nx=True, ex=ttl_seconds))
    except redis.RedisError:
        # Conditional claims make a duplicate run harmless; better run than skip.
        return True


def release_beat_lock(redis_client: redis.Redis, task_name: str) -> None:
    with contextlib.suppress(redis.RedisError):
        redis_client.delete(keys.beat_lock(task_name))
