"""Signed-in users for the production configuration: many users, each with a fresh session.

Production serves thousands of users; a benchmark with one user measures one user's cache
entries and, with limits on, hits that user's per-minute limit within a second. ``sessions``
creates (once) ``count`` users ``bench-user-{i}@example.com`` in the bench database and gives each
a new session (the previous bench sessions of these users are deleted), ``last_seen_at`` now so
no sliding-expiry write happens during a run. The load then spreads over them with
``bench.common.bearer_users`` (round-robin, never above a limit).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import env_float

EMAIL = "bench-user-{}@example.com"


def user_count() -> int:
    """BENCH_USERS (default 3000): how many signed-in users the load spreads over."""
    return int(env_float("BENCH_USERS", 3000))


def sessions(db_url: str, count: int) -> list[str]:
    """``count`` bench users' fresh session tokens (users created on first use)."""
    from app.identity.models import AuthSession, User
    from app.identity.sessions import new_token

    users, auth_sessions = User.__tablename__, AuthSession.__tablename__

    now = datetime.now(UTC)
    emails = [EMAIL.format(i) for i in range(count)]
    tokens = [new_token() for _ in range(count)]
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO {users} (id, email, name, role, email_verified_at, created_at, updated_at) "
                    "SELECT gen_random_uuid(), e, 'Bench user', 'customer', :now, :now, :now "
                    "FROM unnest(CAST(:emails AS text[])) AS e ON CONFLICT (email) DO NOTHING"
                ),
                {"emails": emails, "now": now},
            )
            ids: dict[str, Any] = dict(
                conn.execute(
                    text(f"SELECT email, id FROM {users} WHERE email = ANY(:emails)"), {"emails": emails}
                ).all()
            )
            user_ids = [ids[email] for email in emails]
            conn.execute(text(f"DELETE FROM {auth_sessions} WHERE user_id = ANY(:ids)"), {"ids": user_ids})
            conn.execute(
                text(
                    f"INSERT INTO {auth_sessions} (id, user_id, token_hash, expires_at, last_seen_at, created_at) "
                    "SELECT gen_random_uuid(), u, h, :expires, :now, :now "
                    "FROM unnest(CAST(:ids AS uuid[]), CAST(:hashes AS text[])) AS t(u, h)"
                ),
                {"ids": user_ids, "hashes": [h for _, h in tokens], "expires": now + timedelta(hours=24), "now": now},
            )
    finally:
        engine.dispose()
    return [token for token, _ in tokens]
