"""Metrics that add up: the Procfile's web and worker processes, each with several processes, scraped once.

Both tests start the real command lines of the ``Procfile`` (through ``sh``, as honcho does) on a
private Redis and the test database, with the metric directories under ``tmp_path``.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.jobs import queue_for
from tests.conftest import ROOT, free_port
from tests.e2e.harness import Stack, running_stack, wait_until

pytestmark = pytest.mark.e2e

HEALTH = {"endpoint": "/health", "method": "GET", "status": "200"}


def procfile_command(process: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            # The Procfile binds every interface; a test listens on loopback only.
            return command.strip().replace("0.0.0.0", "127.0.0.1")
    raise AssertionError(f"no {process} process in the Procfile")


def start_procfile_process(stack: Stack, process: str, **env: str) -> Any:
    bin_dir = str(Path(sys.executable).parent)  # gunicorn and celery of this virtualenv
    extra = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT), **env}
    return stack.add(process, ["sh", "-c", procfile_command(process)], extra).start()


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a new connection each time
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def sample(scrape: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(scrape):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def per_process(directory: Path, name: str, labels: dict[str, str]) -> dict[int, float]:
    """pid -> the value one process's own file holds (what a scrape adds up)."""
    values: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        for family in MultiProcessCollector.merge([str(path)]):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    values[pid] = values.get(pid, 0.0) + s.value
    return values


def send_until_two_processes_served(
    send_one: Callable[[], None], served: Callable[[], dict[int, float]], batch: int, limit: int, parallel: int = 4
) -> int:
    """Send batches of ``send_one`` until two processes have counted some; returns how many were sent."""
    sent = 0
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while sent < limit:
            list(pool.map(lambda _: send_one(), range(batch)))
            sent += batch
            wait_until(lambda total=sent: sum(served().values()) >= total, 60, f"{sent} counted", lambda: str(served()))
            if sum(1 for value in served().values() if value > 0) >= 2:
                return sent
    raise AssertionError(f"{sent} sent and fewer than two processes served: {served()}")


def record_stale_requests(directory: Path, count: int) -> set[int]:
    """A previous server run's files: ``count`` GET /health left in ``directory``; returns its pids."""
    directory.mkdir(parents=True)
    code = f"from app import metrics\nfor _ in range({count}): metrics.observe_request('GET', '/health', 200, 0.001)"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=60)
    left = per_process(directory, "codex_http_requests_total", HEALTH)
    assert sum(left.values()) == count
    return set(left)


def test_one_scrape_of_the_web_server_sums_every_worker(tmp_path: Path, database_url: str, storage_root: Path) -> None:
    directory = tmp_path / "prometheus-web"
    stale = record_stale_requests(directory, 7)  # must not count: the directory is emptied at start-up
    port = free_port()
    with running_stack(tmp_path, database_url, storage_root) as stack:
        web = start_procfile_process(
            stack, "web", PORT=str(port), WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(directory)
        )
        wait_until(lambda: not web.alive() or get_status(port, "/health/ready") == 200, 60, "web ready", stack.report)
        assert web.alive(), stack.report()

        def health() -> None:
            assert get(port, "/health")[0] == 200

        def served() -> dict[int, float]:
            return per_process(directory, "codex_http_requests_total", HEALTH)

        sent = send_until_two_processes_served(health, served, batch=20, limit=2000)
        assert sum(served().values()) == sent

        status, scrape = get(port, "/metrics")
        assert status == 200
        assert sample(scrape, "codex_http_requests_total", HEALTH) == sent
        assert sample(scrape, "codex_http_request_duration_seconds_count", {"endpoint": "/health"}) == sent
        assert sample(scrape, "codex_queue_length", {"queue": "default"}) == 0  # read for the scrape

        # A worker that exits (max-requests, a crash) takes nothing from the sum.
        gone = next(pid for pid, value in served().items() if value > 0 and pid not in stale)
        os.kill(gone, signal.SIGTERM)
        wait_until(lambda: len(list(directory.glob("counter_*.db"))) >= 3, 30, "a replacement worker", stack.report)
        wait_until(lambda: get_status(port, "/metrics") == 200, 30, "web answering again", stack.report)
        status, scrape = get(port, "/metrics")
        assert sample(scrape, "codex_http_requests_total", HEALTH) == sent


def get_status(port: int, path: str) -> int | None:
    try:
        return get(port, path)[0]
    except (OSError, http.client.HTTPException):
        return None


def test_a_celery_worker_serves_the_task_counts_of_all_its_processes(
    tmp_path: Path, database_url: str, storage_root: Path
) -> None:
    directory = tmp_path / "prometheus-worker"
    port = free_port()
    auth = {"Authorization": "Bearer worker-metrics-token"}
    with running_stack(tmp_path, database_url, storage_root) as stack:
        worker = start_procfile_process(
            stack,
            "worker",
            WORKER_METRICS_PORT=str(port),
            CELERY_METRICS_DIR=str(directory),
            METRICS_TOKEN="worker-metrics-token",
        )
        wait_until(
            lambda: not worker.alive() or get_status(port, "/metrics") == 401, 90, "worker metrics", stack.report
        )
        assert worker.alive(), stack.report()
        assert get(port, "/metrics")[0] == 401  # the token guards this endpoint as it does /metrics

        from celery import Celery

        client = Celery("metrics-test", broker=stack.env["CELERY_BROKER_URL"], set_as_current=False)
        try:

            def ping(argument: str) -> None:
                client.send_task("system.ping", args=[argument], queue=queue_for("system.ping"))

            def served() -> dict[int, float]:
                return per_process(directory, "codex_tasks_total", {"task": "system.ping", "outcome": "success"})

            # Unknown ping ids: each run succeeds without a row to stamp.
            succeeded = send_until_two_processes_served(
                lambda: ping(str(uuid.uuid4())), served, batch=8, limit=400, parallel=1
            )
            failed = 3
            for _ in range(failed):
                ping("not-a-uuid")  # ValueError in the task
        finally:
            client.close()

        def counted() -> tuple[float | None, float | None]:
            scrape = get(port, "/metrics", auth)[1]
            return (
                sample(scrape, "codex_tasks_total", {"task": "system.ping", "outcome": "success"}),
                sample(scrape, "codex_tasks_total", {"task": "system.ping", "outcome": "failure"}),
            )

        wait_until(lambda: counted() == (succeeded, failed), 60, f"{succeeded} + {failed} runs counted", stack.report)
        scrape = get(port, "/metrics", auth)[1]
        assert sample(scrape, "codex_task_duration_seconds_count", {"task": "system.ping"}) == succeeded + failed
