"""Authenticated ``GET /api/v1/auth/me`` (Bearer, session cache warm) versus the trivial Flask endpoint.

Both run under gunicorn with the Procfile's settings (2 workers x 4 threads) for the whole run and are
loaded in turn, for BENCH_ROUNDS rounds (``bench.common.interleaved``), by the same closed-loop load
generator, so that outside load on a shared machine hits every target alike. The real app runs against a
dedicated database ``codex_bench`` (created and migrated with Alembic) and Redis DB 13 (cache, flushed
first) / 12 (broker). A user with two memberships and one session is set up directly in the database;
the 2 s warm-up fills the Redis session cache (``sess:{sha256}``), the cached /me body
(``me:{user_id}``, app/identity/me_cache.py) and each worker's near cache (app/speed/nearcache.py), so the
measured requests take the warm path: the session entry, the body and its generation from the
worker's own memory (Redis reports any change to them), no Redis call, no Postgres.
The app's own ``GET /health`` is measured too, as the floor: the same plumbing without
authentication or database.

    python -m bench.bench_auth          # or: make bench (every benchmark + bench/RESULTS.md)

Knobs: BENCH_DURATION (s per target, default 10), BENCH_ROUNDS (5), BENCH_WARMUP (s, 2), BENCH_CONCURRENCY (16).
Goal (issue 4): /me serves at least 0.6 x the trivial endpoint's requests/s.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.common import LoadResult, Target, bearer_users, client_ips, interleaved, percentile, record_goal
from bench.users import sessions, user_count

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 0.6
ME_LIMIT = 300  # per user per minute: "every other /api/v1 request" (security.md §3)
BENCH_EMAIL = "bench-auth@example.com"


def bench_env() -> dict[str, str]:
    base_db = os.environ.get("DATABASE_URL", "postgresql+psycopg://localhost:5432/codex")
    base_redis = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    redis_root = base_redis.rsplit("/", 1)[0] if base_redis.count("/") >= 3 else base_redis.rstrip("/")
    return {
        "APP_ENV": "development",  # production refuses the local defaults
        # (limits, logging, metrics and proxy: bench.common.PRODUCTION or BENCH_CONFIG per server)
        # BENCH_DATABASE: another name when several checkouts share one Postgres (each migrates its own).
        "DATABASE_URL": make_url(base_db)
        .set(database=os.environ.get("BENCH_DATABASE") or "codex_bench")
        .render_as_string(hide_password=False),
        "REDIS_URL": f"{redis_root}/13",
        "CELERY_BROKER_URL": f"{redis_root}/12",
    }


def migrate(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from app.db import ensure_database

    ensure_database(db_url)
    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = db_url
    cfg.attributes["skip_logging"] = True
    command.upgrade(cfg, "head")


def prepare(env: dict[str, str]) -> str:
    """Migrate, flush the bench Redis DBs, (re)create the bench user with two orgs; return a session token."""
    import redis

    from app.identity import passwords
    from app.identity.models import AuthSession, Credential, User
    from app.identity.sessions import new_token
    from app.orgs.models import Membership, Organization, OrgSettings

    migrate(env["DATABASE_URL"])
    for url in (env["REDIS_URL"], env["CELERY_BROKER_URL"]):
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
    engine = create_engine(env["DATABASE_URL"])
    now = datetime.now(UTC)
    try:
        with Session(engine) as session, session.begin():
            user = session.scalar(select(User).where(User.email == BENCH_EMAIL))
            if user is None:
                user = User(email=BENCH_EMAIL, name="Bench User", email_verified_at=now)
                session.add(user)
                session.flush()
                session.add(Credential(user_id=user.id, password_hash=passwords.hash_password("Bench-passw0rd")))
                for slug, role in (("bench-auth-a", "owner"), ("bench-auth-b", "creator")):
                    org = Organization(name=f"Bench {slug[-1].upper()}", slug=slug, created_by=user.id)
                    session.add(org)
                    session.flush()
                    session.add(OrgSettings(organization_id=org.id, platform_name=org.name, support_email=BENCH_EMAIL))
                    session.add(Membership(organization_id=org.id, user_id=user.id, role=role))
            session.execute(delete(AuthSession).where(AuthSession.user_id == user.id))
            token, token_hash = new_token()
            # last_seen_at = now: no sliding-expiry write during a run shorter than 5 minutes.
            session.add(
                AuthSession(
                    user_id=user.id,
                    token_hash=token_hash,
                    expires_at=now + timedelta(hours=24),
                    last_seen_at=now,
                    created_at=now,
                )
            )
    finally:
        engine.dispose()
    return token


def cache_is_warm(env: dict[str, str], token: str) -> bool:
    import redis

    from app import keys
    from app.identity.sessions import hash_token

    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        return bool(client.exists(keys.session(hash_token(token))))
    finally:
        client.close()


def rows_for(
    me: tuple[LoadResult, list[float]], trivial: tuple[LoadResult, list[float]], health: tuple[LoadResult, list[float]]
) -> list[dict[str, Any]]:
    (me_all, me_rounds), (trivial_all, trivial_rounds), (health_all, _) = me, trivial, health
    ratio = me_all.rps / trivial_all.rps if trivial_all.rps else 0.0
    per_round = [a / b for a, b in zip(me_rounds, trivial_rounds, strict=True) if b]
    me_p99, trivial_p99 = percentile(me_all.latencies, 99) * 1000, percentile(trivial_all.latencies, 99) * 1000
    return [
        {
            "name": "GET /api/v1/auth/me (Bearer, cache warm) throughput",
            "value": round(me_all.rps, 1),
            "unit": "req/s",
            "baseline": round(trivial_all.rps, 1),
            "ratio": round(ratio, 2),
            "goal": f">= {GOAL_RATIO} x trivial ({'met' if ratio >= GOAL_RATIO else 'NOT met'})",
        },
        {
            # The same ratio in each round: how much the machine's noise moves it.
            "name": "  ratio per round (min-max)",
            "value": f"{min(per_round):.2f}-{max(per_round):.2f}" if per_round else "-",
            "unit": "",
            "baseline": "",
            "ratio": "",
            "goal": "-",
        },
        {
            "name": "GET /api/v1/auth/me p99 latency",
            "value": round(me_p99, 2),
            "unit": "ms",
            "baseline": round(trivial_p99, 2),
            "ratio": round(me_p99 / trivial_p99, 2) if trivial_p99 else 0.0,
            "goal": "-",
        },
        {
            "name": "GET /api/v1/auth/me p50 latency",
            "value": round(percentile(me_all.latencies, 50) * 1000, 2),
            "unit": "ms",
            "baseline": round(percentile(trivial_all.latencies, 50) * 1000, 2),
            "ratio": "",
            "goal": "-",
        },
        {
            # Context: the same app without auth or database (bench_http's target), the floor for /me.
            "name": "Codex GET /health (no auth, no database) throughput",
            "value": round(health_all.rps, 1),
            "unit": "req/s",
            "baseline": round(trivial_all.rps, 1),
            "ratio": round(health_all.rps / trivial_all.rps, 2) if trivial_all.rps else 0.0,
            "goal": "-",
        },
        {
            "name": "requests measured (errors)",
            "value": f"{me_all.requests} ({me_all.errors})",
            "unit": "requests",
            "baseline": f"{trivial_all.requests} ({trivial_all.errors})",
            "ratio": "",
            "goal": "no errors",
        },
    ]


def main() -> list[dict[str, Any]]:
    env = bench_env()
    token = prepare(env)
    users = bearer_users(sessions(env["DATABASE_URL"], user_count()), ME_LIMIT)
    ips = client_ips(10_000, None)
    results = interleaved(
        env,
        [
            Target("trivial", "trivial", "/health"),
            Target("health", "codex", "/health", {"header_factory": ips}),
            Target("me", "codex", "/api/v1/auth/me", {"header_factory": users}),
            Target("me_bench", "codex_bench", "/api/v1/auth/me", {"headers": {"Authorization": f"Bearer {token}"}}),
        ],
    )
    me = results["me"][0]
    if me.statuses.get(200, 0) + me.statuses.get(429, 0) != me.requests:
        raise RuntimeError(f"unexpected statuses for /me: {dict(me.statuses)}")
    if not cache_is_warm(env, token):
        raise RuntimeError("the session cache entry is missing after the run")
    record_goal(
        "GET /auth/me", results["me"], results["trivial"], GOAL_RATIO,
        bench_config=results["me_bench"], callers=[users],
    )  # fmt: skip
    rows = rows_for(results["me"], results["trivial"], results["health"])
    old = results["me_bench"][0]
    rows.insert(2, {
        "name": "  same, former bench configuration (one user, limits off, WARNING)",
        "value": round(old.rps, 1), "unit": "req/s", "baseline": round(results["trivial"][0].rps, 1),
        "ratio": round(old.rps / results["trivial"][0].rps, 2) if results["trivial"][0].rps else 0.0,
        "goal": "context",
    })  # fmt: skip
    rows.append({"name": "callers", "value": users.summary(), "unit": "", "baseline": "", "ratio": "",
                 "goal": f"429s: {me.statuses.get(429, 0)} (must be 0)"})  # fmt: skip
    print_table(rows)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


if __name__ == "__main__":
    main()
