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
