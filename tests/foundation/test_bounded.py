"""Bounded in-process caches make room by dropping their oldest entries (app/speed/bounded.py)."""

from __future__ import annotations

from typing import Any

from app.speed.bounded import make_room


def test_below_the_bound_nothing_goes() -> None:
    entries = {n: n for n in range(9)}
    make_room(entries, 10)
    assert list(entries) == list(range(9))


def test_at_the_bound_the_oldest_quarter_goes_and_the_newest_stay() -> None:
    entries = {n: str(n) for n in range(100)}
    make_room(entries, 100)
    assert list(entries) == list(range(25, 100))  # insertion order: the first 25 went
    entries[100] = "100"
    make_room(entries, 100)  # room again: nothing more goes
    assert len(entries) == 76


def test_a_cache_grown_past_its_bound_comes_back_under_it() -> None:
    entries = {n: n for n in range(150)}  # (another thread's inserts raced the bound)
    make_room(entries, 100)
    assert list(entries) == list(range(75, 150))


def test_a_bound_of_one_keeps_room_for_the_next_entry() -> None:
    entries: dict[Any, Any] = {"a": 1}
    make_room(entries, 1)
    assert entries == {}


def test_a_full_session_cache_keeps_its_recent_sessions(monkeypatch) -> None:
    """The parsed-session cache (app/identity/sessions.py) at its bound: the sessions parsed last
    are still parsed, instead of every user's entry being parsed again at once."""
    from app.identity import sessions

    monkeypatch.setattr(sessions, "_PARSED", {})
    monkeypatch.setattr(sessions, "_PARSED_MAX", 8)
    parsed: list[bytes] = []

    def parse(raw: Any, token_hash: str, token: str, via: str) -> Any:
        parsed.append(raw)
        return None

    monkeypatch.setattr(sessions, "_parse_cache_entry", parse)
    for n in range(8):
        sessions._from_cache(f"s{n}".encode(), "hash", f"token{n}", "bearer")
    sessions._from_cache(b"s8", "hash", "token8", "bearer")  # full: the two oldest go
    parsed.clear()
    for n in range(2, 9):
        sessions._from_cache(f"s{n}".encode(), "hash", f"token{n}", "bearer")
    assert parsed == []  # all still held
    sessions._from_cache(b"s0", "hash", "token0", "bearer")
    assert parsed == [b"s0"]  # one of the oldest, parsed again
