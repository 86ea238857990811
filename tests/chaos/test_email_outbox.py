"""The email outbox while the worker is SIGKILLed mid-send and Redis loses its queues: every row
ends ``sent``, nothing is left claimed, and the SMTP server got every message — more than once
only for a message whose "250" the killed worker never saw (jobs.md §8.2: at-least-once, with
the same Message-ID so the duplicate is recognisable)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask

from app import db
from app.notifications.models import EmailOutbox
from app.notifications.service import queue_email
from tests.chaos.common import check_sink, count, pipeline_state, publishing_to, slow_sink, wait_quiescent
from tests.chaos.conftest import Killer, Scale
from tests.e2e.harness import Stack, Supervisor

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

WORKER_CONCURRENCY = 2


def queue_batch(flask_app: Flask, first: int, n: int) -> None:
    """``n`` welcome emails in one transaction, each queued twice (the second is deduped)."""
    with flask_app.app_context():
        for i in range(first, first + n):
            for _ in range(2):
                queue_email(
                    db.session,
                    "welcome",
                    recipient=f"chaos{i}@example.com",
                    user_id=None,
                    organization_id=None,
                    context={"login_url": "http://localhost:3000/login", "user_name": f"Reader {i}"},
                    dedupe_key=f"chaos:welcome:{i}",
                )
        db.session.commit()


def test_outbox_survives_worker_kills_mid_send(
    committed_db: Flask, chaos_stack: Stack, smtp_server: Any, scale: Scale
) -> None:
    app, stack = committed_db, chaos_stack
    slow_sink(smtp_server, 0.05)
    worker = stack.start_worker(queues="email,default", concurrency=WORKER_CONCURRENCY)
    stack.start_beat()

    def sent() -> int:
        return count(app, EmailOutbox, EmailOutbox.status == "sent")

    def mid_send() -> bool:
        return 0 < sent() < count(app, EmailOutbox)

    started = time.monotonic()
    batch = 20
    with (
        publishing_to(app, stack.env["CELERY_BROKER_URL"]),
        Supervisor(worker) as supervisor,
        Killer(supervisor, scale.kill_every, scale.max_kills, mid_send, sent, min_progress=10) as killer,
    ):
        for first in range(0, scale.emails, batch):  # queued as a live app would: in bursts
            queue_batch(app, first, min(batch, scale.emails - first))
            if first == (scale.emails // batch // 2) * batch:
                threading.Thread(target=stack.redis.restart, name="redis-restart", daemon=True).start()
            time.sleep(0.05)
        # The killer goes on while sending (the short run: until its one kill).
        settle = wait_quiescent(
            app,
            lambda: count(app, EmailOutbox, EmailOutbox.status != "sent") == 0,
            scale.settle_timeout,
            "every outbox row sent",
            stack.report,
        )
        killer.stop()
    assert count(app, EmailOutbox) == scale.emails  # the second queue_email of each key inserted nothing
    assert count(app, EmailOutbox, EmailOutbox.claimed_at.is_not(None)) == 0
    messages, duplicates = check_sink(app, smtp_server, killer.kills, WORKER_CONCURRENCY)
    assert killer.kills >= 1
    print(
        f"\nchaos email: {messages} emails in {time.monotonic() - started:.1f}s; worker kills {killer.kills} "
        f"(restarts {supervisor.restarts}); redis restarted once; settled in {settle:.1f}s; "
        f"{duplicates} re-sent after a kill; {pipeline_state(app)}"
    )
