"""app/commerce/webhook_fast_path.py: stored deliveries answered below Flask exactly as the route
answers them, with the rate limit counted once (and a refusal answered here); everything else (bad
signatures, bad bodies, database errors) is the route's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from sqlalchemy.exc import OperationalError

from app import ratelimit
from app.commerce import webhook_fast_path, webhooks
from app.commerce.models import StripeEvent
from app.commerce.webhook_fast_path import PATH, WebhookFastPath
from app.metrics import WEBHOOK_SIGNATURE_FAILURES
from tests.commerce.helpers import WEBHOOK, Shop, deliver, make_shop
from tests.factories import committed_session
from tests.fakes import stripe_objects as so


@pytest.fixture()
def committed_shop(committed_db: Any) -> Shop:
    with committed_session(committed_db):
        return make_shop()


def _fast(flask_app: Flask) -> WebhookFastPath:
    """The webhook middleware in the app's WSGI chain (inside app/access/fast_path.py's)."""
    middleware: Any = flask_app.wsgi_app
    while not isinstance(middleware, WebhookFastPath):
        middleware = middleware.wsgi_app  # (AttributeError: not installed)
    return middleware


def _event(shop: Shop) -> dict[str, Any]:
    return so.event("checkout.session.completed", shop.paid_session(stored=False))


def _stored(flask_app: Flask, event_id: str) -> StripeEvent | None:
    with committed_session(flask_app) as session:
        return session.get(StripeEvent, event_id)


def _comparable(response: Any) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k != "X-Request-ID"}
    assert len(response.headers["X-Request-ID"]) == 32
    return response.status_code, response.data, headers


def test_new_and_duplicate_deliveries_are_answered_here_as_the_route_answers(
    committed_db, committed_shop, sent_tasks, app_factory
) -> None:
    fast = _fast(committed_db)
    route_app = app_factory(FAST_PATH_ENABLED=False)  # the same database, Flask for everything
    with pytest.raises(AttributeError):
        _fast(route_app)
    route_app.extensions["task_sender"] = committed_db.extensions["task_sender"]  # (records too)
    answers = []
    for target in (committed_db, route_app):
        evt = _event(committed_shop)
        before = fast.answered
        new, duplicate = deliver(target.test_client(), evt), deliver(target.test_client(), evt)
        assert fast.answered == before + (2 if target is committed_db else 0)
        row = _stored(committed_db, evt["id"])
        assert row is not None and row.status == "received" and row.payload == evt
        answers.append((_comparable(new), _comparable(duplicate), evt["id"]))
    (fast_new, fast_dup, fast_id), (route_new, route_dup, route_id) = answers
    assert fast_new == route_new and fast_dup == route_dup
    assert fast_new[0] == 200 and json.loads(fast_new[1]) == {"received": True}
    # Each new delivery published once; duplicates not at all.
    assert sent_tasks == [
        ("payments.process_stripe_event", (fast_id,), None),
        ("payments.process_stripe_event", (route_id,), None),
    ]


def test_the_caller_request_id_is_kept(committed_db, committed_shop, sent_tasks) -> None:
    body, headers = so.signed(_event(committed_shop))
    r = committed_db.test_client().post(WEBHOOK, data=body, headers={**headers, "X-Request-ID": "abc123"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "abc123"


def test_a_bad_signature_is_the_routes_and_counted_once(committed_db, committed_shop, sent_tasks) -> None:
    fast = _fast(committed_db)
    before, failures = fast.answered, WEBHOOK_SIGNATURE_FAILURES._value.get()
    evt = _event(committed_shop)
    body, headers = so.signed(evt, secret="whsec_wrong")
    r = committed_db.test_client().post(WEBHOOK, data=body, headers=headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_SIGNATURE"
    assert fast.answered == before and WEBHOOK_SIGNATURE_FAILURES._value.get() == failures + 1
    assert _stored(committed_db, evt["id"]) is None and sent_tasks == []


def test_a_body_that_is_not_an_event_is_the_routes(committed_db, sent_tasks) -> None:
    fast = _fast(committed_db)
    before = fast.answered
    body, headers = so.signed(b'{"id": "evt_1", "type": "x"}')
    r = committed_db.test_client().post(WEBHOOK, data=body, headers=headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_PAYLOAD" and fast.answered == before


def test_a_database_error_is_the_routes_which_tries_once_more(
    committed_db, committed_shop, sent_tasks, monkeypatch
) -> None:
    fast = _fast(committed_db)
    before = fast.answered
    calls = []
    real = webhooks.store_delivery

    def fails_once(*args: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("connection lost"))
        return real(*args)

    monkeypatch.setattr(webhooks, "store_delivery", fails_once)
    evt = _event(committed_shop)
    r = deliver(committed_db.test_client(), evt)
    assert r.status_code == 200 and len(calls) == 2 and fast.answered == before
    assert _stored(committed_db, evt["id"]) is not None
    assert sent_tasks == [("payments.process_stripe_event", (evt["id"],), None)]


def test_with_rate_limits_on_deliveries_are_counted_once_and_the_1001st_is_refused_here(
    app_factory, committed_db, committed_shop, sent_tasks
) -> None:
    limited = app_factory(RATELIMIT_ENABLED=True)
    limited.extensions["task_sender"] = committed_db.extensions["task_sender"]
    fast = _fast(limited)
    redis_client = limited.extensions["redis"]
    bound = ratelimit.bind(ratelimit.rules_of(limited, "POST", PATH), "127.0.0.1", None)
    (name,) = bound.names
    redis_client.delete(name)

    r = deliver(limited.test_client(), _event(committed_shop))
    assert r.status_code == 200 and fast.answered == 1  # answered below Flask, limits on
    assert r.headers["X-RateLimit-Limit"] == "1000" and r.headers["X-RateLimit-Remaining"] == "999"
    assert redis_client.zcard(name) == 1  # counted once, not again by the route's hook

    # A delivery the route answers (bad signature) after the fast path counted it: still one count.
    bad = limited.test_client().post(
        PATH, data=b'{"id": "evt_x"}', headers={"Stripe-Signature": "t=1,v1=00", "Content-Type": "application/json"}
    )
    assert bad.status_code == 400 and bad.headers["X-RateLimit-Remaining"] == "998"
    assert redis_client.zcard(name) == 2

    for _ in range(998):  # the rest of the minute's budget
        assert ratelimit.check(redis_client, bound).allowed  # type: ignore[union-attr]
    evt = _event(committed_shop)
    refused = deliver(limited.test_client(), evt)
    assert refused.status_code == 429 and fast.refused == 1
    assert refused.json["error"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["X-RateLimit-Remaining"] == "0"
    assert _stored(limited, evt["id"]) is None  # refused before the body was looked at
    assert redis_client.zcard(name) == 1000
    redis_client.delete(name)


@pytest.fixture()
def limited(app_factory: Any, committed_db: Flask, sent_tasks: Any) -> Iterator[tuple[Flask, str]]:
    """An app with rate limits on (sharing the committed app's task recorder) and its webhook
    limit's key for the test client's address, emptied before and after (after ``sent_tasks``:
    its recorder is the one shared)."""
    flask_app = app_factory(RATELIMIT_ENABLED=True)
    flask_app.extensions["task_sender"] = committed_db.extensions["task_sender"]
    (name,) = ratelimit.bind(ratelimit.rules_of(flask_app, "POST", PATH), "127.0.0.1", None).names
    flask_app.extensions["redis"].delete(name)
    yield flask_app, name
    flask_app.extensions["redis"].delete(name)


def test_a_limiter_redis_without_the_script_still_counts_the_delivery_once(limited, committed_shop, sent_tasks) -> None:
    flask_app, name = limited
    redis_client = flask_app.extensions["redis"]
    assert deliver(flask_app.test_client(), _event(committed_shop)).status_code == 200  # (script loaded)
    redis_client.script_flush()  # a restarted Redis: the count sent with EVALSHA finds no script
    r = deliver(flask_app.test_client(), _event(committed_shop))
    assert r.status_code == 200 and _fast(flask_app).answered == 2
    assert r.headers["X-RateLimit-Remaining"] == "998" and redis_client.zcard(name) == 2
    # The thread's connection is still in step: the next count is answered right.
    assert deliver(flask_app.test_client(), _event(committed_shop)).headers["X-RateLimit-Remaining"] == "997"
    assert len(sent_tasks) == 3


def test_an_unreachable_limiter_lets_the_delivery_through(limited, committed_shop, sent_tasks, monkeypatch) -> None:
    flask_app, _ = limited
    down = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens there
    monkeypatch.setitem(flask_app.extensions, "redis", down)
    evt = _event(committed_shop)
    r = deliver(flask_app.test_client(), evt)
    assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers  # as ratelimit.check: let through
    assert _stored(flask_app, evt["id"]) is not None
    assert sent_tasks == [("payments.process_stripe_event", (evt["id"],), None)]


def test_a_refused_large_body_is_not_verified(limited, committed_shop, sent_tasks, monkeypatch) -> None:
    """Small bodies are verified while the limiter counts; a body above EARLY_BYTES waits for its
    answer, so a refused flood of big bodies costs no HMAC over them."""
    flask_app, name = limited
    bound = ratelimit.bind(ratelimit.rules_of(flask_app, "POST", PATH), "127.0.0.1", None)
    redis_client = flask_app.extensions["redis"]
    for _ in range(1000):
        assert ratelimit.check(redis_client, bound).allowed  # type: ignore[union-attr]
    verified: list[int] = []
    real_verify = webhook_fast_path.verify

    def counting_verify(body: bytes, *args: Any) -> int:
        verified.append(len(body))
        return real_verify(body, *args)

    monkeypatch.setattr(webhook_fast_path, "verify", counting_verify)
    small, large = _event(committed_shop), _event(committed_shop)
    large["data"]["object"]["metadata"] = {"padding": "x" * webhook_fast_path.EARLY_BYTES}
    for evt in (small, large):
        refused = deliver(flask_app.test_client(), evt)
        assert refused.status_code == 429 and refused.json["error"]["code"] == "RATE_LIMITED"
        assert _stored(flask_app, evt["id"]) is None
    assert len(verified) == 1 and verified[0] <= webhook_fast_path.EARLY_BYTES  # the small one only
    assert redis_client.zcard(name) == 1000 and sent_tasks == []


def test_the_message_reaches_the_broker_through_the_redis_publisher(committed_db, committed_shop) -> None:
    """With the app's own publisher (no recorder): the message is sent after the INSERT and its
    answer read after the log line; each delivery's message is on the queue, once."""
    broker = committed_db.extensions["broker_redis"]
    broker.delete("webhooks")
    fast = _fast(committed_db)
    before = fast.answered
    events = [_event(committed_shop) for _ in range(3)]
    for evt in events:
        assert deliver(committed_db.test_client(), evt).status_code == 200
    assert fast.answered == before + 3
    queued = [json.loads(item) for item in reversed(broker.lrange("webhooks", 0, -1))]
    broker.delete("webhooks")
    assert [m["headers"]["argsrepr"] for m in queued] == [repr([evt["id"]]) for evt in events]
