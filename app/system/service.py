"""Readiness checks and the ping round trip."""

from __future__ import annotations

import concurrent.futures
import threading
import time
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


READY_MAX_AGE_SECONDS = 1.0


class ReadinessCache:
    """The last readiness result of this process, answered while at most 1 s old (security.md §12).

    A burst of probes (load balancer, orchestrator, monitors, every worker thread) then costs one
    set of dependency checks per second, not one per probe. Only the ok/error map is kept. One
    refresh at a time: callers arriving while it runs wait for it and take its result, rather than
    starting checks of their own. ``clock`` is injectable for tests.
    """

    def __init__(self, *, max_age: float = READY_MAX_AGE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._result: dict[str, str] | None = None
        self._checked_at = 0.0

    def get(self, run: Callable[[], dict[str, str]]) -> dict[str, str]:
        """The cached result while fresh, else ``run()``'s (which becomes the cached one)."""
        with self._lock:
            if self._result is None or self.clock() - self._checked_at > self.max_age:
                result = run()
                # Aged from when the checks finished: waiters queued behind a slow refresh take
                # its result instead of each running the checks again.
                self._result, self._checked_at = result, self.clock()
            return dict(self._result)


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
