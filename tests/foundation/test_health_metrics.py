"""/health, /health/ready and /metrics (api.md §2)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from app.system import service


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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def check_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The results of each set of dependency checks the app runs (the real ``run_checks``, counted)."""
    runs: list[dict[str, str]] = []
    real = service.run_checks

    def counted(checks: dict[str, Callable[[], object]]) -> dict[str, str]:
        result = real(checks)
        runs.append(result)
        return result

    monkeypatch.setattr(service, "run_checks", counted)
    return runs


@pytest.fixture()
def clock(app: Flask, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setitem(app.extensions, "readiness", service.ReadinessCache(clock=fake))
    return fake


def test_ready_answers_from_a_result_at_most_one_second_old(
    app: Flask, clock: FakeClock, check_runs: list[dict[str, str]]
) -> None:
    client = app.test_client()
    assert client.get("/health/ready").status_code == 200
    assert len(check_runs) == 1
    clock.now += 0.9
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}
    assert len(check_runs) == 1  # the cached result
    clock.now += 0.2  # 1.1 s after the checks
    assert client.get("/health/ready").status_code == 200
    assert len(check_runs) == 2


def test_ready_reports_a_failed_dependency_within_one_second(
    app: Flask, clock: FakeClock, check_runs: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    assert client.get("/health/ready").status_code == 200

    def refused() -> bool:
        raise ConnectionError("redis is down")

    clock.now += 0.3
    monkeypatch.setattr(app.extensions["redis"], "ping", refused)  # Redis fails now
    clock.now += 0.75  # 0.75 s after the failure, 1.05 s after the last checks
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "error", "storage": "ok"},
    }
    assert len(check_runs) == 2


def test_a_burst_of_concurrent_ready_probes_runs_one_set_of_checks(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.extensions, "readiness", service.ReadinessCache())  # the real clock
    real = service.run_checks
    runs: list[dict[str, str]] = []

    def slow(checks: dict[str, Callable[[], object]]) -> dict[str, str]:
        time.sleep(0.2)  # the other probes arrive while the first one's checks run
        result = real(checks)
        runs.append(result)
        return result

    monkeypatch.setattr(service, "run_checks", slow)
    probes = 8
    start = threading.Barrier(probes)
    statuses: list[int] = []

    def probe() -> None:
        client = app.test_client()
        start.wait()
        statuses.append(client.get("/health/ready").status_code)

    threads = [threading.Thread(target=probe) for _ in range(probes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [200] * probes
    assert len(runs) == 1


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


def test_task_signals_count_each_outcome_and_time_the_run() -> None:
    """The handlers ``tasks.worker`` connects (a real worker run is tests/system/test_metrics_multiprocess.py)."""
    from celery import signals
    from prometheus_client import REGISTRY

    import tasks.worker

    task = tasks.worker.celery.tasks["system.ping"]

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"task": "system.ping", **labels}) or 0.0

    before = {outcome: value("codex_tasks_total", outcome=outcome) for outcome in ("success", "failure", "retry")}
    runs_before = value("codex_task_duration_seconds_count")
    task_id = str(uuid.uuid4())
    signals.task_prerun.send(sender=task, task_id=task_id, task=task, args=(), kwargs={})
    signals.task_retry.send(sender=task, request=None, reason="broker down", einfo=None)
    signals.task_postrun.send(sender=task, task_id=task_id, task=task, args=(), kwargs={}, retval=None, state="RETRY")
    assert value("codex_tasks_total", outcome="retry") == before["retry"] + 1
    assert value("codex_tasks_total", outcome="success") == before["success"]
    assert value("codex_tasks_total", outcome="failure") == before["failure"]
    assert value("codex_task_duration_seconds_count") == runs_before + 1


def test_request_metrics_count_as_prometheus_labels_would() -> None:
    """``observe_request`` keeps each label combination's children: what it records is what
    ``labels(...).inc()`` / ``.observe()`` would, in the counter and in each histogram series."""
    from prometheus_client import REGISTRY

    from app import metrics

    endpoint = f"/test/{uuid.uuid4().hex}"  # a series of this test's own

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"method": "PUT", "endpoint": endpoint, **labels}) or 0.0

    for seconds in (0.001, 0.02, 0.02, 3.0):
        metrics.observe_request("PUT", endpoint, 204, seconds)
    metrics.observe_request("PUT", endpoint, 429, 0.001)
    assert sample("codex_http_requests_total", status="204") == 4
    assert sample("codex_http_requests_total", status="429") == 1
    assert sample("codex_http_request_duration_seconds_count") == 5
    assert sample("codex_http_request_duration_seconds_sum") == pytest.approx(3.042)
    buckets = {le: sample("codex_http_request_duration_seconds_bucket", le=le) for le in ("0.005", "0.025", "5.0")}
    assert buckets == {"0.005": 2, "0.025": 4, "5.0": 5}
    metrics.HTTP_REQUESTS.labels("PUT", endpoint, "204").inc()  # the same child prometheus hands out
    assert sample("codex_http_requests_total", status="204") == 5
