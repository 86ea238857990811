"""Readiness checks and the ping round trip."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.db import enqueue_after_commit
from app.system.models import WorkerPing

log = structlog.get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=3, thread_name_prefix="ready")


def run_checks(checks: dict[str, Callable[[], object]]) -> dict[str, str]:
    """Run each dependency check in parallel with a 2 s budget; ``ok`` or ``error`` per name."""
    futures = {name: _pool.submit(check) for name, check in checks.items()}
    results: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=CHECK_TIMEOUT_SECONDS)
            results[name] = "ok"
        except Exception as exc:
            log.warning("health.check_failed", check=name, error=type(exc).__name__)
            results[name] = "error"
    return results


def database_check(engine: Engine) -> Callable[[], object]:
    def check() -> object:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar()

    return check


def create_ping(session: Session) -> WorkerPing:
    ping = WorkerPing()
    session.add(ping)
    session.flush()
    enqueue_after_commit(session, "system.ping", str(ping.id))
    return ping


def record_pong(session: Session, ping_id: uuid.UUID, worker: str) -> bool:
    """Stamp the ping once; a duplicate delivery finds it already processed and changes nothing."""
    result = session.execute(
        update(WorkerPing)
        .where(WorkerPing.id == ping_id, WorkerPing.processed_at.is_(None))
        .values(processed_at=datetime.now(UTC), worker=worker[:255])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
