"""The least a heartbeat or a stream URL can cost in the production configuration, for bench_progress
and bench_stream: a bare WSGI callable, not part of Codex.

Each answer does only what the production configuration obliges any implementation to do, in the
cheapest form there is, and nothing Codex's rules add:

- one Redis call (a script): the bearer's session entry must exist (Codex's own ``sess:{sha256}``
  keys, written when the bench's users were primed; no JSON parsed, no expiry or slide checked), the
  caller's limit counted in a fixed one-minute window (``INCR``; Codex's exact sliding window costs
  more) and, for a heartbeat, the position written (one ``HSET`` with ``EXPIRE``; no access check, no
  ordering, no dirty sets, no statistics);
- a stream URL: a body of the route's shape with one HMAC-signed manifest URL;
- the rate-limit and the spec's headers, the request metric and the log line
  (bench/floor_obligations.py).

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
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from bench import floor_obligations as obliged
from bench.trivial_app import app as trivial

_REDIS = redis.Redis.from_url(os.environ["REDIS_URL"])
# KEYS: limit counter, session, progress (heartbeat only); ARGV: limit, then the position fields.
_CALL = _REDIS.register_script(
    obliged.COUNT_LUA
    + """
if not redis.call('GET', KEYS[2]) then return -1 end
if n > tonumber(ARGV[1]) then return 0 end
if KEYS[3] then
  redis.call('HSET', KEYS[3], 'position', ARGV[2], 'duration', ARGV[3], 'client_ts', ARGV[4])
  redis.call('EXPIRE', KEYS[3], 600)
end
return n
"""
)
_PATH = re.compile(r"/api/v1/content/([0-9a-f-]{36})/(progress|stream)")
_LIMITS = {"progress": 120, "stream": 60}  # per user per minute, as Codex's routes
_SECRET = b"floor-signing-key"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    match = _PATH.fullmatch(environ["PATH_INFO"])
    if match is None:
        return trivial(environ, start_response)
    started = time.perf_counter()
    content_id, action = match.groups()
    token = environ.get("HTTP_AUTHORIZATION", "")[7:]
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    keys = [obliged.limit_key(action, token_hash), f"sess:{token_hash}"]
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
        content += obliged.limit_headers(_LIMITS[action], count)
    endpoint = f"/api/v1/content/<content_id>/{action}"
    headers = obliged.finish(environ, status, content, endpoint, started, token_hash[:36])
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
