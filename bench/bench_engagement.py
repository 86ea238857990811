"""Content engagement on 100,000 viewers of one item and a year of daily statistics: the JSON and the SVG.

Data: a separate database ``codex_bench_engagement`` (created and migrated with Alembic), filled with COPY: one
org, its owner, 50 content items of 30 min; the measured item has 100,000 viewers (one ``playback_progress`` row
each, furthest positions falling off along the lesson as audiences do, 18 % completed) and 365 days of
``content_daily_stats``; the 49 others have 2,000 viewers and a year of statistics each, so the tables and
indexes are shared as in production (198,000 progress rows, 18,250 daily rows). COPY fires migration 0015's
statement triggers like any insert, so the retention rollup is built the way the flush keeps it, and is checked
against a direct aggregate before anything is timed. Built once and reused while its marker row matches
(``BENCH_ENGAGEMENT_REBUILD=1`` rebuilds); then ``VACUUM ANALYZE``.

Measured, one after the other:
1. in-process: ``engagement.engagement`` over the default 30 days and over 365 days, and what the SVG route
   does (``engagement.audience`` + ``svg.render_retention`` + the org's colour), ``BENCH_ENGAGEMENT_CALLS``
   (default 60) timed calls each after 5 warm-up calls; p50/p95/p99 wall time. For context (no goal): the
   same viewer figures aggregated straight from ``playback_progress``, what the rollup saves;
2. the JSON (365 days) and the SVG over HTTP (gunicorn, Procfile settings, in the production configuration:
   limits on, INFO JSON logs; Bearer sessions of 60 org admins taken in turn, so none passes its 300 a minute),
   closed loop with 2 connections, interleaved in ``BENCH_ROUNDS`` (5) rounds with ``GET /health`` and the org's 365-day
   revenue series (a dashboard read of the same size), ``BENCH_DURATION`` s (default 10) each in all;
3. the flush's price for keeping the rollup: one 500-row batch of the flush's upsert moving every viewer to a
   new furthest position, with the triggers and with them disabled, interleaved (rolled back each time);
4. ``EXPLAIN (ANALYZE, BUFFERS)`` of every SQL statement of the two reads, written to
   ``bench/out/engagement_explain.txt``, and the scan each one uses printed.

    python -m bench.bench_engagement          # or: python bench/run.py engagement

Goal (issue 21): p95 under 100 ms for the endpoint and under 150 ms for the SVG, in-process and over HTTP.
"""

from __future__ import annotations

import io
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.bench_auth import migrate, print_table
from bench.common import (
    GUNICORN_CONF,
    OUT,
    base_env,
    bearer_users,
    env_float,
    explain_all,
    load,
    org_admin_tokens,
    percentile,
    production_env,
    start_gunicorn,
)

DB_NAME = "codex_bench_engagement"
VIEWERS = 100_000
OTHER_ITEMS = 49
OTHER_VIEWERS = 2_000
DURATION = 1800
DAYS = 365
JSON_GOAL_MS = 100.0
SVG_GOAL_MS = 150.0
MARKER = f"bench-engagement-v1-{VIEWERS}-{DAYS}"
OWNER_EMAIL = "bench-engagement-owner@example.com"
MANAGERS = 60  # admins the HTTP phase spreads over (60 x 300/min = 300 req/s before any would wait)
API_LIMIT = 300  # security.md: every other /api/v1 request, per user
EXPLAIN_OUT = OUT / "engagement_explain.txt"
BATCH = 500

DIRECT = """
    SELECT LEAST(20, 20 * LEAST(max_position_seconds, duration_seconds) / duration_seconds) AS bucket,
           count(*), count(*) FILTER (WHERE completed),
           sum(1000000::bigint * LEAST(max_position_seconds, duration_seconds) / duration_seconds)
    FROM playback_progress WHERE content_id = :c GROUP BY 1 ORDER BY 1
"""


def bench_env() -> dict[str, str]:
    return base_env(DB_NAME, 11, 10)


def _psycopg_url(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


# ---- data ------------------------------------------------------------------------------------------------


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _copy(cursor: Any, table: str, columns: list[str], rows: Iterator[list[Any]]) -> int:
    """COPY ``rows`` into ``table`` in one statement (one trigger run), buffered in chunks."""
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
            count += 1
            if count % 50_000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    return count


def furthest_position(rng: random.Random) -> int:
    """Audiences fall off along a lesson: a fifth leave in the first minutes, most of the rest along
    the way, and about one in six watch to the end."""
    roll = rng.random()
    if roll < 0.18:
        return DURATION
    if roll < 0.38:
        return rng.randrange(0, DURATION // 10)
    return int(DURATION * rng.random() ** 1.6)


def build(db_url: str) -> dict[str, Any]:
    """(Re)create the dataset; return the ids the measurements need."""
    import psycopg

    rng = random.Random(20261206)
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    with psycopg.connect(_psycopg_url(db_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "TRUNCATE dashboard_content_retention, content_daily_stats, playback_progress, content, media_items, "
            "memberships, org_settings, sessions, organizations, users CASCADE"
        )
        owner_id, org_id = _uuid(rng), _uuid(rng)
        viewers = [_uuid(rng) for _ in range(VIEWERS)]
        _copy(
            cur,
            "users",
            ["id", "email", "name", "email_verified_at"],
            iter(
                [
                    [owner_id, OWNER_EMAIL, "Bench Owner", now.isoformat()],
                    *([v, f"viewer{i}@example.com", f"Viewer {i:06d}", now.isoformat()] for i, v in enumerate(viewers)),
                ]
            ),
        )
        cur.execute(
            "INSERT INTO organizations (id, name, slug, created_by, description) VALUES (%s, %s, %s, %s, %s)",
            (org_id, "Bench Engagement", "bench-engagement", owner_id, MARKER),
        )
        cur.execute(
            "INSERT INTO org_settings (organization_id, platform_name, support_email, primary_color) "
            "VALUES (%s, %s, %s, %s)",
            (org_id, "Bench Engagement", OWNER_EMAIL, "#0F766E"),
        )
        cur.execute(
            "INSERT INTO memberships (organization_id, user_id, role) VALUES (%s, %s, 'owner')", (org_id, owner_id)
        )
        items: list[uuid.UUID] = []
        for i in range(OTHER_ITEMS + 1):
            media_id, content_id = _uuid(rng), _uuid(rng)
            cur.execute(
                "INSERT INTO media_items (id, organization_id, created_by, title, media_type, mime_type, "
                "file_size_bytes, status, original_key, duration_seconds) VALUES (%s, %s, %s, %s, 'video', "
                "'video/mp4', 1024, 'uploaded', %s, %s)",
                (media_id, org_id, owner_id, f"Media {i}", f"orgs/{org_id}/media/{media_id}/original.mp4", DURATION),
            )
            cur.execute(
                "INSERT INTO content (id, organization_id, created_by, media_id, title, slug, content_type, "
                "visibility, price_cents, currency, status, published_at) VALUES (%s, %s, %s, %s, %s, %s, "
                "'video', 'purchased_only', 1999, 'usd', 'published', %s)",
                (content_id, org_id, owner_id, media_id, f"Lesson {i:03d}", f"lesson-{i}", now),
            )
            items.append(content_id)

        def progress_rows() -> Iterator[list[Any]]:
            for index, content_id in enumerate(items):
                audience = viewers if index == 0 else rng.sample(viewers, OTHER_VIEWERS)
                for user_id in audience:
                    furthest = furthest_position(rng)
                    done = furthest >= 0.95 * DURATION
                    seen = (now - timedelta(seconds=rng.randrange(DAYS * 86400))).isoformat()
                    position = rng.randrange(0, furthest + 1)
                    yield [user_id, content_id, position, furthest, DURATION, "t" if done else "f",
                           seen if done else None, seen, seen, seen]  # fmt: skip

        columns = [
            "user_id", "content_id", "position_seconds", "max_position_seconds", "duration_seconds", "completed",
            "completed_at", "client_ts", "created_at", "updated_at",
        ]  # fmt: skip
        _copy(cur, "playback_progress", columns, progress_rows())

        def daily_rows() -> Iterator[list[Any]]:
            for index, content_id in enumerate(items):
                scale = VIEWERS if index == 0 else OTHER_VIEWERS
                for back in range(DAYS):
                    day = today - timedelta(days=back)
                    views = rng.randrange(scale // 500, scale // 150 + 2)
                    yield [content_id, day.isoformat(), org_id, views, views * rng.randrange(200, 700),
                           views // rng.randrange(4, 8)]  # fmt: skip

        _copy(
            cur,
            "content_daily_stats",
            ["content_id", "day", "organization_id", "views_started", "seconds_watched", "completions"],
            daily_rows(),
        )
        conn.commit()
    with psycopg.connect(_psycopg_url(db_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"org_id": org_id, "owner_id": owner_id, "content_id": items[0]}


def dataset(db_url: str) -> dict[str, Any]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT o.id, o.created_by, c.id FROM organizations o JOIN content c "
                    "ON c.organization_id = o.id AND c.slug = 'lesson-0' "
                    "WHERE o.slug = 'bench-engagement' AND o.description = :m"
                ),
                {"m": MARKER},
            ).first()
            count = conn.scalar(text("SELECT count(*) FROM playback_progress")) if row else 0
    finally:
        engine.dispose()
    expected = VIEWERS + OTHER_ITEMS * OTHER_VIEWERS
    if row is None or count != expected or os.environ.get("BENCH_ENGAGEMENT_REBUILD") == "1":
        started = time.perf_counter()
        ids = build(db_url)
        print(f"dataset built in {time.perf_counter() - started:.1f} s")
        return ids
    return {"org_id": row[0], "owner_id": row[1], "content_id": row[2]}


def check_rollup(db_url: str, content_id: uuid.UUID) -> int:
    """The trigger-kept rollup equals the direct aggregate (else the timings would mean nothing)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            direct = [tuple(r) for r in conn.execute(text(DIRECT), {"c": content_id})]
            kept = [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT bucket, viewers, completions, fraction_micros FROM dashboard_content_retention "
                        "WHERE content_id = :c AND viewers <> 0 ORDER BY bucket"
                    ),
                    {"c": content_id},
                )
            ]
    finally:
        engine.dispose()
    if direct != kept:
        raise RuntimeError(f"retention rollup differs from playback_progress:\n{direct}\n{kept}")
    return sum(r[1] for r in direct)


def time_calls(calls: int, func: Callable[[], Any]) -> list[float]:
    for _ in range(5):
        func()
    timings = []
    for _ in range(calls):
        begin = time.perf_counter()
        func()
        timings.append(time.perf_counter() - begin)
    return timings


def owner_access(session: Any, org_id: uuid.UUID, owner_id: uuid.UUID) -> Any:
    """The owner inside the org, as ``require_org_role`` hands it to the route."""
    from app.identity.sessions import Principal
    from app.orgs.access import OrgAccess
    from app.orgs.models import Organization

    organization = session.get(Organization, org_id)
    now = datetime.now(UTC)
    principal = Principal(
        session_id=uuid.UUID(int=0), user_id=owner_id, role="customer", expires_at=now, last_seen_at=now,
        remember_me=False, token_hash="", token="", via="cli",
    )  # fmt: skip
    return OrgAccess(organization=organization, principal=principal, membership_role="owner", role="owner")


def in_process(
    env: dict[str, str], org_id: uuid.UUID, owner_id: uuid.UUID, content_id: uuid.UUID
) -> tuple[dict[str, list[float]], dict[str, Any], str]:
    from app import create_app, db
    from app.dashboard import engagement, svg
    from app.orgs.branding import branding_for

    flask_app = create_app({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"], "LOG_LEVEL": "WARNING"})
    calls = int(env_float("BENCH_ENGAGEMENT_CALLS", 60))
    today = datetime.now(UTC).date()
    with flask_app.app_context():
        manager = owner_access(db.session, org_id, owner_id)

        def figures(days: int) -> Callable[[], Any]:
            def call() -> Any:
                try:
                    item = engagement.readable_content(db.session, manager, content_id)
                    return engagement.engagement(db.session, item, today - timedelta(days=days - 1), today)
                finally:
                    db.session.rollback()

            return call

        def chart() -> str:
            try:
                content = engagement.readable_content(db.session, manager, content_id).content
                audience = engagement.audience(db.session, content.id)
                return svg.render_retention(
                    title=content.title,
                    viewers=audience.viewers,
                    retention=audience.retention(),
                    color=branding_for(db.session, org_id).primary_color,
                )
            finally:
                db.session.rollback()

        def direct() -> Any:
            try:
                return db.session.execute(text(DIRECT), {"c": content_id}).all()
            finally:
                db.session.rollback()

        timings = {
            "engagement_30d": time_calls(calls, figures(30)),
            "engagement_365d": time_calls(calls, figures(365)),
            "retention_svg": time_calls(calls, chart),
            "direct_aggregate": time_calls(max(5, calls // 6), direct),
        }
        result = {"json": figures(365)(), "svg": chart()}
        explained = explain_all(flask_app, [figures(365), chart])
    return timings, result, explained


def scan_lines(explained: str) -> list[str]:
    """Each plan's scan nodes (which index, or a sequential scan) and its execution time."""
    seen = []
    for line in explained.splitlines():
        stripped = line.strip().removeprefix("->").strip()
        if " Scan" in stripped or stripped.startswith("Function Scan"):
            seen.append(stripped.split("  (")[0])
        elif stripped.startswith("Execution Time"):
            seen.append("   " + stripped)
    return seen


def flush_cost(db_url: str, content_id: uuid.UUID) -> dict[str, list[float]]:
    """One flush batch (the real upsert) moving 500 viewers of the big item to a new furthest position,
    with the rollup triggers and without, interleaved, each rolled back."""
    from sqlalchemy.orm import Session

    from app.access import progress

    engine = create_engine(db_url)
    rounds = int(env_float("BENCH_ENGAGEMENT_FLUSH_ROUNDS", 40))
    timings: dict[str, list[float]] = {"with_triggers": [], "without_triggers": []}
    try:
        with engine.connect() as conn:
            picked = conn.execute(
                text("SELECT user_id, max_position_seconds FROM playback_progress WHERE content_id = :c LIMIT :n"),
                {"c": content_id, "n": BATCH},
            ).all()
        ts = progress.to_ms(datetime.now(UTC) + timedelta(days=1))
        rows = progress.Rows()
        for user_id, furthest in picked:
            further = min(DURATION, furthest + DURATION // 7)
            rows.add(str(user_id), str(content_id), further, DURATION, False, None, ts, further)
        for round_ in range(rounds):
            for kind in ("with_triggers", "without_triggers") if round_ % 2 else ("without_triggers", "with_triggers"):
                with Session(engine) as session:
                    if kind == "without_triggers":
                        session.execute(text("ALTER TABLE playback_progress DISABLE TRIGGER USER"))
                    begin = time.perf_counter()
                    written = progress.write_rows(session, rows)
                    timings[kind].append(time.perf_counter() - begin)
                    assert written == len(rows), written
                    session.rollback()
    finally:
        engine.dispose()
    return timings


def over_http(env: dict[str, str], org_id: uuid.UUID, content_id: uuid.UUID, tokens: list[str]) -> dict[str, Any]:
    """The two reads next to ``GET /health`` and the org's 365-day revenue series (the dashboard read whose
    goal bench_dashboard checks), loaded in turn for ``BENCH_ROUNDS`` rounds on one server, so load from
    elsewhere on a shared machine hits all four alike: their ratios are what carries over. The server
    runs as production does (``production_env``: limits on, INFO JSON logs), the requests spread over
    the org's admins (``tokens``) under the per-user limit."""
    duration = env_float("BENCH_DURATION", 10.0)
    warmup = env_float("BENCH_WARMUP", 2.0)
    rounds = max(1, int(env_float("BENCH_ROUNDS", 5)))
    today = datetime.now(UTC).date()
    start = today - timedelta(days=DAYS - 1)
    base = f"/api/v1/orgs/{org_id}/dashboard/content/{content_id}"
    paths = {
        "engagement_365d": f"{base}/engagement?start={start}&end={today}",
        "retention_svg": f"{base}/retention.svg",
        "revenue_365d": f"/api/v1/orgs/{org_id}/dashboard/revenue?start={start}&end={today}",
        "health": "/health",
    }
    managers = bearer_users(tokens, API_LIMIT, "admins")
    parts: dict[str, list[Any]] = {name: [] for name in paths}
    with start_gunicorn("app:create_app()", production_env(env), config=GUNICORN_CONF) as server:
        for round_ in range(rounds):
            for name, path in paths.items():
                parts[name].append(
                    load(
                        server.url + path,
                        header_factory=managers,
                        duration=duration / rounds,
                        concurrency=2,
                        warmup=warmup if round_ == 0 else min(warmup, 0.5),
                    )
                )
    return {
        name: {
            "latencies": [v for r in results for v in r.latencies],
            "rps": sum(r.requests for r in results) / max(sum(r.elapsed for r in results), 1e-9),
            "errors": sum(r.errors for r in results),
            "429s": sum(r.statuses[429] for r in results),
        }
        for name, results in parts.items()
    }


def ms(values: list[float], pct: float) -> float:
    return round(percentile(values, pct) * 1000, 1)


def goal_for(name: str) -> float | None:
    if name.startswith("engagement"):
        return JSON_GOAL_MS
    if name.startswith("retention"):
        return SVG_GOAL_MS
    return None


def row(name: str, values: list[float], goal: float | None, requests: int | None = None) -> dict[str, Any]:
    p95 = ms(values, 95)
    verdict = "- (context)" if goal is None else f"p95 < {goal:.0f} ms ({'met' if p95 < goal else 'NOT met'})"
    return {
        "name": name,
        "p50_ms": ms(values, 50),
        "p95_ms": p95,
        "p99_ms": ms(values, 99),
        "requests": len(values) if requests is None else requests,
        "goal": verdict,
    }


def main() -> list[dict[str, Any]]:
    env = bench_env()
    migrate(env["DATABASE_URL"])
    ids = dataset(env["DATABASE_URL"])
    org_id, content_id = ids["org_id"], ids["content_id"]
    viewers = check_rollup(env["DATABASE_URL"], content_id)
    timings, result, explained = in_process(env, org_id, ids["owner_id"], content_id)
    EXPLAIN_OUT.parent.mkdir(parents=True, exist_ok=True)
    Path(EXPLAIN_OUT).write_text(explained)
    tokens = org_admin_tokens(env["DATABASE_URL"], org_id, MANAGERS, "bench-engagement")
    http = over_http(env, org_id, content_id, tokens)
    flush = flush_cost(env["DATABASE_URL"], content_id)
    rows = [row(f"{name} (in-process)", values, goal_for(name)) for name, values in timings.items()]
    for name, res in http.items():
        label = (
            f"GET {name} over HTTP (2 connections, {res['rps']:.1f} req/s, errors {res['errors']}, 429s {res['429s']})"
        )
        rows.append(row(label, res["latencies"], goal_for(name)))
    revenue = percentile(http["revenue_365d"]["latencies"], 50)
    for name in ("engagement_365d", "retention_svg"):
        ratio = percentile(http[name]["latencies"], 50) / revenue if revenue else 0.0
        print(f"{name} over HTTP: p50 {ratio:.2f} x the revenue series' p50 in the same rounds")
    for name, values in flush.items():
        rows.append(row(f"flush upsert of {BATCH} rows, {name.replace('_', ' ')} (context)", values, None))
    body = result["json"]
    print(f"viewers={viewers} (rollup == direct aggregate) completions={body['completions']} "
          f"average_percent_watched={body['average_percent_watched']} days={len(body['daily'])}")  # fmt: skip
    print("retention every 25 %:", [p["viewers_fraction"] for p in body["retention"][::5]])
    print(f"svg: {len(result['svg'].encode())} bytes")
    print("scans (EXPLAIN ANALYZE; full plans in bench/out/engagement_explain.txt):")
    for line in scan_lines(explained):
        print("  " + line)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
