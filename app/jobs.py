"""Celery wiring: the app, a Flask-context task base, queue routing and the hardened settings.

Nothing in ``app/`` imports ``tasks/``: routes enqueue by task *name* through
``enqueue_after_commit``, and the routing table below decides each task's queue (jobs.md §3).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import structlog
from celery import Celery, Task
from flask import Flask

from app import keys

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


TaskSender = Callable[[str, tuple[Any, ...], float | None], None]


def make_task_sender(celery_app: Celery) -> TaskSender:
    """What ``enqueue_after_commit`` calls after a commit: publish by name to the task's queue.

    On a plain ``redis://`` broker this is ``RedisTaskPublisher`` (one LPUSH of a message built
    here, a pipeline for several); any other broker goes through Celery's ``send_task``.
    """
    if RedisTaskPublisher.supports(celery_app):
        return RedisTaskPublisher(celery_app)

    def send(name: str, args: tuple[Any, ...], countdown: float | None) -> None:
        celery_app.send_task(name, args=list(args), queue=queue_for(name), countdown=countdown)

    return send


class RedisTaskPublisher:
    """Publish Celery task messages straight onto the Redis broker's queue lists.

    Why: ``send_task`` costs ~0.4 ms of CPU per message (routing, option merging, kombu's
    producer pool and retry wrappers), as much as the whole rest of a webhook delivery. The
    message it ends up writing is simple: with the anonymous exchange kombu's Redis transport
    LPUSHes one JSON envelope onto the list named after the queue. This builds the same
    protocol-2 envelope (same headers, properties and body as ``send_task`` writes; see
    ``tests/commerce/test_task_publisher.py``, which has a real worker consume it) and
    pushes it with one command, or one pipeline for all the messages of a commit.

    What it skips: the ``before/after_task_publish`` signals (nothing here connects to them),
    Celery's publish retry policy (a failed publish raises; ``enqueue_after_commit`` logs it and
    the sweepers re-enqueue from Postgres, as for any lost message) and the sent event
    (``task_send_sent_event`` is off). Only for a plain ``redis://`` broker (``global_keyprefix``
    honoured); anything else (sentinel, TLS, another transport, priorities) keeps ``send_task``.
    """

    def __init__(self, celery_app: Celery) -> None:
        self.celery_app = celery_app
        conf = celery_app.conf
        self.url = conf.broker_url
        timeout = conf.broker_connection_timeout or None
        self.client = redis.Redis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.hostname = socket.gethostname()
        self.supported = self.supports(celery_app)  # checked once: reading the settings costs ~20 us

    @staticmethod
    def supports(celery_app: Celery) -> bool:
        conf = celery_app.conf
        url = conf.broker_url
        if not isinstance(url, str) or not url.startswith("redis://") or ";" in url:
            return False  # sentinel/TLS/failover lists and other transports keep kombu
        return not conf.task_queue_max_priority

    def __call__(self, name: str, args: tuple[Any, ...], countdown: float | None) -> None:
        self.send_many([(name, args, countdown)])

    def send_many(self, tasks: Sequence[tuple[str, tuple[Any, ...], float | None]]) -> None:
        """Several messages in one round trip (the emails of one purchase, a sweep's batch)."""
        conf = self.celery_app.conf
        if conf.broker_url != self.url or not self.supported or any(self._has_own_routing(t[0]) for t in tasks):
            # Reconfigured since (tests do): Celery's own path.
            for name, args, countdown in tasks:
                self.celery_app.send_task(name, args=list(args), queue=queue_for(name), countdown=countdown)
            return
        # kombu's Redis transport prefixes every key with ``global_keyprefix`` when one is set.
        prefix = (conf.broker_transport_options or {}).get("global_keyprefix") or ""
        if len(tasks) == 1:
            queue, message = self.message(*tasks[0])
            self.client.lpush(prefix + queue, message)
            return
        pipe = self.client.pipeline(transaction=False)
        for name, args, countdown in tasks:
            queue, message = self.message(name, args, countdown)
            pipe.lpush(prefix + queue, message)
        pipe.execute()

    def _registered(self, name: str) -> Any:
        # The registry itself, as send_task reads it (``tasks`` would finalize the app).
        return getattr(self.celery_app, "_tasks", {}).get(name)

    def _has_own_routing(self, name: str) -> bool:
        """A registered task declaring an expiry, queue or priority of its own (none does today):
        send_task knows how to write those."""
        registered = self._registered(name)
        if registered is None:
            return False
        options = registered._get_exec_options()
        return any(options.get(key) is not None for key in ("expires", "queue", "priority", "exchange"))

    def message(self, name: str, args: tuple[Any, ...], countdown: float | None) -> tuple[str, bytes]:
        """(queue, the JSON envelope kombu's Redis transport stores) for ``name(*args)``."""
        task_id = str(uuid.uuid4())
        root_id: str | None = task_id
        parent_id: str | None = None
        parent = self.celery_app.current_worker_task  # a task publishing: keep the trail, as send_task does
        if parent is not None:
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        # As send_task does for a task registered in this process (a worker): its execution
        # options (time limits, ignore_result) go into the message; elsewhere they are None.
        registered = self._registered(name)
        options = registered._get_exec_options() if registered is not None else {}
        eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat() if countdown else None
        arguments = list(args)
        body = json.dumps([arguments, {}, _EMBED]).encode()
        queue = queue_for(name)
        envelope = {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": name,
                "id": task_id,
                "shadow": None,
                "eta": eta,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [options.get("time_limit"), options.get("soft_time_limit")],
                "root_id": root_id,
                "parent_id": parent_id,
                "argsrepr": repr(arguments)[:1024] if arguments else "()",  # as Celery's ``args or ()``
                "kwargsrepr": "{}",
                "origin": f"gen{os.getpid()}@{self.hostname}",
                "ignore_result": options.get("ignore_result"),
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": self.celery_app.thread_oid,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return queue, json.dumps(envelope).encode()


# The third element of a protocol-2 body: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


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
