"""Database layer: typed declarative ``Base``, one session per app context, after-commit enqueueing.

A session lives for one request or one task (both push an app context) and is closed at teardown.
Services take a session, add and flush, and never commit; routes and tasks commit once.

``after_commit`` is how side effects leave a transaction: the work is kept on the session and run
once the outermost transaction commits, or dropped when it rolls back, so a worker never sees a
row that was not committed and a cache is never evicted before the change it reflects
(warehouse's pattern). ``enqueue_after_commit`` publishes task messages that way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from flask import Flask, current_app, g, has_app_context
from sqlalchemy import DateTime, MetaData, create_engine, event, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from werkzeug.local import LocalProxy

log = structlog.get_logger(__name__)

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
}


class Base(DeclarativeBase):
    """Declarative base: spec naming convention, UTC timestamps, UUIDs and JSONB by default."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        uuid.UUID: PG_UUID(as_uuid=True),
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        list[str]: JSONB,
    }


def uuid_pk() -> Mapped[uuid.UUID]:
    """Primary key generated in Python (known before flush) with a database default as well."""
    return mapped_column(primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()"))


def created_at_column() -> Mapped[datetime]:
    return mapped_column(nullable=False, server_default=func.now())


def updated_at_column() -> Mapped[datetime]:
    return mapped_column(nullable=False, server_default=func.now(), onupdate=func.now())


class TimestampMixin:
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


# ---- engine and sessions ------------------------------------------------------------------


@dataclass
class DatabaseState:
    engine: Engine
    sessionmaker: sessionmaker[Session]


def make_engine(url: str, *, pool_size: int = 10, role: str = "web") -> Engine:
    # Web requests must fail fast; workers may wait longer (security.md §14).
    statement_ms, lock_ms = (15000, 5000) if role == "web" else (120000, 10000)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=5,
        # A ping per checkout is a round trip on every request; web requests skip it. After a
        # database restart the first request on a dead connection fails (503) and SQLAlchemy
        # then invalidates the whole pool; workers, whose tasks are long, keep the ping.
        pool_pre_ping=role != "web",
        connect_args={
            "connect_timeout": 5,
            "options": f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms} -c timezone=UTC",
        },
    )


def init_app(app: Flask, *, role: str = "web") -> None:
    engine = make_engine(app.config["DATABASE_URL"], pool_size=app.config["DATABASE_POOL_SIZE"], role=role)
    app.extensions["db"] = DatabaseState(engine, sessionmaker(bind=engine, expire_on_commit=False))

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def get_session() -> Session:
    """The session of the current app context (request or task), created on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["db"].sessionmaker()
    session: Session = g.db_session
    return session


session: Session = LocalProxy(get_session)  # type: ignore[assignment]


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` when it does not exist. Returns True if created."""
    target = make_url(url)
    name = target.database
    if not name:
        return False
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    finally:
        admin.dispose()


# ---- work that waits for the commit --------------------------------------------------------

_AFTER_COMMIT = "codex_after_commit"

AfterCommitHandler = Callable[[list[Any]], None]
"""Runs once per commit with every item queued for it; it must not raise for a Redis/broker
failure (the data is committed: log, and let TTLs or sweepers repair)."""


def after_commit(db_session: Session, handler: AfterCommitHandler, *items: Any) -> None:
    """Run ``handler(items)`` once this session's outermost transaction commits; forget the items
    if it rolls back. The one way side effects (task messages, cache evictions) leave a transaction:
    acting earlier could let a worker miss its row or a concurrent reader re-cache the old value."""
    pending: dict[AfterCommitHandler, list[Any]] = db_session.info.setdefault(_AFTER_COMMIT, {})
    pending.setdefault(handler, []).extend(items)


def queued_after_commit(db_session: Session, handler: AfterCommitHandler) -> list[Any]:
    return list(db_session.info.get(_AFTER_COMMIT, {}).get(handler, []))


@event.listens_for(Session, "after_commit")
def _run_after_commit(db_session: Session) -> None:
    if db_session.in_nested_transaction():
        # SQLAlchemy also fires after_commit when a savepoint is released: nothing is committed
        # yet, so the work waits for the outer commit.
        return
    db_session.info.pop(_MARKS, None)
    pending: dict[AfterCommitHandler, list[Any]] | None = db_session.info.pop(_AFTER_COMMIT, None)
    if not pending:
        return
    if not has_app_context():
        log.error("after_commit.skipped", reason="no app context", handlers=[h.__qualname__ for h in pending])
        return
    for handler, items in pending.items():
        handler(items)


_MARKS = "codex_after_commit_marks"


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(db_session: Session, transaction: Any) -> None:
    # A savepoint remembers how much work was queued when it began, so that rolling it back
    # forgets exactly the work queued inside it.
    if transaction.nested:
        pending = db_session.info.get(_AFTER_COMMIT, {})
        db_session.info.setdefault(_MARKS, {})[transaction] = {h: len(items) for h, items in pending.items()}


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_commit(db_session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        db_session.info.pop(_AFTER_COMMIT, None)
        db_session.info.pop(_MARKS, None)
        return
    mark = db_session.info.get(_MARKS, {}).pop(previous_transaction, None)
    pending: dict[AfterCommitHandler, list[Any]] = db_session.info.get(_AFTER_COMMIT, {})
    if mark is None or not pending:
        return
    for handler in list(pending):
        del pending[handler][mark.get(handler, 0) :]
        if not pending[handler]:
            del pending[handler]


# ---- enqueue after commit -----------------------------------------------------------------


@dataclass(frozen=True)
class PendingTask:
    name: str
    args: tuple[Any, ...]
    countdown: float | None = None


def enqueue_after_commit(db_session: Session, task_name: str, *args: Any, countdown: float | None = None) -> None:
    """Publish ``task_name(*args)`` once this session's transaction commits; drop it on rollback.

    Arguments must be JSON-serialisable ids (the durable-job rule: Postgres holds the work).
    """
    after_commit(db_session, _publish, PendingTask(task_name, tuple(args), countdown))


def pending_tasks(db_session: Session) -> list[PendingTask]:
    return queued_after_commit(db_session, _publish)


def _publish(pending: list[PendingTask]) -> None:
    sender = current_app.extensions["task_sender"]
    send_many = getattr(sender, "send_many", None)
    if send_many is not None and len(pending) > 1:
        # One broker round trip for all of them (a purchase queues two emails).
        try:
            send_many([(task.name, task.args, task.countdown) for task in pending])
        except Exception as exc:
            log.warning("task.enqueue_failed", count=len(pending), error=type(exc).__name__)
        return
    for task in pending:
        try:
            sender(task.name, task.args, task.countdown)
        except Exception as exc:
            # The row is committed; its sweeper will pick it up (jobs.md §1).
            log.warning("task.enqueue_failed", task_name=task.name, error=type(exc).__name__)
