"""Org dashboard on 1,000,000 purchases and 100,000 customers: the summary and a 365-day revenue series.

Data: a separate database ``codex_bench_dashboard`` (created and migrated with Alembic), filled with COPY:
one org ("Bench Big") holding every one of the 1,000,000 purchases of 100,000 customers over the last three
years (the worst case for one dashboard: nothing to skip), 200 content items (20 priced in eur), one
checkout session per purchase, one grant per non-duplicate purchase (revoked for refunds and charge-backs),
and a second org with 20,000 purchases of its own so the indexes are shared as in production. Mix: 90 %
completed, 4 % refunded, 3 % partially refunded, 1 % charged back, 2 % duplicates. The data is built once and
reused while its marker row matches (``BENCH_DASHBOARD_REBUILD=1`` rebuilds); then ``VACUUM ANALYZE``.

The summary, the daily series and the customer list read the trigger-kept rollups (migrations 0006, 0007);
ranged top content still aggregates ``purchases`` (covering index ``ix_purchases_org_currency_purchased``).
Top content and the customer list are timed as context rows, without a goal.

Measured, one after the other:
1. the service calls in-process (``service.summary`` and ``service.revenue`` over 365 days, usd):
   ``BENCH_DASHBOARD_CALLS`` (default 60) timed calls each after 5 warm-up calls; p50/p95/p99 wall time;
2. the same two endpoints over HTTP (gunicorn, Procfile settings, production configuration: limits on, INFO
   JSON logs; Bearer sessions of 60 org admins in turn, none past its 300 a minute), closed loop with 2
   connections for ``BENCH_DURATION`` s (default 10) each;
3. ``EXPLAIN (ANALYZE, BUFFERS)`` of every SQL statement the two service calls send (captured from the engine,
   re-run with the same parameters); the plans go to ``bench/out/dashboard_explain.txt`` and the index each
   statement uses is printed.

    python -m bench.bench_dashboard          # or: python bench/run.py dashboard

Goal (issue 8): p95 under 100 ms for each of the two queries.
"""

from __future__ import annotations

import io
import os
import random
import time
import uuid
from collections.abc import Iterator
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

DB_NAME = "codex_bench_dashboard"
PURCHASES = 1_000_000
CUSTOMERS = 100_000
CONTENT = 200
EUR_CONTENT = 20
OTHER_PURCHASES = 20_000
SPAN_DAYS = 3 * 365
GOAL_MS = 100.0
MARKER = f"bench-dashboard-v1-{PURCHASES}-{CUSTOMERS}"
OWNER_EMAIL = "bench-dashboard-owner@example.com"
MANAGERS = 60  # admins the HTTP phase spreads over (60 x 300/min = 300 req/s before any would wait)
API_LIMIT = 300  # security.md: every other /api/v1 request, per user
EXPLAIN_OUT = OUT / "dashboard_explain.txt"


def bench_env() -> dict[str, str]:
    return base_env(DB_NAME, 11, 10)


# ---- data ------------------------------------------------------------------------------------------------


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _ts(value: datetime | None) -> str:
    return "\\N" if value is None else value.isoformat()


def _line(row: list[Any]) -> str:
    """One COPY text-format line (None is NULL; our values hold no tabs, newlines or backslashes)."""
    return "\t".join("\\N" if v is None else str(v) for v in row) + "\n"


def _copy(cursor: Any, table: str, columns: list[str], lines: Iterator[str]) -> int:
    """COPY tab-separated ``lines`` into ``table`` in chunks."""
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for line in lines:
            buffer.write(line)
            count += 1
            if count % 50_000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    return count


def build(db_url: str) -> dict[str, Any]:
    """(Re)create the dataset; return the ids the measurements need."""
    import psycopg

    rng = random.Random(20261201)
    now = datetime.now(UTC).replace(microsecond=0)
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "TRUNCATE dashboard_daily_revenue, dashboard_content_revenue, dashboard_customers, content_access, "
            "purchases, checkout_sessions, content, media_items, memberships, org_settings, admin_audit_events, "
            "email_outbox, sessions, organizations, users CASCADE"
        )
        owner_id, other_owner_id = _uuid(rng), _uuid(rng)
        big_org, other_org = _uuid(rng), _uuid(rng)
        customers = [_uuid(rng) for _ in range(CUSTOMERS)]
        _copy(
            cur,
            "users",
            ["id", "email", "name", "email_verified_at"],
            iter(
                [
                    _line([owner_id, OWNER_EMAIL, "Bench Owner", _ts(now)]),
                    _line([other_owner_id, "bench-dashboard-other@example.com", "Other Owner", _ts(now)]),
                    *(
                        _line([c, f"customer{i}@example.com", f"Customer {i:06d}", _ts(now)])
                        for i, c in enumerate(customers)
                    ),
                ]
            ),
        )
        for org_id, owner, name, slug in (
            (big_org, owner_id, "Bench Big", "bench-big"),
            (other_org, other_owner_id, "Bench Other", "bench-other"),
        ):
            cur.execute(
                "INSERT INTO organizations (id, name, slug, created_by, description) VALUES (%s, %s, %s, %s, %s)",
                (org_id, name, slug, owner, MARKER if org_id == big_org else None),
            )
            cur.execute(
                "INSERT INTO org_settings (organization_id, platform_name, support_email) VALUES (%s, %s, %s)",
                (org_id, name, OWNER_EMAIL),
            )
            cur.execute(
                "INSERT INTO memberships (organization_id, user_id, role) VALUES (%s, %s, 'owner')", (org_id, owner)
            )
        contents: dict[uuid.UUID, list[tuple[uuid.UUID, int, str]]] = {big_org: [], other_org: []}
        for org_id, owner, count in ((big_org, owner_id, CONTENT), (other_org, other_owner_id, 10)):
            for i in range(count):
                media_id, content_id = _uuid(rng), _uuid(rng)
                price = rng.choice((499, 999, 1999, 2999, 4999))
                currency = "eur" if org_id == big_org and i < EUR_CONTENT else "usd"
                cur.execute(
                    "INSERT INTO media_items (id, organization_id, created_by, title, media_type, mime_type, "
                    "file_size_bytes, status, original_key) VALUES (%s, %s, %s, %s, 'video', 'video/mp4', 1024, "
                    "'uploaded', %s)",
                    (media_id, org_id, owner, f"Media {i}", f"orgs/{org_id}/media/{media_id}/original.mp4"),
                )
                cur.execute(
                    "INSERT INTO content (id, organization_id, created_by, media_id, title, slug, content_type, "
                    "visibility, price_cents, currency, status, published_at) VALUES (%s, %s, %s, %s, %s, %s, "
                    "'video', 'purchased_only', %s, %s, 'published', %s)",
                    (content_id, org_id, owner, media_id, f"Lesson {i:03d}", f"lesson-{i}", price, currency, now),
                )
                contents[org_id].append((content_id, price, currency))

        # Pre-formatted COPY lines: sessions first (purchases reference them), then purchases, then grants.
        purchases: list[str] = []
        sessions: list[str] = []
        grants: list[str] = []
        span = SPAN_DAYS * 86400

        def add(index: int, org_id: uuid.UUID, customer: uuid.UUID, content: tuple[uuid.UUID, int, str]) -> None:
            content_id, price, currency = content
            purchase_id = _uuid(rng)
            when = now - timedelta(seconds=rng.randrange(span))
            roll = rng.random()
            status, refunded, refunded_at, refund_status, disputed_at, duplicate = (
                "completed", 0, None, None, None, False,
            )  # fmt: skip
            if roll < 0.04:
                status, refunded, refunded_at, refund_status = "refunded", price, when + timedelta(days=2), "succeeded"
            elif roll < 0.07:
                refunded, refund_status = price // 2, "succeeded"
            elif roll < 0.08:
                status, disputed_at = "charged_back", when + timedelta(days=5)
            elif roll < 0.10:
                duplicate, refund_status = True, "requested"
            session_id = f"cs_bench_{index}"
            sessions.append(_line(
                [session_id, "stripe", customer, content_id, org_id, price, currency, "complete", "paid",
                 f"pi_bench_{index}", "https://checkout.example/x", "http://localhost:3000/s",
                 "http://localhost:3000/c", _ts(when + timedelta(minutes=30)), _ts(when)]
            ))  # fmt: skip
            purchases.append(_line(
                [purchase_id, customer, content_id, org_id, "stripe", session_id, f"pi_bench_{index}", price,
                 currency, status, "t" if duplicate else "f", _ts(when), refunded, _ts(refunded_at), refund_status,
                 _ts(disputed_at), "lost" if disputed_at else None, _ts(when), _ts(when)]
            ))  # fmt: skip
            if not duplicate:
                revoked = status != "completed"
                grants.append(_line(
                    [_uuid(rng), customer, content_id, org_id, "purchase", purchase_id, _ts(when),
                     _ts(when + timedelta(days=3)) if revoked else None,
                     ("refund" if status == "refunded" else "dispute") if revoked else None, _ts(when), _ts(when)]
                ))  # fmt: skip

        per_customer = PURCHASES // CUSTOMERS
        for index in range(PURCHASES):
            customer_index, k = index % CUSTOMERS, index // CUSTOMERS
            # k*17 mod 200 differs for k < per_customer: no (customer, content) pair is bought twice.
            content = contents[big_org][(k * 17 + customer_index * 7) % CONTENT]
            add(index, big_org, customers[customer_index], content)
        assert per_customer * CUSTOMERS == PURCHASES
        for j in range(OTHER_PURCHASES):
            add(PURCHASES + j, other_org, customers[j], contents[other_org][j % 10])
        session_cols = [
            "id", "provider", "customer_id", "content_id", "organization_id", "amount_cents", "currency", "status",
            "payment_status", "payment_intent_id", "url", "success_url", "cancel_url", "expires_at", "completed_at",
        ]  # fmt: skip
        purchase_cols = [
            "id", "customer_id", "content_id", "organization_id", "provider", "checkout_session_id",
            "payment_intent_id", "amount_cents", "currency", "status", "is_duplicate", "purchased_at",
            "refunded_amount_cents", "refunded_at", "refund_status", "disputed_at", "dispute_status", "created_at",
            "updated_at",
        ]  # fmt: skip
        grant_cols = [
            "id", "user_id", "content_id", "organization_id", "source", "purchase_id", "granted_at", "revoked_at",
            "revoke_reason", "created_at", "updated_at",
        ]  # fmt: skip
        _copy(cur, "checkout_sessions", session_cols, iter(sessions))
        _copy(cur, "purchases", purchase_cols, iter(purchases))
        _copy(cur, "content_access", grant_cols, iter(grants))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"org_id": big_org, "owner_id": owner_id}


def dataset(db_url: str) -> dict[str, Any]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT id, created_by FROM organizations WHERE slug = 'bench-big' AND description = :m"),
                {"m": MARKER},
            ).first()
            count = conn.scalar(text("SELECT count(*) FROM purchases")) if row else 0
    finally:
        engine.dispose()
    if row is None or count != PURCHASES + OTHER_PURCHASES or os.environ.get("BENCH_DASHBOARD_REBUILD") == "1":
        started = time.perf_counter()
        ids = build(db_url)
        print(f"dataset built in {time.perf_counter() - started:.1f} s")
        return ids
    return {"org_id": row[0], "owner_id": row[1]}


def vacuum(db_url: str) -> None:
    """As autovacuum would, after the backfill of a fresh migration: index-only scans need the visibility map."""
    import psycopg

    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "VACUUM ANALYZE dashboard_daily_revenue, dashboard_content_revenue, dashboard_customers, "
            "dashboard_customer_revenue"
        )


# ---- measurements ----------------------------------------------------------------------------------------


def time_calls(calls: int, func: Any) -> list[float]:
    for _ in range(5):
        func()
    timings = []
    for _ in range(calls):
        begin = time.perf_counter()
        func()
        timings.append(time.perf_counter() - begin)
    return timings


def in_process(env: dict[str, str], org_id: uuid.UUID) -> tuple[dict[str, list[float]], dict[str, Any], str]:
    from app import create_app, db
    from app.dashboard import service

    flask_app = create_app({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"], "LOG_LEVEL": "WARNING"})
    calls = int(env_float("BENCH_DASHBOARD_CALLS", 60))
    today = datetime.now(UTC).date()
    start = today - timedelta(days=364)
    with flask_app.app_context():

        def summary() -> Any:
            try:
                return service.summary(db.session, org_id, "usd")
            finally:
                db.session.rollback()

        def revenue() -> Any:
            try:
                return service.revenue(db.session, org_id, "usd", start, today)
            finally:
                db.session.rollback()

        def top_content() -> Any:
            try:
                return service.top_content(
                    db.session, org_id, metric="revenue", currency="usd", start=start, end=today, limit=10
                )
            finally:
                db.session.rollback()

        def customers() -> Any:
            try:
                return service.list_customers(
                    db.session,
                    org_id,
                    currency="usd",
                    q=None,
                    sort="last_purchase_at",
                    order="desc",
                    page=1,
                    per_page=20,
                )
            finally:
                db.session.rollback()

        timings = {"summary": time_calls(calls, summary), "revenue_365d": time_calls(calls, revenue)}
        # Context only (no goal): the two views that still aggregate purchases themselves.
        timings["top_content_365d"] = time_calls(5, top_content)
        timings["customers_page1"] = time_calls(5, customers)
        figures = {"summary": summary(), "revenue": revenue()}
        explained = explain_all(flask_app, [summary, revenue])
        # The same statements for the small org (20,000 purchases): with one org holding ~98 % of the
        # rollup rows the planner rightly reads the big org's rows sequentially; a typical org's are
        # read through the indexes.
        other = db.session.scalar(text("SELECT id FROM organizations WHERE slug = 'bench-other'"))
        db.session.rollback()
        explained += "\n-- ==== the small org ====\n" + explain_all(
            flask_app,
            [
                lambda: service.summary(db.session, other, "usd"),
                lambda: service.revenue(db.session, other, "usd", start, today),
            ],
        )
        db.session.rollback()
    return timings, figures, explained


def index_lines(explained: str) -> list[str]:
    """The scan nodes (which index, or a sequential scan), heap fetches and execution time of each plan."""
    seen = []
    for line in explained.splitlines():
        stripped = line.strip().removeprefix("->").strip()
        if stripped.startswith("-- ===="):
            seen.append(stripped.strip("-= "))
        elif " Scan" in stripped or stripped.startswith("Function Scan"):
            seen.append(stripped.split("  (")[0])
        elif stripped.startswith(("Heap Fetches", "Execution Time")):
            seen.append("   " + stripped)
    return seen


def over_http(env: dict[str, str], org_id: uuid.UUID, tokens: list[str]) -> dict[str, Any]:
    duration = env_float("BENCH_DURATION", 10.0)
    warmup = env_float("BENCH_WARMUP", 2.0)
    today = datetime.now(UTC).date()
    start = today - timedelta(days=364)
    managers = bearer_users(tokens, API_LIMIT, "admins")  # (the per-user limit: 300 a minute)
    paths = {
        "summary": f"/api/v1/orgs/{org_id}/dashboard/summary",
        "revenue_365d": f"/api/v1/orgs/{org_id}/dashboard/revenue?start={start}&end={today}",
    }
    results = {}
    with start_gunicorn("app:create_app()", production_env(env), config=GUNICORN_CONF) as server:
        for name, path in paths.items():
            results[name] = load(
                server.url + path, header_factory=managers, duration=duration, concurrency=2, warmup=warmup
            )
    return results


def ms(values: list[float], pct: float) -> float:
    return round(percentile(values, pct) * 1000, 1)


def main() -> list[dict[str, Any]]:
    env = bench_env()
    migrate(env["DATABASE_URL"])
    ids = dataset(env["DATABASE_URL"])
    vacuum(env["DATABASE_URL"])
    org_id = ids["org_id"]
    timings, figures, explained = in_process(env, org_id)
    EXPLAIN_OUT.parent.mkdir(parents=True, exist_ok=True)
    Path(EXPLAIN_OUT).write_text(explained)
    tokens = org_admin_tokens(env["DATABASE_URL"], ids["org_id"], MANAGERS, "bench-dashboard")
    http = over_http(env, org_id, tokens)
    rows: list[dict[str, Any]] = []
    for name, values in timings.items():
        p95 = ms(values, 95)
        goal = name in ("summary", "revenue_365d")
        rows.append(
            {
                "name": f"service.{name} (in-process)",
                "p50_ms": ms(values, 50),
                "p95_ms": p95,
                "p99_ms": ms(values, 99),
                "requests": len(values),
                "goal": f"p95 < {GOAL_MS:.0f} ms ({'met' if p95 < GOAL_MS else 'NOT met'})" if goal else "- (context)",
            }
        )
    for name, result in http.items():
        p95 = ms(result.latencies, 95)
        rows.append(
            {
                "name": f"GET {name} over HTTP (2 connections, {result.rps:.1f} req/s, errors {result.errors})",
                "p50_ms": ms(result.latencies, 50),
                "p95_ms": p95,
                "p99_ms": ms(result.latencies, 99),
                "requests": result.requests,
                "goal": f"p95 < {GOAL_MS:.0f} ms ({'met' if p95 < GOAL_MS else 'NOT met'})",
            }
        )
    summary = figures["summary"]
    revenue = figures["revenue"]
    print(f"summary usd all_time={summary['all_time']} this_month={summary['this_month']}")
    print(f"customers={summary['customer_count']} top={[t['title'] for t in summary['top_content']]}")
    print(f"revenue 365d totals={revenue['totals']} days={len(revenue['daily'])}")
    print("index use (EXPLAIN ANALYZE; full plans in bench/out/dashboard_explain.txt):")
    for line in index_lines(explained):
        print("  " + line)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
