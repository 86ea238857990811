"""``RedisTaskPublisher``: the messages it LPUSHes are the ones Celery's ``send_task`` writes, and a
real worker runs them (webhook ingest and the worker's emails publish through it)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from celery import Celery
from flask import Flask

from app.commerce.models import StripeEvent
from app.jobs import make_task_sender, queue_for
from app.speed.publisher import RedisTaskPublisher
from tests.commerce.helpers import make_shop
from tests.factories import committed_session
from tests.fakes import stripe_objects as so

# Differ per message (ids) or per process/thread (origin, reply_to, delivery tag).
VARYING_HEADERS = {"id", "root_id", "origin"}
VARYING_PROPERTIES = {"correlation_id", "delivery_tag", "reply_to"}


def _pop_all(broker: Any, queue: str) -> list[dict[str, Any]]:
    raw = broker.lrange(queue, 0, -1)
    broker.delete(queue)
    return [json.loads(item) for item in reversed(raw)]


def _comparable(message: dict[str, Any]) -> dict[str, Any]:
    headers = {k: v for k, v in message["headers"].items() if k not in VARYING_HEADERS}
    properties = {k: v for k, v in message["properties"].items() if k not in VARYING_PROPERTIES}
    body = json.loads(base64.b64decode(message["body"]))
    rest = {k: v for k, v in message.items() if k not in ("headers", "properties", "body")}
    return {**rest, "headers": headers, "properties": properties, "body": body}


def test_the_redis_broker_gets_the_fast_publisher(app: Flask) -> None:
    assert isinstance(app.extensions["task_sender"], RedisTaskPublisher)


@pytest.mark.parametrize("registered", [False, True], ids=["web process", "worker process"])
def test_message_is_what_send_task_writes(app: Flask, redis: Any, registered: bool) -> None:
    """In a worker the tasks are registered and send_task adds their options (time limits); in the
    web process (an app that is not finalized) they are not. The publisher writes the same in both.
    This is the check that the kombu/Celery message format it relies on still holds
    (app/speed/README.md)."""
    broker = app.extensions["broker_redis"]
    codex_celery: Celery = app.extensions["celery"]
    if registered:
        import tasks.payments  # noqa: F401 - registers the payments tasks (a worker imports every module)

        celery_app = codex_celery
        assert "payments.process_stripe_event" in celery_app.tasks  # (finalizes the app, as a worker does)
        assert celery_app.tasks["payments.process_stripe_event"].time_limit is not None
    else:
        celery_app = Celery("web", set_as_current=False)
        celery_app.conf.update(codex_celery.conf.table(with_defaults=False))
        assert not celery_app.finalized  # type: ignore[attr-defined]
    publisher = RedisTaskPublisher(celery_app, queue_for)
    for name, args, queue in [
        ("payments.process_stripe_event", ("evt_1",), "webhooks"),
        ("email.send", ("7f1c0c3e-8a7e-4bd2-9d7e-5d7f8c1b2a3c",), "email"),
        ("maintenance.cleanup", (), "default"),
    ]:
        celery_app.send_task(name, args=list(args), queue=queue)
        publisher(name, args, None)
        ours, celerys = _pop_all(broker, queue)[::-1]
        mine, theirs = _comparable(ours), _comparable(celerys)
        theirs_headers = theirs["headers"]
        differing = {k: (v, theirs_headers.get(k)) for k, v in mine["headers"].items() if theirs_headers.get(k) != v}
        assert not differing and set(mine["headers"]) == set(theirs["headers"]), differing
        assert mine == theirs
        assert ours["headers"]["root_id"] == ours["headers"]["id"] == ours["properties"]["correlation_id"]
        assert ours["headers"]["origin"].startswith("gen")


def test_countdown_becomes_an_eta(app: Flask, redis: Any) -> None:
    broker = app.extensions["broker_redis"]
    publisher = RedisTaskPublisher(app.extensions["celery"], queue_for)
    before = time.time()
    publisher("email.send", ("x",), 30)
    (message,) = _pop_all(broker, "email")
    from datetime import datetime

    eta = datetime.fromisoformat(message["headers"]["eta"])
    assert eta.utcoffset() is not None and before + 29 <= eta.timestamp() <= time.time() + 31


def test_send_many_is_one_pipeline_in_order(app: Flask, redis: Any) -> None:
    broker = app.extensions["broker_redis"]
    publisher = RedisTaskPublisher(app.extensions["celery"], queue_for)
    publisher.send_many(
        [("email.send", ("a",), None), ("email.send", ("b",), None), ("payments.submit_refund", ("c",), None)]
    )
    emails = [json.loads(base64.b64decode(m["body"]))[0] for m in _pop_all(broker, "email")]
    assert emails == [["a"], ["b"]]
    assert len(_pop_all(broker, "webhooks")) == 1


def test_other_brokers_keep_send_task(app: Flask) -> None:
    for url, options in [
        ("sentinel://localhost:26379", {}),
        ("rediss://localhost:6379/0", {}),
        ("amqp://guest@localhost//", {}),
    ]:
        other = Celery("other", broker=url)
        other.conf.broker_transport_options = options
        assert not RedisTaskPublisher.supports(other)
        assert not isinstance(make_task_sender(other), RedisTaskPublisher)


def test_global_keyprefix_is_honoured_even_when_set_later(app: Flask, redis: Any) -> None:
    conf = app.extensions["celery"].conf
    original = conf.broker_transport_options
    conf.broker_transport_options = {**original, "global_keyprefix": "codex-test:"}
    try:
        app.extensions["task_sender"]("email.send", ("a",), None)
    finally:
        conf.broker_transport_options = original
    broker = app.extensions["broker_redis"]
    assert broker.llen("codex-test:email") == 1 and broker.llen("email") == 0
    broker.delete("codex-test:email")


def test_a_real_worker_runs_the_published_message(committed_db: Flask, celery_worker: Any, sent_tasks: Any) -> None:
    # The event is stored without a message (sent_tasks records instead), then published by hand.
    from tests.commerce.helpers import ingest_event

    with committed_session(committed_db) as session:
        shop = make_shop()
        evt = so.event("checkout.session.completed", shop.paid_session())
    with committed_session(committed_db) as session:
        ingest_event(committed_db, session, evt)
    publisher = RedisTaskPublisher(committed_db.extensions["celery"], queue_for)
    publisher("payments.process_stripe_event", (evt["id"],), None)
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        with committed_session(committed_db) as session:
            status = session.get(StripeEvent, evt["id"]).status
        if status == "processed":
            break
        time.sleep(0.1)
    assert status == "processed"


def test_send_unanswered_writes_the_same_message_and_its_answer_is_read_later(app: Flask, redis: Any) -> None:
    broker = app.extensions["broker_redis"]
    publisher = RedisTaskPublisher(app.extensions["celery"], queue_for)
    publisher("payments.process_stripe_event", ("evt_a",), None)
    answer = publisher.send_unanswered("payments.process_stripe_event", ("evt_b",), None)
    answer()  # (reads the LPUSH's reply: the thread's connection is in step for the next one)
    publisher("payments.process_stripe_event", ("evt_c",), None)
    messages = _pop_all(broker, "webhooks")
    assert [json.loads(base64.b64decode(m["body"]))[0] for m in messages] == [["evt_a"], ["evt_b"], ["evt_c"]]
    first, second, _ = (_comparable(m) for m in messages)
    for message in (first, second):
        message.pop("body")
        message["headers"].pop("argsrepr")
    assert second == first  # the same message but for its ids and arguments


def test_send_unanswered_sends_once_more_when_the_connection_died(app: Flask, redis: Any) -> None:
    """A connection Redis dropped (a restart, an idle timeout) fails at the answer: the message is
    sent once more on a new connection, as a plain publish does, and not lost."""
    broker = app.extensions["broker_redis"]
    publisher = RedisTaskPublisher(app.extensions["celery"], queue_for)
    publisher("email.send", ("a",), None)  # (this thread's connection is open)
    pushers = [c["addr"] for c in broker.client_list() if c["cmd"] == "lpush"]  # (this thread's)
    assert pushers
    for addr in pushers:
        broker.client_kill(addr)
    publisher.send_unanswered("email.send", ("b",), None)()
    assert [json.loads(base64.b64decode(m["body"]))[0] for m in _pop_all(broker, "email")] == [["a"], ["b"]]


def _decoded(raw: bytes) -> dict[str, Any]:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


@pytest.mark.parametrize("args", [("evt_1A2b3C",), ("7f1c0c3e-8a7e-4bd2-9d7e-5d7f8c1b2a3c", "second id")])
def test_a_template_renders_the_message_celery_builds(app: Flask, args: tuple[str, ...]) -> None:
    """The template's message is byte for byte the one ``build`` (Celery's ``create_task_message``)
    writes with the same ids, whatever the ids and arguments."""
    from app.speed.publisher import _Template

    publisher = RedisTaskPublisher(app.extensions["celery"], queue_for)
    template = _Template.make(publisher, "payments.process_stripe_event", len(args))
    assert template is not None and template.queue == "webhooks"
    for _ in range(3):
        task_id, tag = str(uuid.uuid4()), str(uuid.uuid4())
        _, built = publisher.build("payments.process_stripe_event", args, None, task_id=task_id, delivery_tag=tag)
        assert template.render(task_id, args, tag) == built
    message = _decoded(template.render("id-1", args, "tag-1"))
    assert message["body"][0] == list(args) and message["headers"]["argsrepr"] == repr(list(args))
    assert message["headers"]["id"] == message["headers"]["root_id"] == message["properties"]["correlation_id"]


def test_templated_messages_get_new_ids_each(app: Flask) -> None:
    publisher = RedisTaskPublisher(app.extensions["celery"], queue_for)
    first, second = (_decoded(publisher.message("email.send", ("a",), None)[1]) for _ in range(2))
    assert first["headers"]["id"] != second["headers"]["id"]
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]
    for message in (first, second):
        assert message["headers"]["id"] == message["headers"]["root_id"] == message["properties"]["correlation_id"]
    assert first["body"] == second["body"] == [["a"], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                          "chord": None}]  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [('quote"d',), ("it's",), ("back\\slash",), ("é",), ("tab\there",), ("~codex-slot-id~",), (7,), ("x" * 600,), ()],
)
def test_arguments_a_template_cannot_hold_are_built_whole(app: Flask, redis: Any, args: tuple[Any, ...]) -> None:
    """Arguments that JSON or ``repr`` would escape (or not plain strings, or too long for the
    short repr) are not templated: the message is Celery's, and what send_task writes."""
    from app.speed.publisher import _simple

    assert not _simple(args)
    broker = app.extensions["broker_redis"]
    celery_app: Celery = app.extensions["celery"]
    celery_app.send_task("email.send", args=list(args), queue="email")
    RedisTaskPublisher(celery_app, queue_for)("email.send", args, None)
    ours, celerys = _pop_all(broker, "email")[::-1]
    assert _comparable(ours) == _comparable(celerys)
