"""Pieces shared by the chaos tests: signed deliveries with Stripe's retry rule, pipeline state
for failure messages, and what the SMTP sink received."""

from __future__ import annotations

import asyncio
import http.client
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from app import db
from app.commerce.models import Purchase, StripeEvent
from app.media.models import MediaItem
from app.notifications.models import EmailOutbox
from tests.fakes import stripe_objects as so


def scalar(flask_app: Flask, stmt: Any) -> Any:
    with flask_app.app_context():
        return db.session.scalar(stmt)


def count(flask_app: Flask, model: Any, *where: Any) -> int:
    return int(scalar(flask_app, select(func.count()).select_from(model).where(*where)) or 0)


def by_status(flask_app: Flask, model: Any) -> dict[str, int]:
    with flask_app.app_context():
        rows = db.session.execute(select(model.status, func.count()).group_by(model.status)).all()
    return {status: n for status, n in rows}


def pipeline_state(flask_app: Flask) -> str:
    """Row counts per status: tells a slow pipeline from a stuck or lost one."""
    return (
        f"stripe_events {by_status(flask_app, StripeEvent)}; purchases {count(flask_app, Purchase)}; "
        f"email_outbox {by_status(flask_app, EmailOutbox)}; media_items {by_status(flask_app, MediaItem)}"
    )


@dataclass
class Deliverer:
    """POSTs Stripe events to the webhook from ``threads`` threads; a delivery that did not get a
    2xx (503, connection refused, timeout) goes back on the queue and is sent again, newly
    signed, as Stripe does. ``statuses`` counts every answer."""

    port: int
    events: list[dict[str, Any]]
    threads: int = 4
    statuses: Counter[int | str] = field(default_factory=Counter)
    delivered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, on_progress: Callable[[int], None] | None = None, timeout: float = 600.0) -> None:
        work: queue.Queue[dict[str, Any]] = queue.Queue()
        for evt in self.events:
            work.put(evt)
        deadline = time.monotonic() + timeout
        bodies = {id(evt): so.body_of(evt) for evt in self.events}

        def sender() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            while time.monotonic() < deadline:
                try:
                    evt = work.get_nowait()
                except queue.Empty:
                    with self._lock:
                        if self.delivered >= len(self.events):
                            break
                    time.sleep(0.05)
                    continue
                body, headers = so.signed(bodies[id(evt)])
                try:
                    conn.request("POST", "/webhooks/stripe", body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    status: int | str = response.status
                except (OSError, http.client.HTTPException) as exc:
                    status = type(exc).__name__
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                with self._lock:
                    self.statuses[status] += 1
                    if status == 200:
                        self.delivered += 1
                        done = self.delivered
                    else:
                        done = -1
                if done < 0:
                    time.sleep(0.2)  # Stripe backs off; so do we, a little
                    work.put(evt)
                elif on_progress is not None:
                    on_progress(done)
            conn.close()

        workers = [threading.Thread(target=sender, name=f"deliver-{i}", daemon=True) for i in range(self.threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=timeout + 30)
        assert self.delivered == len(self.events), (
            f"only {self.delivered}/{len(self.events)} acknowledged: {self.statuses}"
        )


def wait_quiescent(
    flask_app: Flask, done: Callable[[], bool], timeout: float, what: str, extra: Callable[[], str] | None = None
) -> float:
    """Poll ``done`` until true; returns the seconds it took, or fails showing the pipeline state."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if done():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(
        f"not quiescent after {timeout:.0f}s: {what}\n{pipeline_state(flask_app)}\n{extra() if extra else ''}"
    )


def sink_outbox_ids(smtp_server: Any) -> Counter[str]:
    """How many times the sink accepted each outbox row (Message-ID ``<{outbox id}@{domain}>``)."""
    ids: Counter[str] = Counter()
    for message in list(smtp_server.handler.messages):
        ids[str(message["Message-ID"]).strip("<>").split("@", 1)[0]] += 1
    return ids


def outbox_rows(flask_app: Flask) -> dict[str, tuple[str, str, int]]:
    """outbox id -> (template, status, attempts)."""
    with flask_app.app_context():
        rows = db.session.execute(
            select(EmailOutbox.id, EmailOutbox.template, EmailOutbox.status, EmailOutbox.attempts)
        )
        return {str(r.id): (r.template, r.status, r.attempts) for r in rows}


def check_sink(flask_app: Flask, smtp_server: Any, kills: int, concurrency: int) -> tuple[int, int]:
    """Every outbox row is ``sent`` and reached the sink; returns (messages, duplicates).

    jobs.md §8.2 promises at-least-once delivery with a stable Message-ID: only a worker killed
    between the server's "250 accepted" and the ``sent`` commit may send a message again, so
    duplicates are bounded by the messages in flight at the kills (concurrency per kill).
    """
    rows = outbox_rows(flask_app)
    received = sink_outbox_ids(smtp_server)
    not_sent = {k: v for k, v in rows.items() if v[1] != "sent"}
    assert not not_sent, f"outbox rows not sent: {list(not_sent.items())[:10]}"
    missing = [k for k in rows if received[k] == 0]
    assert not missing, f"{len(missing)} sent rows never reached the SMTP sink: {missing[:10]}"
    strangers = [k for k in received if k not in rows]
    assert not strangers, f"the sink got messages of no outbox row: {strangers[:10]}"
    duplicates = sum(n - 1 for n in received.values())
    assert duplicates <= kills * concurrency, (
        f"{duplicates} duplicate deliveries for {kills} kills (at most {concurrency} in flight each): "
        f"{[(k, n) for k, n in received.items() if n > 1][:10]}"
    )
    return len(rows), duplicates


@contextmanager
def publishing_to(flask_app: Flask, broker_url: str) -> Iterator[None]:
    """``enqueue_after_commit`` of the test's app publishes to the stack's private broker."""
    from celery import Celery

    from app.jobs import make_task_sender

    sender_app = Celery("chaos-sender", broker=broker_url, set_as_current=False)
    original = flask_app.extensions["task_sender"]
    flask_app.extensions["task_sender"] = make_task_sender(sender_app)
    try:
        yield
    finally:
        flask_app.extensions["task_sender"] = original
        sender_app.close()


def slow_sink(smtp_server: Any, delay: float) -> None:
    """The sink stores each message, then waits ``delay`` before its "250": a worker killed in
    that window never learns the message was accepted (the at-least-once window of jobs.md §8.2)."""
    handler = smtp_server.handler
    accept = handler.handle_DATA

    async def handle_DATA(server: Any, session: Any, envelope: Any) -> str:
        reply: str = await accept(server, session, envelope)
        await asyncio.sleep(delay)
        return reply

    handler.handle_DATA = handle_DATA
