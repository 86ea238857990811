"""Emails/s delivered to a local SMTP sink by 2 Celery worker processes, and queue-to-sent latency p50/p95.

Setup: the database ``codex_bench`` on ``DATABASE_URL``'s server (created and migrated with Alembic;
shared with the other benchmarks, so only rows with ``bench:`` dedupe keys are touched), an
aiosmtpd sink in its own process on a free port, and two ``celery -A tasks.worker worker -Q email,default``
processes (threads pool, ``BENCH_EMAIL_CONCURRENCY`` threads each) with ``MAIL_BACKEND=smtp`` pointed at
the sink, Celery broker on Redis DB 14 and cache on DB 15 (both flushed first).

1. Throughput: ``BENCH_EMAILS`` (2000) ``purchase-receipt`` emails (org branding from the Redis cache,
   context as ``app/commerce/emails.py`` builds it) are queued with ``queue_email`` in one transaction; the
   commit publishes their ``email.send`` messages. Emails/s = count / (last ``sent_at`` - commit start).
   The workers' CPU time per email (``/proc``) is reported too: the figure that carries across machines.
2. Latency: emails are queued one per transaction (as business code does) at a steady rate (default 80 %
   of the measured throughput, ``BENCH_EMAIL_RATE`` to override) for ``BENCH_DURATION`` (10) seconds;
   latency = ``sent_at - created_at`` of each row.

    python -m bench.bench_email          # or: make bench (every benchmark + bench/RESULTS.md)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import PRODUCTION, cpu_seconds, env_float, free_port, percentile

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
GOAL_EMAILS_PER_SECOND = 200.0
WORKERS = 2


def bench_urls() -> dict[str, str]:
    base_db = os.environ.get("DATABASE_URL", "postgresql+psycopg://localhost:5432/codex")
    base_redis = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    db_url = make_url(base_db).set(database="codex_bench").render_as_string(hide_password=False)
    redis_root = base_redis.rsplit("/", 1)[0] if base_redis.count("/") >= 3 else base_redis.rstrip("/")
    return {"DATABASE_URL": db_url, "CELERY_BROKER_URL": f"{redis_root}/14", "REDIS_URL": f"{redis_root}/15"}


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
    engine = create_engine(db_url)
    with engine.begin() as conn:  # leftovers of an interrupted run; other benchmarks share the database
        conn.execute(text("DELETE FROM email_outbox WHERE dedupe_key LIKE 'bench:%'"))
    engine.dispose()


# ---- processes -----------------------------------------------------------------------------------


def _sink_main(port: int) -> None:
    """The SMTP sink process: accept and count; print the count when told to stop."""
    import threading

    from aiosmtpd.controller import Controller

    class Counter:
        count = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Counter.count += 1
            return "250 OK"

    controller = Controller(Counter(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    print(Counter.count, flush=True)


@contextmanager
def smtp_sink() -> Iterator[tuple[int, list[int]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_email", "--sink", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    received: list[int] = []
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("SMTP sink did not start")
        yield port, received
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        if out.strip().isdigit():
            received.append(int(out.strip()))


@contextmanager
def celery_workers(env: dict[str, str], concurrency: int) -> Iterator[list[int]]:
    OUT.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(WORKERS):
            log_path = OUT / f"celery-bench-email-{n}.log"
            cmd = [
                sys.executable, "-m", "celery", "-A", "tasks.worker", "worker",
                "-Q", "email,default", "--pool", "threads", "--concurrency", str(concurrency),
                "--prefetch-multiplier", "1", "-n", f"bench-email-{n}@%h",
                "--without-gossip", "--without-mingle",  # no -l, as the Procfile's worker line
            ]  # fmt: skip
            with log_path.open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        cmd,
                        cwd=ROOT,
                        env={**os.environ, **env},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def wait_for_workers(flask_app: Any, timeout: float = 60.0) -> None:
    celery_app = flask_app.extensions["celery"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = celery_app.control.ping(timeout=1.0) or []
        if len(replies) >= WORKERS:
            return
    raise RuntimeError(f"workers not ready within {timeout:.0f}s (see bench/out/celery-bench-email-*.log)")


# ---- load ----------------------------------------------------------------------------------------


def seed(session: Any) -> tuple[uuid.UUID, uuid.UUID]:
    from app.identity.models import User
    from app.orgs.models import Organization, OrgSettings

    user = User(email=f"buyer-{uuid.uuid4().hex[:8]}@example.com", name="Bench Buyer")
    session.add(user)
    session.flush()
    org = Organization(name="Bench Bakery", slug=f"bench-{uuid.uuid4().hex[:8]}", created_by=user.id)
    session.add(org)
    session.flush()
    session.add(
        OrgSettings(
            organization_id=org.id,
            platform_name="Bench Bakery",
            support_email="help@bench.example",
            timezone="Europe/Paris",
        )
    )
    session.commit()
    return user.id, org.id


def queue_receipt(session: Any, user_id: uuid.UUID, org_id: uuid.UUID, run: str, n: int) -> None:
    from app.notifications import service
    from app.notifications.rendering import Money

    purchase_id = uuid.uuid4()
    service.queue_email(
        session,
        "purchase-receipt",
        f"customer{n}@example.com",
        user_id,
        org_id,
        {
            "content_title": "Mastering Sourdough",
            "content_url": service.content_url("bench-bakery", "mastering-sourdough"),
            "amount": Money(1999, "usd"),
            "purchase_id": str(purchase_id),
            "purchased_at": datetime.now(UTC),
            "library_url": service.library_url(),
            "user_name": "Bench Buyer",  # as app/commerce/emails.py passes it
        },
        f"bench:{run}:{n}",
    )


def cleanup(session: Any, user_id: uuid.UUID, org_id: uuid.UUID) -> None:
    session.execute(text("DELETE FROM email_outbox WHERE dedupe_key LIKE 'bench:%'"))
    session.execute(text("DELETE FROM organizations WHERE id = :id"), {"id": org_id})
    session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
    session.commit()


def wait_all_sent(session: Any, run: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = session.execute(
            text("SELECT count(*) FROM email_outbox WHERE dedupe_key LIKE :p AND status = 'sent'"),
            {"p": f"bench:{run}:%"},
        ).scalar_one()
        session.rollback()
        if done >= expected:
            return
        time.sleep(0.02)
    raise RuntimeError(f"only {done}/{expected} emails sent within {timeout:.0f}s")


def throughput(session: Any, user_id: uuid.UUID, org_id: uuid.UUID, count: int, run: str) -> float:
    for n in range(count):
        queue_receipt(session, user_id, org_id, run, n)
    session.flush()
    started = time.time()
    session.commit()  # publishes every email.send
    wait_all_sent(session, run, count, timeout=max(120.0, count / 10))
    last = session.execute(
        text("SELECT extract(epoch FROM max(sent_at)) FROM email_outbox WHERE dedupe_key LIKE :p"),
        {"p": f"bench:{run}:%"},
    ).scalar_one()
    session.rollback()
    return count / (float(last) - started)


def latency(
    session: Any, user_id: uuid.UUID, org_id: uuid.UUID, rate: float, duration: float, run: str
) -> tuple[list[float], float]:
    total = max(1, int(rate * duration))
    start = time.monotonic()
    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        queue_receipt(session, user_id, org_id, run, n)
        session.commit()
    achieved = total / max(time.monotonic() - start, 1e-9)
    wait_all_sent(session, run, total, timeout=120.0)
    values = session.execute(
        text(
            "SELECT extract(epoch FROM sent_at - created_at) FROM email_outbox"
            " WHERE dedupe_key LIKE :p AND status = 'sent'"
        ),
        {"p": f"bench:{run}:%"},
    ).scalars()
    result = [float(v) for v in values]
    session.rollback()
    return result, achieved


def main() -> list[dict[str, Any]]:
    count = int(env_float("BENCH_EMAILS", 2000))
    duration = env_float("BENCH_DURATION", 10.0)
    concurrency = int(env_float("BENCH_EMAIL_CONCURRENCY", 4))
    urls = bench_urls()
    migrate(urls["DATABASE_URL"])

    from app import create_app
    from app.db import get_session

    with smtp_sink() as (port, received):
        env = {
            **urls,
            "APP_ENV": "development",
            "MAIL_BACKEND": "smtp",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(port),
            # As production's workers log: the app's INFO lines (email.sent per email), as JSON.
            "LOG_LEVEL": PRODUCTION["LOG_LEVEL"],
            "LOG_FORMAT": PRODUCTION["LOG_FORMAT"],
            "DATABASE_POOL_SIZE": str(concurrency + 2),
        }
        flask_app = create_app({k: (int(v) if k in {"MAIL_PORT", "DATABASE_POOL_SIZE"} else v) for k, v in env.items()})
        flask_app.extensions["redis"].flushdb()
        flask_app.extensions["broker_redis"].flushdb()
        with celery_workers(env, concurrency) as pids, flask_app.app_context():
            wait_for_workers(flask_app)
            session = get_session()
            user_id, org_id = seed(session)
            throughput(session, user_id, org_id, 50, f"warmup-{uuid.uuid4().hex[:6]}")
            cpu_before = cpu_seconds(pids)
            rate = throughput(session, user_id, org_id, count, f"burst-{uuid.uuid4().hex[:6]}")
            worker_cpu_ms = (cpu_seconds(pids) - cpu_before) / count * 1000
            paced = env_float("BENCH_EMAIL_RATE", 0.0) or round(rate * 0.8)
            latencies, achieved = latency(session, user_id, org_id, paced, duration, f"paced-{uuid.uuid4().hex[:6]}")
            cleanup(session, user_id, org_id)
            session.close()
        flask_app.extensions["db"].engine.dispose()
    delivered = received[0] if received else None

    setup = f"{WORKERS} workers x {concurrency} threads"
    met = rate >= GOAL_EMAILS_PER_SECOND
    rows: list[dict[str, Any]] = [
        {
            "name": f"emails delivered/s ({count} queued at once; {setup})",
            "value": round(rate, 1),
            "unit": "emails/s",
            "goal": f">= {GOAL_EMAILS_PER_SECOND:.0f} emails/s ({'met' if met else 'NOT met'})",
        },
        {
            "name": "worker CPU per email (both processes, user + system)",
            "value": round(worker_cpu_ms, 2),
            "unit": "ms",
            "goal": "report",
        },
        {
            "name": f"queue-to-sent latency p50 at {achieved:.0f} emails/s for {duration:.0f} s",
            "value": round(percentile(latencies, 50) * 1000, 1),
            "unit": "ms",
            "goal": "report",
        },
        {
            "name": f"queue-to-sent latency p95 at {achieved:.0f} emails/s for {duration:.0f} s",
            "value": round(percentile(latencies, 95) * 1000, 1),
            "unit": "ms",
            "goal": "report",
        },
        {
            "name": "messages received by the SMTP sink / emails queued",
            "value": f"{delivered} / {count + 50 + len(latencies)}",
            "unit": "messages",
            "goal": "equal (at-least-once; no loss)",
        },
    ]
    print_table(rows)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sink":
        _sink_main(int(sys.argv[2]))
    else:
        main()
