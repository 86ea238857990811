"""The least a heartbeat or a stream URL can cost in the production configuration, for bench_progress
and bench_stream: a bare WSGI callable, not part of Codex.

Each answer does only what the production configuration obliges any implementation to do, in the
cheapest form there is, and nothing Codex's rules add:

- one Redis call (a script): the bearer's session entry must exist (Codex's own ``sess:{sha256}``
  keys, written when the bench's users were primed; no JSON parsed, no expiry or slide checked), the
  caller's limit counted in a fixed one-minute window (``INCR``; Codex's exact sliding window costs
  more) and, for a heartbeat, the position written (one ``HSET`` with ``EXPIRE``; no access check, no
  ordering, no dirty sets, no statistics);
- the answer with the headers the spec requires on it: the request id, the rate-limit headers,
  the security headers, CSP, ``Cache-Control`` and ``Vary`` (``app.http.plain_api_headers``);
- a stream URL: a body of the route's shape with one HMAC-signed manifest URL;
- the request metric (the same counter and histogram, prometheus_client's multiprocess mode under
  ``gunicorn -c python:app.gunicorn_conf``) and one JSON log line with the request line's fields,
  written to stderr (``json.dumps``, no redaction).

Whatever Codex does on top (session parsing and expiry, exact limits, access rules, the heartbeat's
ordering and statistics, redaction), it cannot beat this on the same machine, so its ratio to the
trivial app bounds what those goals can reach. GET /health is the trivial app's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from prometheus_client import Counter, Histogram

from app.http import plain_api_headers
from bench.trivial_app import app as trivial

_REDIS = redis.Redis.from_url(os.environ["REDIS_URL"])
# KEYS: session, limit counter, progress (heartbeat only); ARGV: limit, then the position fields.
_CALL = _REDIS.register_script(
    """
if not redis.call('GET', KEYS[1]) then return -1 end
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], 60) end
if count > tonumber(ARGV[1]) then return 0 end
if KEYS[3] then
  redis.call('HSET', KEYS[3], 'position', ARGV[2], 'duration', ARGV[3], 'client_ts', ARGV[4])
  redis.call('EXPIRE', KEYS[3], 600)
end
return count
"""
)
_PATH = re.compile(r"/api/v1/content/([0-9a-f-]{36})/(progress|stream)")
_LIMITS = {"progress": 120, "stream": 60}  # per user per minute, as Codex's routes
_REQUESTS = Counter("floor_http_requests_total", "requests", ["method", "endpoint", "status"])
_DURATION = Histogram(
    "floor_http_request_duration_seconds",
    "latency",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_CONFIG = {"APP_ENV": "development", "CORS_ORIGINS": []}
_SECRET = b"floor-signing-key"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    match = _PATH.fullmatch(environ["PATH_INFO"])
    if match is None:
        return trivial(environ, start_response)
    started = time.perf_counter()
    content_id, action = match.groups()
    token = environ.get("HTTP_AUTHORIZATION", "")[7:]
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    minute = int(time.time()) // 60
    keys = [f"sess:{token_hash}", f"floor:rl:{action}:{token_hash}:{minute}"]
    args: list[Any] = [_LIMITS[action]]
    if action == "progress":
        beat = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        keys.append(f"floor:pb:{token_hash}:{content_id}")
        args += [beat["position_seconds"], beat["duration_seconds"], beat["client_ts"]]
    count = int(_CALL(keys=keys, args=args))
    content: list[tuple[str, str]]
    if count <= 0:
        status, content, body = ("401 UNAUTHORIZED" if count < 0 else "429 TOO MANY REQUESTS"), [], b""
    elif action == "progress":
        status, content, body = "204 NO CONTENT", [], b""
    else:
        body = _stream_body(content_id, token_hash)
        status, content = "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if count > 0:
        limit, reset = _LIMITS[action], 60 - int(time.time()) % 60
        content += [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(limit - count)),
            ("X-RateLimit-Reset", str(reset)),
        ]
    request_id = os.urandom(16).hex()
    headers = content + plain_api_headers(request_id, None, environ["REQUEST_METHOD"], _CONFIG)
    duration = time.perf_counter() - started
    endpoint = f"/api/v1/content/<content_id>/{action}"
    _REQUESTS.labels(environ["REQUEST_METHOD"], endpoint, status[:3]).inc()
    _DURATION.labels(environ["REQUEST_METHOD"], endpoint).observe(duration)
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
    line = {
        "method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"], "status": int(status[:3]),
        "duration_ms": round(duration * 1000, 2), "user_id": token_hash[:36],
        "ip": forwarded.rsplit(",", 1)[-1].strip() or environ.get("REMOTE_ADDR"), "event": "request",
        "request_id": request_id, "level": "info", "logger": "codex.request",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z",
    }  # fmt: skip
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()
    start_response(status, headers)
    return [body] if body else []


def _stream_body(content_id: str, token_hash: str) -> bytes:
    """The stream route's shape, with one signed token in the manifest URL."""
    expires = int(time.time()) + 3600
    claims = json.dumps({"c": content_id, "u": token_hash[:36], "s": "full", "e": expires}).encode()
    signature = hmac.new(_SECRET, claims, hashlib.sha256).digest()
    token = base64.urlsafe_b64encode(claims).decode() + "." + base64.urlsafe_b64encode(signature).decode()
    answer = {
        "manifest_url": f"http://localhost:5000/api/v1/stream/{token}/master.m3u8",
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
        "content_type": "video",
        "preview": False,
        "duration_seconds": 1800,
        "renditions": ["360p", "720p"],
        "thumbnail_url": None,
        "waveform_url": None,
        "captions": [],
    }
    return (json.dumps(answer) + "\n").encode()
