"""The limiter's algorithm (app/ratelimit/lua/ratelimit.lua), property-style, against a real Redis.

Random arrivals from several threads, short windows so a run sees many of them; the script's own
decision time (Redis TIME, ms) comes back with each answer, so every window can be checked:
security.md §3 allows at most limit + 1 admissions in any window of the limit's length; the log
admits at most the limit, and refuses only when the limit is reached.
"""

from __future__ import annotations

import random
import threading
import time
from bisect import bisect_left, bisect_right
from typing import Any

import pytest

from app import keys
from app.ratelimit import Bound, Outcome, check


def fire(client: Any, bound: Bound, seed: int, threads: int, seconds: float) -> list[Outcome]:
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def player(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            time.sleep(rng.expovariate(1 / 0.012) if rng.random() < 0.8 else rng.uniform(0.05, 0.3))  # bursts, pauses
            outcome = check(client, bound)
            assert outcome is not None
            with lock:
                outcomes.append(outcome)

    workers = [threading.Thread(target=player, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes


def in_window(times: list[int], end: int, window: int) -> int:
    """How many of the sorted ``times`` lie in (end - window, end]."""
    return bisect_right(times, end) - bisect_left(times, end - window + 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_window_admits_more_than_the_limit_and_refusals_are_justified(app: Any, redis: Any, seed: int) -> None:
    rng = random.Random(seed)
    limits = [(rng.randint(2, 6), rng.choice([150, 250, 400])), (rng.randint(7, 12), rng.choice([600, 900]))]
    names = (keys.rate_limit("property", f"a{seed}"), keys.rate_limit("property", f"b{seed}"))
    bound = Bound(names, tuple(limits))
    outcomes = fire(app.extensions["redis"], bound, seed, threads=4, seconds=2.0)
    admitted = sorted(o.decided_ms for o in outcomes if o.allowed)
    refused = [o for o in outcomes if not o.allowed]
    assert len(admitted) > limits[1][0] and refused  # both sides were exercised, windows slid
    for limit, window in limits:
        # every window (end, the moment of an admission, is where a count can peak)
        assert max(in_window(admitted, end, window) for end in admitted) <= limit
    for outcome in refused:
        # refused only while some limit was full, and told when a slot frees
        assert any(in_window(admitted, outcome.decided_ms, window) >= limit for limit, window in limits)
        assert 0 < outcome.retry_ms <= max(window for _, window in limits)
        assert outcome.remaining == 0


def test_remaining_and_reset_describe_the_binding_limit(app: Any, redis: Any) -> None:
    client = app.extensions["redis"]
    bound = Bound((keys.rate_limit("t", "wide"), keys.rate_limit("t", "tight")), ((10, 60_000), (3, 60_000)))
    seen = [check(client, bound) for _ in range(4)]
    assert [(o.allowed, o.limit, o.remaining) for o in seen if o] == [
        (True, 3, 2),
        (True, 3, 1),
        (True, 3, 0),
        (False, 3, 0),
    ]
    first, last = seen[0], seen[-1]
    assert first is not None and last is not None
    assert first.reset_ms == first.decided_ms + 60_000  # the oldest entry (its own) leaves then
    assert seen[1] is not None and seen[1].reset_ms == first.decided_ms + 60_000  # still the first's
    assert 59_000 <= last.retry_ms <= 60_000 and last.retry_after == -(-last.retry_ms // 1000)
    # the refused attempt consumed nothing: the wide limit still has 10 - 3 left
    assert client.zcard(keys.rate_limit("t", "wide")) == 3
    assert 0 < client.pttl(keys.rate_limit("t", "wide")) <= 60_000  # the log expires on its own


def test_no_limits_means_no_redis_work(app: Any, redis: Any) -> None:
    assert check(app.extensions["redis"], Bound((), ())) is None
