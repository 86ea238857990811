"""The per-process near cache (app/speed/nearcache.py) against a real Redis: every change reaches it."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from app.speed.nearcache import MISS, NearCache


@pytest.fixture()
def cache_url(redis_urls: tuple[str, str]) -> str:
    return redis_urls[0]


# Keys of this test process only: BCAST tracking reports a prefix's changes in every database, and
# other test processes run the same tests at the same time.
NC = f"nc:{uuid.uuid4().hex[:8]}:"


@pytest.fixture()
def other(cache_url: str) -> Iterator[redis_lib.Redis]:
    """Another client: what another process (or a Celery worker) writes."""
    client = redis_lib.Redis.from_url(cache_url)
    yield client
    client.delete(*client.keys(f"{NC}*") or ["nc:none"])
    client.close()


@pytest.fixture()
def make(cache_url: str) -> Iterator[Any]:
    """``make(cls=NearCache, **options)``: a listening near cache on the test database, closed after."""
    made: list[NearCache] = []

    def build(cls: type[NearCache] = NearCache, **kwargs: Any) -> NearCache:
        near = cls(cache_url, [NC], **kwargs)
        made.append(near)
        assert near.wait_usable(5.0)
        return near

    yield build
    for near in made:
        near.close()


def held(near: NearCache, key: str) -> Any:
    assert near.sync() is not None
    return near.get(key)


def filled(near: NearCache, client: redis_lib.Redis, *keys: str) -> None:
    """Read ``keys`` the way callers do (epoch first, then Redis) and keep them."""
    epoch = near.sync()
    assert epoch is not None
    near.fill(epoch, [(key, client.get(key), None) for key in keys])


def quiet(near: NearCache, client: redis_lib.Redis) -> None:
    """Wait (up to 5 s) until no invalidation is on its way: the epoch stays put across a round trip."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        before = near.sync()
        client.ping()
        time.sleep(0.05)
        if near.sync() == before:
            return


def refilled(near: NearCache, client: redis_lib.Redis, *keys: str) -> None:
    """``filled``, again until the fill is kept: a fill is rightly dropped when an invalidation for
    an earlier write lands between its epoch and the fill, which a loaded machine can delay."""
    deadline = time.monotonic() + 5
    while True:
        filled(near, client, *keys)
        if all(held(near, key) is not MISS for key in keys) or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def test_values_and_absent_keys_are_held_after_a_fill(make, other) -> None:
    near = make()
    other.set(NC + "a", b"1")
    filled(near, other, NC + "a", NC + "absent")
    assert held(near, NC + "a") == b"1"
    assert held(near, NC + "absent") is None  # held as absent, not a miss
    assert held(near, NC + "never-read") is MISS


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.set(NC + "a", b"2"),
        lambda c: c.delete(NC + "a"),
        lambda c: c.set(NC + "absent", b"now here"),
        lambda c: c.eval("redis.call('SET', KEYS[1], 'lua')", 1, NC + "a"),  # writes inside scripts too
    ],
    ids=["set", "delete", "set-absent", "script"],
)
def test_a_change_acknowledged_to_another_client_is_seen_by_the_next_lookup(make, other, change) -> None:
    near = make()
    for _ in range(20):  # not a lucky timing: every round, no sleep between the write and the read
        other.set(NC + "a", b"1")
        other.delete(NC + "absent")
        refilled(near, other, NC + "a", NC + "absent")
        assert held(near, NC + "a") == b"1" and held(near, NC + "absent") is None
        change(other)
        assert held(near, NC + "a") is MISS or held(near, NC + "absent") is MISS
        assert (held(near, NC + "a"), held(near, NC + "absent")).count(MISS) >= 1


def test_a_flush_empties_the_cache(make, other) -> None:
    near = make()
    other.set(NC + "a", b"1")
    filled(near, other, NC + "a")
    assert held(near, NC + "a") == b"1"
    other.flushdb()
    # Redis queues a flush's message during the command, not after it, so it may trail the
    # writer's reply by a few microseconds (module docstring): soon, not necessarily first.
    deadline = time.monotonic() + 1.0
    while held(near, NC + "a") is not MISS and time.monotonic() < deadline:
        time.sleep(0.001)
    assert held(near, NC + "a") is MISS


def test_an_expired_key_is_not_held_past_its_redis_ttl(make, other) -> None:
    near = make()
    other.set(NC + "a", b"1", px=150)
    epoch = near.sync()
    assert epoch is not None
    near.fill(epoch, [(NC + "a", b"1", other.pttl(NC + "a") / 1000)])
    assert held(near, NC + "a") == b"1"
    time.sleep(0.2)
    assert held(near, NC + "a") is MISS


def test_a_fill_that_raced_a_change_keeps_nothing(make, other) -> None:
    near = make()
    other.set(NC + "a", b"old")
    epoch = near.sync()  # taken before the read...
    assert epoch is not None
    value = other.get(NC + "a")
    other.set(NC + "a", b"new")  # ...the value changes before the fill...
    assert near.sync() is not None  # ...and its invalidation is applied first
    near.fill(epoch, [(NC + "a", value, None)])
    assert held(near, NC + "a") is MISS


def test_a_fill_keeps_the_keys_no_change_touched(make, other) -> None:
    """Only a key invalidated between the epoch and the fill is dropped from it: with BCAST every
    process hears of every tracked write, so dropping whole fills sends unrelated users cold."""
    near = make(stale_after=30.0)  # (a loaded machine's late PONG would clear it all: not this test's)
    other.set(NC + "a", b"1")
    other.set(NC + "b", b"old")
    quiet(near, other)
    epoch = near.sync()
    assert epoch is not None
    read = [(NC + "a", other.get(NC + "a"), None), (NC + "b", other.get(NC + "b"), None)]
    other.set(NC + "b", b"new")  # changes after the read...
    deadline = time.monotonic() + 10
    while near.sync() == epoch and time.monotonic() < deadline:  # ...and its invalidation is applied
        time.sleep(0.01)  # before the fill (a loaded listener may take a while)
    assert near.sync() != epoch
    quiet(near, other)
    near.fill(epoch, read)
    assert held(near, NC + "a") == b"1"
    assert held(near, NC + "b") is MISS
    near.evict([NC + "a"])  # an eviction here counts as a change of its keys too
    epoch = near.sync()
    assert epoch is not None
    near.evict([NC + "a"])
    near.fill(epoch, [(NC + "a", b"1", None), (NC + "b", b"new", None)])
    assert held(near, NC + "a") is MISS and held(near, NC + "b") == b"new"


def test_a_fill_across_a_flush_a_reset_or_too_many_changes_keeps_nothing(make, other, monkeypatch) -> None:
    from app.speed import nearcache

    monkeypatch.setattr(nearcache, "_CHANGES_KEPT", 3)
    near = make()
    other.set(NC + "a", b"1")
    quiet(near, other)

    def fill_across(change: Any) -> Any:
        epoch = near.sync()
        assert epoch is not None
        value = other.get(NC + "a")
        change()
        assert near.wait_usable(5.0)
        quiet(near, other)
        near.fill(epoch, [(NC + "a", value, None)])
        return held(near, NC + "a")

    # Four unrelated changes: more than it remembers, so it cannot tell "a" was not among them.
    assert fill_across(lambda: [other.set(f"{NC}other-{i}", b"x") for i in range(4)]) is MISS
    assert fill_across(lambda: [other.set(f"{NC}other-{i}", b"y") for i in range(2)]) == b"1"  # (within)
    near.evict([NC + "a"])
    assert fill_across(other.flushdb) is MISS
    other.set(NC + "a", b"1")
    quiet(near, other)

    def lose_the_connection() -> None:  # (this test database's listeners: other processes use others)
        db = str(other.connection_pool.connection_kwargs.get("db", 0))
        for listener in other.client_list():
            if listener["name"] == "codex-nearcache" and listener["db"] == db:
                other.client_kill_filter(_id=listener["id"])

    assert fill_across(lose_the_connection) is MISS


def test_a_lost_connection_drops_everything_and_the_cache_comes_back(make, other) -> None:
    near = make()
    other.set(NC + "a", b"1")
    filled(near, other, NC + "a")
    listeners = [c for c in other.client_list() if c["name"] == "codex-nearcache" and int(c["id"]) > 0]
    assert listeners
    for listener in listeners:
        other.client_kill_filter(_id=listener["id"])
    other.set(NC + "a", b"changed while nobody listened")  # its message went nowhere
    assert near.wait_usable(5.0)  # reconnected...
    assert held(near, NC + "a") is MISS  # ...with nothing from before


class _Deaf(NearCache):
    """A connection that stops answering PINGs (a half-open TCP connection, a stuck server)."""

    deaf = False

    def _apply(self, message: Any) -> None:
        if self.deaf and isinstance(message, list) and message and message[0] == b"pong":
            return
        super()._apply(message)


def test_lookups_miss_once_pings_go_unanswered(make, other) -> None:
    near = make(_Deaf, ping_interval=0.02, stale_after=0.2)
    other.set(NC + "a", b"1")
    filled(near, other, NC + "a")
    near.deaf = True  # type: ignore[attr-defined]
    time.sleep(0.3)
    assert near.sync() is None  # nothing it holds is used: changes could be going unreported
    near.deaf = False  # type: ignore[attr-defined]
    assert near.wait_usable(5.0)
    assert held(near, NC + "a") is MISS


def test_keys_outside_the_prefixes_are_not_reported(make, other) -> None:
    near = make()
    other.set(NC + "a", b"1")
    quiet(near, other)  # (the write's own invalidation seen first: a loaded machine can delay it)
    refilled(near, other, NC + "a")
    epoch = near.sync()
    other.set("elsewhere:a", b"1")
    other.ping()
    assert near.sync() == epoch and held(near, NC + "a") == b"1"


def test_a_forked_child_listens_for_itself(make, other) -> None:
    """gunicorn and Celery fork workers: the child starts its own connection and holds nothing of
    the parent's, even when the parent's listener was busy at the fork."""
    near = make()
    other.set(NC + "a", b"1")
    filled(near, other, NC + "a")
    holding, release = threading.Event(), threading.Event()

    def busy_listener() -> None:  # holds the lock across the fork, as the listener thread may
        with near._lock:
            holding.set()
            release.wait()

    busy = threading.Thread(target=busy_listener)
    busy.start()
    holding.wait()
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if every check holds
        status = 1
        try:
            if near.get(NC + "a") is MISS and near.wait_usable(5.0):
                filled(near, other, NC + "a")
                other.set(NC + "a", b"2")
                status = 0 if held(near, NC + "a") is MISS else 3
            else:
                status = 2
        finally:
            os._exit(status)
    release.set()
    busy.join()
    deadline = time.monotonic() + 10
    while (reaped := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    status = reaped[1]
    if reaped[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung (a lock inherited from the parent?)")
    assert os.waitstatus_to_exitcode(status) == 0
    assert held(near, NC + "a") is MISS  # the parent still listens: it saw the child's write


def test_a_full_cache_drops_its_oldest_entries_only(make, other) -> None:
    near = make(max_entries=8, stale_after=30.0)  # (as above: a late PONG's clear is not this test's)
    keys = [f"{NC}full-{n}" for n in range(8)]
    for key in keys:
        other.set(key, key.encode())
    quiet(near, other)
    for key in keys:
        refilled(near, other, key)
    refilled(near, other, NC + "full-new")  # full: the oldest quarter goes first
    assert [held(near, key) is MISS for key in keys] == [True, True] + [False] * 6
    assert held(near, keys[-1]) == keys[-1].encode()
    assert held(near, NC + "full-new") is None  # (absent in Redis: held as absent)
