"""What the production configuration obliges every answer to carry or cause, in its cheapest form,
for the floor apps (bench/hot_floor_app.py, bench/webhook_floor_app.py with ``FLOOR_PRODUCTION=1``).
Not part of Codex.

- the per-caller limit counted in Redis before the work: a fixed one-minute window (``INCR``, the
  cheapest counter; Codex keeps an exact sliding window), inside the floor's own script;
- the rate-limit headers and the spec's headers (request id, security headers, CSP, ``Vary``, and
  ``Cache-Control`` on ``/api/v1``: ``app.http.plain_api_headers``);
- the request metric (a counter and a histogram, prometheus_client's multiprocess mode under
  ``gunicorn -c python:app.gunicorn_conf``) and one JSON log line with the request line's fields
  on stderr (``json.dumps``, no redaction).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from prometheus_client import Counter, Histogram

from app.http import plain_api_headers

# The limit's counter: KEYS[1] a key per caller and minute; the count after this request.
COUNT_LUA = "local n = redis.call('INCR', KEYS[1])\nif n == 1 then redis.call('EXPIRE', KEYS[1], 60) end\n"
_REQUESTS = Counter("floor_http_requests_total", "requests", ["method", "endpoint", "status"])
_DURATION = Histogram(
    "floor_http_request_duration_seconds",
    "latency",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_CONFIG = {"APP_ENV": "development", "CORS_ORIGINS": []}


def limit_key(scope: str, caller: str) -> str:
    """The counter of ``caller`` (a user or an address) under ``scope`` for the current minute."""
    return f"floor:rl:{scope}:{caller}:{int(time.time()) // 60}"


def client_ip(environ: dict[str, Any]) -> str:
    """The client's address behind the one trusted proxy (``TRUSTED_PROXY_COUNT=1``)."""
    return environ.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip() or environ.get("REMOTE_ADDR", "")


def limit_headers(limit: int, count: int) -> list[tuple[str, str]]:
    """The spec's rate-limit headers for the ``count``-th request of this minute (security.md §3:
    ``X-RateLimit-Reset`` in Unix seconds, here the end of the minute)."""
    return [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", str(limit - count)),
        ("X-RateLimit-Reset", str((int(time.time()) // 60 + 1) * 60)),
    ]


def finish(
    environ: dict[str, Any],
    status: str,
    content: list[tuple[str, str]],
    endpoint: str,
    started: float,
    user_id: str | None,
    *,
    cache_control: bool = True,
) -> list[tuple[str, str]]:
    """The answer's headers (``content`` and the spec's), its metric and its log line."""
    method = environ["REQUEST_METHOD"]
    request_id = os.urandom(16).hex()
    headers = content + plain_api_headers(request_id, None, method, _CONFIG, cache_control=cache_control)
    duration = time.perf_counter() - started
    _REQUESTS.labels(method, endpoint, status[:3]).inc()
    _DURATION.labels(method, endpoint).observe(duration)
    line = {
        "method": method, "path": environ["PATH_INFO"], "status": int(status[:3]),
        "duration_ms": round(duration * 1000, 2), "user_id": user_id, "ip": client_ip(environ), "event": "request",
        "request_id": request_id, "level": "info", "logger": "codex.request",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z",
    }  # fmt: skip
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()
    return headers
