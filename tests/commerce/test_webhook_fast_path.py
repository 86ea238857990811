"""app/commerce/webhook_fast_path.py: stored deliveries answered below Flask exactly as the route
answers them; everything else (bad signatures, bad bodies, database errors, rate limits on) is the
route's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.exc import OperationalError

from app.commerce import webhooks
from app.commerce.models import StripeEvent
from app.commerce.webhook_fast_path import WebhookFastPath
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


def test_with_rate_limits_on_the_route_answers(app_factory, committed_db, committed_shop, sent_tasks) -> None:
    limited = app_factory(RATELIMIT_ENABLED=True)
    limited.extensions["task_sender"] = committed_db.extensions["task_sender"]
    before = _fast(limited).answered
    r = deliver(limited.test_client(), _event(committed_shop))
    assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "1000"
    assert _fast(limited).answered == before
