"""/health, /health/ready and /metrics (api.md §2)."""

from __future__ import annotations

from typing import Any

from flask import Flask


def test_health_is_ok_without_dependencies(client: Any) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_checks_database_redis_and_storage(client: Any) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "storage": "ok"},
    }


def test_ready_is_503_naming_the_failed_check_and_nothing_secret(app_factory: Any) -> None:
    broken: Flask = app_factory(REDIS_URL="redis://:hunter2@127.0.0.1:1/0")
    response = broken.test_client().get("/health/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body == {"status": "unavailable", "checks": {"database": "ok", "redis": "error", "storage": "ok"}}
    assert "hunter2" not in response.get_data(as_text=True)


def test_metrics_expose_request_histogram_and_gauges(client: Any) -> None:
    client.get("/health")
    client.get("/api/v1/nope")
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert 'codex_http_requests_total{endpoint="/health",method="GET",status="200"}' in text
    assert 'codex_http_requests_total{endpoint="<unmatched>",method="GET",status="404"}' in text
    assert 'codex_http_request_duration_seconds_bucket{endpoint="/health",le="0.005",method="GET"}' in text
    assert 'codex_queue_length{queue="media"}' in text
    assert "codex_email_outbox" in text


def test_metrics_token_is_required_when_configured(app_factory: Any) -> None:
    guarded = app_factory(METRICS_TOKEN="s3cret-token").test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).get_json()["error"]["code"] == (
        "UNAUTHENTICATED"
    )
    assert guarded.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
