"""The ``/health`` fast path (app/system/fast_path.py): a probe's ``GET /health`` answered below
Flask exactly as the route answers it, counted in the request metric, and every other request
left to the route."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import metrics
from app.system.fast_path import HealthFastPath
from tests import fast_paths
from tests.fast_paths import ALLOWED_ORIGIN, header_bag, header_variants, layer_of


def health_path(app: Flask) -> HealthFastPath:
    return layer_of(app, HealthFastPath)


@header_variants("probe.7")
def test_a_probe_is_answered_below_flask_exactly_as_the_route_answers(
    app: Flask, client: FlaskClient, extra: dict[str, str]
) -> None:
    layer = health_path(app)
    before = layer.answered
    fast = client.get("/health", headers=extra)
    assert layer.answered == before + 1
    with fast_paths.flask_only(layer):
        routed = client.get("/health", headers=extra)
    assert layer.answered == before + 1
    assert (fast.status_code, fast.data) == (routed.status_code, routed.data) == (200, b'{"status":"ok"}\n')
    assert header_bag(fast) == header_bag(routed)
    assert list(fast.headers.keys()) == list(routed.headers.keys())  # (the same order, too)
    assert "Cache-Control" not in fast.headers and fast.headers["X-Content-Type-Options"] == "nosniff"
    if "X-Request-ID" in extra:
        assert fast.headers["X-Request-ID"] == routed.headers["X-Request-ID"] == "probe.7"
    else:
        assert fast.headers["X-Request-ID"] != routed.headers["X-Request-ID"]


def test_a_query_string_changes_nothing(app: Flask, client: FlaskClient) -> None:
    layer = health_path(app)
    before = layer.answered
    fast = client.get("/health?verbose=1")
    assert layer.answered == before + 1
    with fast_paths.flask_only(layer):
        routed = client.get("/health?verbose=1")  # (the route ignores it too)
    assert (fast.status_code, fast.data, header_bag(fast)) == (routed.status_code, routed.data, header_bag(routed))


def test_the_probe_counts_in_the_request_metric(app: Flask, client: FlaskClient) -> None:
    ok = metrics.HTTP_REQUESTS.labels("GET", "/health", "200")
    counted = ok._value.get()
    client.get("/health")
    assert ok._value.get() == counted + 1
    with fast_paths.flask_only(health_path(app)):
        client.get("/health")
    assert ok._value.get() == counted + 2  # the route counts it under the same labels


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/health/ready", {}),
        ("GET", "/health/", {}),
        ("HEAD", "/health", {}),
        ("OPTIONS", "/health", {}),
        ("POST", "/health", {}),
        ("GET", "/health", {"data": b"x" * 10}),
    ],
)
def test_everything_else_is_the_routes(
    app: Flask, client: FlaskClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    layer = health_path(app)
    before = layer.answered
    response = client.open(path, method=method, **kwargs)
    with fast_paths.flask_only(layer):
        routed = client.open(path, method=method, **kwargs)
    assert layer.answered == before
    assert response.status_code == routed.status_code
    assert header_bag(response, fast_paths.LIMIT_COUNTERS) == header_bag(routed, fast_paths.LIMIT_COUNTERS)


def test_behind_a_proxy_it_is_the_outermost_layer_and_answers_the_same(app_factory: Any) -> None:
    proxied = app_factory(TRUSTED_PROXY_COUNT=1, RATELIMIT_ENABLED=True)
    assert isinstance(proxied.wsgi_app, HealthFastPath)
    client = proxied.test_client()
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "Origin": ALLOWED_ORIGIN}
    fast = client.get("/health", headers=headers)
    with fast_paths.flask_only(health_path(proxied)):
        routed = client.get("/health", headers=headers)
    assert (fast.status_code, fast.data) == (routed.status_code, routed.data)
    assert header_bag(fast) == header_bag(routed)
    assert "X-RateLimit-Limit" not in routed.headers  # (exempt: nothing the fast path would have to count)


def test_off_switch(app_factory: Any) -> None:
    with pytest.raises(AssertionError):
        health_path(app_factory(FAST_PATH_ENABLED=False))
