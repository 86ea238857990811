"""Request id, security headers, CORS and the CSRF origin rule."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask

from app import errors
from app.http import check_csrf, new_request_id


def test_request_id_is_echoed_when_valid_else_generated(probe: Any) -> None:
    assert probe.get("/health", headers={"X-Request-ID": "abc.DEF-1_2"}).headers["X-Request-ID"] == "abc.DEF-1_2"
    generated = probe.get("/health", headers={"X-Request-ID": "bad id!"}).headers["X-Request-ID"]
    assert generated != "bad id!" and len(generated) == 32
    assert len(probe.get("/api/v1/nope").headers["X-Request-ID"]) == 32


def test_a_generated_request_id_is_a_random_uuid4_in_hex() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_security_headers_on_every_response(probe: Any) -> None:
    for response in (probe.get("/health"), probe.get("/api/v1/nope"), probe.post("/api/v1/probe", json={})):
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Permissions-Policy"] == "camera=(), microphone=(), geolocation=(), payment=()"
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert "Strict-Transport-Security" not in headers


def test_api_responses_are_not_cached(probe: Any) -> None:
    assert probe.get("/api/v1/probe").headers["Cache-Control"] == "no-store"


def test_docs_get_their_own_csp(probe: Any) -> None:
    response = probe.get("/api/v1/docs")
    assert response.status_code == 200
    assert b"swagger" in response.data.lower()
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp  # served offline (app/system/docs.py)
    assert "https:" not in csp and "unsafe-inline" not in csp
    spec = probe.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")


def test_openapi_declares_error_responses(probe: Any) -> None:
    spec = probe.get("/api/v1/openapi.json").get_json()
    post = spec["paths"]["/api/v1/probe"]["post"]
    assert {"400", "413", "415"} <= set(post["responses"])
    assert "Error" in spec["components"]["schemas"]


def test_cors_allows_listed_origin_with_credentials(probe: Any) -> None:
    response = probe.get("/api/v1/probe", headers={"Origin": "http://localhost:3000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]


def test_cors_ignores_other_origins(probe: Any) -> None:
    response = probe.get("/api/v1/probe", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflight_is_204_and_skips_limits(probe: Any) -> None:
    headers = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    for _ in range(4):  # /limited allows 2 per minute; preflights must not count
        response = probe.options("/api/v1/probe/limited", headers=headers)
        assert response.status_code == 204
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert probe.get("/api/v1/probe/limited").status_code == 200


def test_storage_paths_use_wildcard_cors(probe: Any) -> None:
    response = probe.get("/storage/download/x.y/seg_00001.ts", headers={"Origin": "https://anything.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_webhook_and_metrics_get_no_cors(probe: Any) -> None:
    response = probe.get("/metrics", headers={"Origin": "http://localhost:3000"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Origin": "http://localhost:3000"}, True),
        ({"Origin": "http://localhost:5000"}, True),  # PUBLIC_BASE_URL's origin
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Referer": "http://localhost:3000/some/page"}, True),
        ({"Referer": "https://evil.example/x"}, False),
        ({}, False),
    ],
)
def test_csrf_origin_rule(probe_app: Flask, headers: dict[str, str], allowed: bool) -> None:
    with probe_app.test_request_context("/api/v1/probe", method="POST", headers=headers):
        if allowed:
            check_csrf()
        else:
            with pytest.raises(errors.CsrfFailed):
                check_csrf()
    with probe_app.test_request_context("/api/v1/probe", method="GET", headers=headers):
        check_csrf()  # safe methods are never checked


def test_async_views_are_refused_at_start_up(app_factory) -> None:
    """CodexFlask skips Flask's per-call coroutine check, so an async view must fail loudly at once."""
    flask_app = app_factory()  # a fresh app of its own
    flask_app.refuse_async_views()  # the real app has none

    async def later() -> str:
        return "never awaited"

    flask_app.add_url_rule("/async-probe", view_func=later)
    with pytest.raises(TypeError, match="async views are not supported"):
        flask_app.refuse_async_views()
