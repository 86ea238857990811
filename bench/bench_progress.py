"""Progress heartbeats (``PUT /content/{id}/progress``) next to ``GET /health``, and the flush of 10 000 entries.

Setup as bench_stream (database ``codex_bench``, org ``bench-playback``, Redis DB 13; only this
benchmark's keys are deleted). Part 1, under gunicorn (2 workers x 4 threads), in the production
configuration with BENCH_USERS signed-in users on a free item (the former bench configuration, one
buyer on the paid item, alongside as context), interleaved in rounds as in bench_stream: the
trivial Flask ``GET /health``, Codex ``GET /health``,
and heartbeats from the buyer on the paid item with an increasing position and ``client_ts`` (each
one is applied, none ignored). A warm heartbeat is the session from Redis and one Lua call that
checks the content's snapshot token and the access entry and applies the write. The
database's row counters (``pg_stat_user_tables``: inserts + updates + deletes over all tables) are
read before and after the interleaved run: the request path must write nothing (the session's
``last_seen_at`` is fresh, so no sliding-expiry write either). Goal (issue 7): heartbeats >= 0.7 x
the trivial endpoint's requests/s with zero database writes. In the same rounds, on the same users:
the least possible heartbeat (bench/hot_floor_app.py), whose ratio bounds what any implementation
reaches here.

Part 2, in-process: 10 000 dirty entries (100 viewers x 100 free items) written by the real Lua
script, then ``tasks.playback.flush`` (20 batches of 500, one INSERT … ON CONFLICT each) is timed:
first run inserts every row, a second run (after newer heartbeats for all 10 000) updates them.
Goal (issue 7): under 1 s.

    python -m bench.bench_progress          # or: python bench/run.py progress
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, delete, text
from sqlalchemy.orm import Session

from bench.bench_auth import bench_env, print_table
from bench.bench_stream import Playback, forget_keys, goal_text, prepare, row
from bench.common import LoadResult, Rotation, Target, bearer_users, client_ips, interleaved, record_goal
from bench.users import sessions, user_count

GOAL_RATIO = 0.7
FLUSH_GOAL_SECONDS = 1.0
PROGRESS_LIMIT = 120  # per user per minute (security.md §3; the shared 300/min is larger)


def heartbeat_bodies() -> Any:
    """Each call: a position one second further, client_ts now (monotonic across threads)."""
    counter = itertools.count(1)
    lock = threading.Lock()

    def make() -> tuple[bytes, dict[str, str]]:
        with lock:
            n = next(counter)
        body = {
            "position_seconds": n % 1700,
            "duration_seconds": 1800,
            "client_ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        return json.dumps(body).encode(), {"Content-Type": "application/json"}

    return make


def db_writes(env: dict[str, str]) -> int:
    engine = create_engine(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            value = conn.execute(
                text("SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables")
            ).scalar()
            return int(value or 0)
    finally:
        engine.dispose()


def heartbeats(
    env: dict[str, str], playback: Playback, users: Rotation
) -> tuple[dict[str, tuple[LoadResult, list[float]]], int]:
    """trivial /health, Codex /health and heartbeats (production: ``users`` on a free item; the
    former bench configuration: the buyer on the paid item), interleaved; database rows written
    meanwhile."""
    before = db_writes(env)
    beat = {"method": "PUT", "body_factory": heartbeat_bodies(), "ok_statuses": (204,)}
    results = interleaved(
        env,
        [
            Target("trivial", "trivial", "/health"),
            Target("health", "codex", "/health", {"header_factory": client_ips(10_000, None)}),
            Target(
                "progress",
                "codex",
                f"/api/v1/content/{playback.free_ids[0]}/progress",
                {**beat, "header_factory": users},
            ),
            Target(
                "floor",
                "hot_floor",
                f"/api/v1/content/{playback.free_ids[0]}/progress",
                {**beat, "header_factory": users},
            ),
            Target(
                "progress_bench",
                "codex_bench",
                f"/api/v1/content/{playback.content_id}/progress",
                {**beat, "headers": {"Authorization": f"Bearer {playback.token}"}},
            ),
        ],
    )
    time.sleep(1.5)  # the statistics collector reports with a short delay
    return results, db_writes(env) - before


def flush_10k(env: dict[str, str], playback: Playback) -> tuple[float, float, int]:
    """Fill 10 000 dirty entries with the real script, flush (insert), refill newer, flush (update)."""
    import redis

    from app import keys
    from app.access.models import PlaybackProgress
    from tasks.playback import flush

    client = redis.Redis.from_url(env["REDIS_URL"])
    engine = create_engine(env["DATABASE_URL"])
    try:
        with Session(engine) as session:
            session.execute(delete(PlaybackProgress).where(PlaybackProgress.content_id.in_(playback.free_ids)))
            session.commit()
            timings = []
            for round_ in range(2):
                forget_keys(client, ["pb:*"])
                fill(client, playback, round_)
                assert client.scard(keys.PROGRESS_DIRTY) == len(playback.viewer_ids) * len(playback.free_ids)
                started = time.perf_counter()
                report = flush(session, client)
                timings.append(time.perf_counter() - started)
                if report.failed or client.scard(keys.PROGRESS_DIRTY):
                    raise RuntimeError(f"flush incomplete: {report}")
            count = session.scalar(
                text("SELECT count(*) FROM playback_progress WHERE content_id = ANY(:ids)"),
                {"ids": playback.free_ids},
            )
            return timings[0], timings[1], int(count or 0)
    finally:
        engine.dispose()
        client.close()


def fill(client: Any, playback: Playback, round_: int) -> None:
    from app.access import progress

    script = client.register_script(progress._WRITE_LUA)
    now = datetime.now(UTC)
    ts = progress.to_ms(now - timedelta(minutes=5) + timedelta(seconds=round_))
    pipe = client.pipeline(transaction=False)
    for user_id in playback.viewer_ids:
        for content_id in playback.free_ids:
            day = progress.day_stamp(now.date())
            names = progress._write_keys(user_id, content_id, day)
            args = [60 + round_ * 60, 1800, 0, ts, str(playback.org_id), progress.to_ms(now),
                    progress.member(user_id, content_id), str(content_id), f"{day}:{content_id}",
                    progress.HASH_TTL_SECONDS, progress.SEEN_TTL_SECONDS, "none"]  # fmt: skip
            script(keys=names, args=args, client=pipe)
    pipe.execute()


def main() -> list[dict[str, Any]]:
    env = bench_env()
    playback = prepare(env)
    users = bearer_users(sessions(env["DATABASE_URL"], user_count()), PROGRESS_LIMIT)
    results, written = heartbeats(env, playback, users)
    beats = results["progress"][0]
    if beats.statuses.get(204, 0) + beats.statuses.get(429, 0) != beats.requests:
        raise RuntimeError(f"unexpected statuses for PUT /progress: {dict(beats.statuses)}")
    trivial, health = results["trivial"], results["health"][0]
    insert_s, update_s, rows_flushed = flush_10k(env, playback)
    floor = results["floor"][0]
    if floor.statuses.get(204, 0) != floor.requests:
        raise RuntimeError(f"unexpected statuses from the floor app: {dict(floor.statuses)}")
    record_goal(
        "PUT /content/{id}/progress", results["progress"], trivial, GOAL_RATIO,
        bench_config=results["progress_bench"], floor=results["floor"], callers=[users],
    )  # fmt: skip
    rows = [
        row("trivial Flask GET /health", trivial, trivial, health, "baseline"),
        row("Codex GET /health", results["health"], trivial, health, "-"),
        row("PUT /content/{id}/progress (accepted heartbeats)", results["progress"], trivial, health,
            goal_text(beats, trivial[0], GOAL_RATIO)),
        row("  same, former bench configuration (one buyer, limits off)", results["progress_bench"], trivial,
            health, "context"),
        row("  least possible heartbeat (bench/hot_floor_app.py)", results["floor"], trivial, health,
            "bounds the goal"),
    ]  # fmt: skip
    rows.append({**{k: "" for k in rows[0]}, "name": "callers", "req/s": users.summary(),
                 "goal": f"429s: {beats.statuses.get(429, 0)} (must be 0)"})  # fmt: skip
    rows.append({**{k: "" for k in rows[0]}, "name": "database rows written during the heartbeat run",
                 "req/s": written, "goal": f"0 ({'met' if written == 0 else 'NOT met'})"})  # fmt: skip
    for name, seconds in (("flush 10 000 dirty entries (insert)", insert_s), ("flush 10 000 (update)", update_s)):
        met = "met" if seconds < FLUSH_GOAL_SECONDS else "NOT met"
        extra = {"name": f"{name}: seconds", "req/s": round(seconds, 3), "requests (errors)": f"{rows_flushed} rows"}
        rows.append({**{k: "" for k in rows[0]}, **extra, "goal": f"< {FLUSH_GOAL_SECONDS} s ({met})"})
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
