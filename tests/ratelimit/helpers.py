"""Helpers of the limiter tests: what a 429 must look like, and the Redis calls of an action."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import redis as redis_lib
from werkzeug.test import TestResponse


def assert_limited(response: Any, limit: int) -> None:
    """security.md §3's 429: RATE_LIMITED with details.retry_after, Retry-After and the limit headers."""
    headers = response.headers
    body = response.json if isinstance(response, TestResponse) else response.body
    assert response.status_code == 429, body
    assert body["error"]["code"] == "RATE_LIMITED"
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert body["error"]["details"] == {"retry_after": retry_after}
    assert headers["X-RateLimit-Limit"] == str(limit) and headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Reset"]) > 0


def commands_of(url: str, action: Callable[[], Any], *, inside_scripts: bool = False) -> list[str]:
    """The commands Redis received from clients while ``action`` ran, through MONITOR: each entry
    is one round trip's command (EVALSHA, GET, ...); with ``inside_scripts``, the commands the
    scripts ran too, as ``lua:ZADD``. Only commands on ``url``'s database count: other test
    processes (and their workers' BRPOPs) may share the server."""
    # Unique to this call: MONITOR shows every database's commands, and another test process
    # watching at the same time must not end this capture with its own marker.
    marker = f"codex-test-monitor-end-{uuid.uuid4().hex}"
    client = redis_lib.Redis.from_url(url)
    db = int(client.connection_pool.connection_kwargs.get("db", 0))
    seen: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        with client.monitor() as monitor:
            ready.set()
            for entry in monitor.listen():
                command = entry["command"]
                if marker in command:
                    return
                if int(entry.get("db", db)) != db:
                    continue
                name = command.split(" ", 1)[0].upper()
                if entry.get("client_type") == "lua":
                    if inside_scripts:
                        seen.append(f"lua:{name}")
                elif name not in {"PING", "CLIENT", "INFO"}:
                    seen.append(name)

    ender = redis_lib.Redis.from_url(url)
    ender.ping()  # (connected before: its handshake is not the action's)
    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(5)
    threading.Event().wait(0.2)  # (MONITOR takes effect once its reply is read)
    action()
    ender.echo(marker)
    thread.join(10)
    client.close()
    ender.close()
    return seen
