"""The benchmark harness spreads its load over callers without passing a limit (bench/common.py).

A production-configuration benchmark with limits on is only valid when no user or client IP
exceeds its budget; ``Rotation`` is what guarantees that, whatever the throughput."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from bench.common import Rotation, bearer_users, client_ips


def _handed_out(rotation: Rotation, threads: int, per_thread: int) -> dict[str, list[float]]:
    """Call the rotation from several threads at once; each caller's hand-out times."""
    seen: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def run() -> None:
        for _ in range(per_thread):
            (value,) = rotation().values()
            now = time.monotonic()
            with lock:
                seen[value].append(now)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return seen


def test_no_caller_passes_its_limit_in_any_window() -> None:
    # 3 callers, 2 requests each per 0.3 s window: 24 requests cannot all go at once, so the
    # rotation has to hold some back.
    rotation = Rotation("X-Test", ["a", "b", "c"], 2, "callers", window=0.3, margin=0.02)
    seen = _handed_out(rotation, threads=4, per_thread=6)
    assert sorted(seen) == ["a", "b", "c"]
    assert sum(len(times) for times in seen.values()) == 24
    for times in seen.values():
        times.sort()
        for i in range(len(times) - 2):  # any 3 consecutive requests of one caller span a window
            assert times[i + 2] - times[i] >= 0.3
    assert rotation.max_per_window() == 2
    assert rotation.waited > 0


def test_round_robin_spreads_evenly_and_never_waits_below_the_limit() -> None:
    rotation = client_ips(1000, 300)
    seen = _handed_out(rotation, threads=8, per_thread=500)  # 4 per IP, far below 300/min
    assert len(seen) == 1000
    assert {len(times) for times in seen.values()} == {4}
    assert rotation.waited == 0
    assert rotation.max_per_window() == 4
    assert "max 4/min per caller (limit 300), 1000 client IPs" in rotation.summary()


def test_users_and_addresses_are_headers() -> None:
    users = bearer_users(["t1", "t2"], 60)
    assert [users(), users(), users()] == [
        {"Authorization": "Bearer t1"}, {"Authorization": "Bearer t2"}, {"Authorization": "Bearer t1"},
    ]  # fmt: skip
    assert users.prime  # sessions are warmed before the measurement
    ips = client_ips(70_000, None)
    addresses = {ips()["X-Forwarded-For"] for _ in range(70_000)}
    assert len(addresses) == 70_000  # all distinct
    assert not ips.prime
    assert "unlimited" in ips.summary()


def test_a_measured_window_reports_what_its_requests_cost(redis_urls: tuple[str, str]) -> None:
    """``load`` with a ``meter`` (``server_meter``: the server's processes' CPU and Redis' own
    counters) reports what the measured window cost, and ``cost_text`` puts it per request."""
    import redis

    from bench.common import LoadResult, cost_text, load, server_meter, start_gunicorn

    url = redis_urls[0]
    client = redis.Redis.from_url(url)
    try:
        with start_gunicorn("bench.trivial_app:app", {}) as server:
            meter = server_meter(server, url)
            before = meter()
            for _ in range(10):
                client.get("bench-harness")
            after = meter()
            # (Redis is shared with the other tests: at least this test's round trips)
            assert after["redis_reads"] - before["redis_reads"] >= 10
            assert after["redis_commands"] - before["redis_commands"] >= 10
            result = load(server.url + "/health", duration=0.5, concurrency=2, warmup=0.2, meter=meter)
    finally:
        client.close()
    assert result.requests > 0 and result.errors == 0
    assert set(result.costs) == {"web_cpu", "redis_cpu", "redis_reads", "redis_commands", "client_cpu"}
    assert result.costs["web_cpu"] > 0 and result.costs["client_cpu"] > 0
    text = cost_text(result)
    assert text.startswith("web ") and " µs, client " in text and "round trips" in text
    assert cost_text(LoadResult([], 0.0)) == ""  # (nothing measured: nothing said)


def test_the_least_possible_hot_path_does_what_production_obliges(redis_urls: tuple[str, str]) -> None:
    """bench/hot_floor_app.py, the bound of the heartbeat and stream-URL goals, does the work it
    claims: the session key must exist, the limit is counted, a heartbeat is written, and the
    answers carry the spec's headers (so its ratio is a fair bound, not an empty endpoint's)."""
    import hashlib
    import http.client
    import json
    import time

    import redis

    from bench.common import start_gunicorn

    url = redis_urls[0]
    client = redis.Redis.from_url(url)
    token = "floor-test-token"
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    item = "3403e0ee-dbd6-4754-a807-4fe80bf2e5b5"
    client.set(f"sess:{token_hash}", b"{}")

    def ask(server_port: int, method: str, path: str, auth: str, body: bytes = b"") -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", server_port, timeout=10)
        headers = {"Authorization": f"Bearer {auth}", "Content-Type": "application/json"}
        conn.request(method, path, body=body or None, headers=headers)
        answer = conn.getresponse()
        answer.read()
        conn.close()
        return answer

    beat = json.dumps({"position_seconds": 42, "duration_seconds": 1800, "client_ts": "2026-12-07T00:00:00Z"}).encode()
    try:
        with start_gunicorn("bench.hot_floor_app:app", {"REDIS_URL": url}) as server:
            answer = ask(server.port, "PUT", f"/api/v1/content/{item}/progress", token, beat)
            assert answer.status == 204
            for header in ("X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                           "X-Content-Type-Options", "Content-Security-Policy", "Cache-Control", "Vary"):  # fmt: skip
                assert answer.getheader(header), header
            assert answer.getheader("X-RateLimit-Limit") == "120"
            assert int(answer.getheader("X-RateLimit-Reset") or 0) > time.time()  # (Unix seconds, as the spec's)
            assert client.hget(f"floor:pb:{token_hash}:{item}", "position") == b"42"
            stream = ask(server.port, "GET", f"/api/v1/content/{item}/stream", token)
            assert stream.status == 200 and stream.getheader("X-RateLimit-Limit") == "60"
            assert ask(server.port, "GET", f"/api/v1/content/{item}/stream", "no-such-session").status == 401
            minute = int(time.time()) // 60
            for m in (minute, minute + 1):  # (a minute may turn meanwhile)
                client.set(f"floor:rl:stream:{token_hash}:{m}", 60, ex=120)
            assert ask(server.port, "GET", f"/api/v1/content/{item}/stream", token).status == 429
    finally:
        client.delete(f"sess:{token_hash}", f"floor:pb:{token_hash}:{item}")
        for key in client.scan_iter(f"floor:rl:*:{token_hash}:*"):
            client.delete(key)
        client.close()
