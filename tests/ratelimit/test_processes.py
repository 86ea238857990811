"""One budget across web processes: two real servers on one Redis, concurrent heartbeats of one user."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from tests import conftest
from tests.access.helpers import make_world
from tests.conftest import ROOT, free_port
from tests.identity.helpers import signed_in
from tests.media.test_tasks import committed


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.body = response.read()
        return response
    finally:
        conn.close()


@contextmanager
def web_processes(config: dict[str, Any], count: int) -> Iterator[list[int]]:
    ports = [free_port() for _ in range(count)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CODEX_TEST_CONFIG": json.dumps(config)}
    processes = [
        subprocess.Popen([sys.executable, "-m", "tests.ratelimit.serve", str(port)], env=env, cwd=ROOT)
        for port in ports
    ]
    try:
        deadline = time.monotonic() + 60
        for port, process in zip(ports, processes, strict=True):
            while True:
                assert process.poll() is None, "a web process exited"
                try:
                    if request(port, "GET", "/health").status == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "a web process did not start"
                time.sleep(0.2)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def test_two_web_processes_share_one_heartbeat_budget(
    committed_db: Flask, database_url: str, redis_urls: tuple[str, str], storage_root: Path
) -> None:
    app = committed_db
    world = committed(app, lambda: make_world(app.extensions["storage"]))
    token = committed(app, lambda: signed_in(world.buyer))
    config = conftest.test_config(database_url, redis_urls, storage_root, RATELIMIT_ENABLED=True)
    path = f"/api/v1/content/{world.content.id}/progress"
    start = datetime.now(UTC) - timedelta(minutes=30)

    def heartbeat(n: int, port: int) -> Any:
        body = {
            "position_seconds": 10 + n,
            "duration_seconds": 1800,
            "client_ts": (start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
        }
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return port, request(port, "PUT", path, json.dumps(body).encode(), headers)

    with web_processes(config, 2) as ports, ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda n: heartbeat(n, ports[n % 2]), range(200)))
    statuses = Counter(response.status for _, response in answers)
    assert statuses == {204: 120, 429: 80}, statuses
    assert {port for port, response in answers if response.status == 204} == set(ports)  # both served
    for _, response in answers:
        assert response.getheader("X-RateLimit-Limit") == "120"
        if response.status == 429:
            retry_after = int(response.getheader("Retry-After"))
            assert json.loads(response.body)["error"] == {
                "code": "RATE_LIMITED",
                "message": "Too many requests. Try again later.",
                "details": {"retry_after": retry_after},
            }
    remaining = sorted(int(response.getheader("X-RateLimit-Remaining")) for _, response in answers)
    assert remaining[80:] == list(range(120))  # each admitted heartbeat counted exactly once
