"""Test harness: real Postgres, Redis, SMTP (aiosmtpd), S3 (moto server) and Celery.

- One database per run (per xdist worker), created fresh and migrated once with Alembic.
- Each test runs inside a transaction that is rolled back; the app's own commits become
  savepoints (SQLAlchemy's ``join_transaction_mode="create_savepoint"``).
- Redis: a pair of DB indexes per test process (cache, broker), claimed with a lock file so
  concurrent runs on one machine never share one, flushed for every test.
- ``committed_db`` + ``celery_worker`` for end-to-end tests where a real worker thread must see
  committed rows; tables are truncated afterwards.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import app.models
from app import create_app
from app.db import Base, DatabaseState

ROOT = Path(__file__).resolve().parent.parent


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def _base_urls() -> tuple[str, str]:
    db = os.environ.get("DATABASE_URL", "postgresql+psycopg://localhost:5432/codex")
    rd = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    return db, rd


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _drop_stale_test_databases(conn: Any) -> None:
    """Remove databases left by runs that were killed (their process no longer exists)."""
    names = conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE 'codex_test_%'")).scalars()
    for stale in list(names):
        pid = stale.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            conn.execute(text(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    base, _ = _base_urls()
    # Unique per process, so parallel runs (xdist workers, two checkouts) never share a database.
    name = f"codex_test_{_worker_index()}_{os.getpid()}"
    url = make_url(base).set(database=name)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        _drop_stale_test_databases(conn)
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    rendered = url.render_as_string(hide_password=False)
    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = rendered
    cfg.attributes["skip_logging"] = True
    command.upgrade(cfg, "head")
    yield rendered
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _claim_redis_pair(host: str, port: int) -> tuple[int, Any]:
    """Pick a pair of Redis databases no other test process on this machine is using.

    Tests flush their databases, so two concurrent runs (xdist workers, two checkouts, a
    developer's run next to CI) must never share one. A pair is owned while this process
    holds an flock on its lock file; the kernel releases it when the process dies.
    """
    deadline = time.monotonic() + 600
    while True:
        for pair in range(1, 5):  # databases 2..9: 0-1 are `make run`'s, 10-15 the benchmarks'
            lock = open(Path(tempfile.gettempdir()) / f"codex-test-redis-{host}-{port}-{pair}.lock", "w")  # noqa: SIM115
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            return pair, lock
        if time.monotonic() > deadline:
            raise RuntimeError("no free Redis database pair for tests (4 test processes already running?)")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def redis_urls() -> Iterator[tuple[str, str]]:
    _, base = _base_urls()
    url = make_url(base.replace("redis://", "postgresql://", 1))  # reuse the URL parser for host/port
    host, port = url.host or "localhost", url.port or 6379
    pair, lock = _claim_redis_pair(host, port)
    yield f"redis://{host}:{port}/{2 * pair}", f"redis://{host}:{port}/{2 * pair + 1}"
    lock.close()


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("storage")


def test_config(database_url: str, redis_urls: tuple[str, str], storage_root: Path, **extra: Any) -> dict[str, Any]:
    cache, broker = redis_urls
    return {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "DATABASE_POOL_SIZE": 5,
        "REDIS_URL": cache,
        "CELERY_BROKER_URL": broker,
        "RATELIMIT_ENABLED": False,
        "MAIL_BACKEND": "memory",
        "STORAGE_BACKEND": "local",
        "STORAGE_LOCAL_ROOT": str(storage_root),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


@pytest.fixture(scope="session")
def app_factory(database_url: str, redis_urls: tuple[str, str], storage_root: Path) -> Iterator[Any]:
    """Build an extra app with config overrides (e.g. rate limiting on, s3 storage)."""

    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        flask_app = create_app(test_config(database_url, redis_urls, storage_root, **overrides))
        apps.append(flask_app)
        return flask_app

    yield make
    for flask_app in apps:
        flask_app.extensions["db"].engine.dispose()
        flask_app.extensions["redis"].close()
        flask_app.extensions["broker_redis"].close()
        if flask_app.extensions["near_cache"] is not None:
            flask_app.extensions["near_cache"].close()


@pytest.fixture(scope="session")
def app(app_factory: Any) -> Flask:
    flask_app = app_factory()
    # Listening before the first test, so every test runs the warm path production runs (a near
    # cache that is still connecting only makes lookups miss).
    assert flask_app.extensions["near_cache"].wait_usable(5.0)
    return flask_app


@pytest.fixture()
def as_other_process(app: Flask) -> Iterator[Any]:
    """``with as_other_process():`` runs requests as another web process would: with a near cache
    of its own (app/speed/nearcache.py), so that what one process changes must reach the other's."""
    from app.speed.nearcache import NearCache

    mine = app.extensions["near_cache"]
    theirs = NearCache(mine.url, mine.prefixes)
    assert theirs.wait_usable(5.0)

    @contextmanager
    def switch() -> Iterator[NearCache]:
        app.extensions["near_cache"] = theirs
        try:
            yield theirs
        finally:
            app.extensions["near_cache"] = mine

    yield switch
    theirs.close()


def clear_redis(client: redis_lib.Redis) -> None:
    """Empty ``client``'s database key by key. Not FLUSHDB: Redis reports a flush of any database
    to every near cache (app/speed/nearcache.py tracks key prefixes in all of them), so one xdist
    worker's flush between its tests would empty the other worker's near caches mid-test and a
    test that checks a warm request (no Redis call) would see a cold one. A deleted key is reported
    by name, and no two workers share key names (ids and tokens are random)."""
    batch = list(client.scan_iter(count=1000))
    for start in range(0, len(batch), 1000):
        client.unlink(*batch[start : start + 1000])


@pytest.fixture()
def redis(app: Flask) -> Iterator[redis_lib.Redis]:
    cache: redis_lib.Redis = app.extensions["redis"]
    broker: redis_lib.Redis = app.extensions["broker_redis"]
    clear_redis(cache)
    clear_redis(broker)
    yield cache
    clear_redis(cache)
    clear_redis(broker)


def _bind_sessions(flask_app: Flask, bind: Any, **kwargs: Any) -> sessionmaker[Session]:
    state: DatabaseState = flask_app.extensions["db"]
    original = state.sessionmaker
    state.sessionmaker = sessionmaker(bind=bind, expire_on_commit=False, **kwargs)
    return original


@pytest.fixture()
def db_session(app: Flask, redis: redis_lib.Redis) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back after the test."""
    state: DatabaseState = app.extensions["db"]
    connection = state.engine.connect()
    outer = connection.begin()
    original = _bind_sessions(app, connection, join_transaction_mode="create_savepoint")
    session = state.sessionmaker()
    from tests import factories

    factories.bind(session)
    try:
        yield session
    finally:
        factories.bind(None)
        session.close()
        state.sessionmaker = original
        outer.rollback()
        connection.close()


@pytest.fixture()
def client(app: Flask, db_session: Session) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def sent_tasks(app: Flask) -> Iterator[list[tuple[str, tuple[Any, ...], float | None]]]:
    """Record what ``enqueue_after_commit`` publishes instead of sending it to the broker."""
    sent: list[tuple[str, tuple[Any, ...], float | None]] = []
    original = app.extensions["task_sender"]
    app.extensions["task_sender"] = lambda name, args, countdown: sent.append((name, args, countdown))
    yield sent
    app.extensions["task_sender"] = original


def _truncate_all(flask_app: Flask) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    if not tables:
        return
    with flask_app.extensions["db"].engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture()
def committed_db(app: Flask, redis: redis_lib.Redis) -> Iterator[Flask]:
    """Real commits (for tests with a worker thread or several connections); truncates after."""
    _truncate_all(app)
    yield app
    _truncate_all(app)


@contextmanager
def running_worker(flask_app: Flask) -> Iterator[Any]:
    """A real Celery worker (thread pool) of ``flask_app`` consuming every queue from the test broker."""
    from celery.contrib.testing.worker import start_worker

    import tasks.worker  # noqa: F401 - registers every task module
    from app.jobs import QUEUES

    celery_app = flask_app.extensions["celery"]
    celery_app.loader.import_default_modules()
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=list(QUEUES),
        shutdown_timeout=10,
        loglevel="WARNING",
    ) as worker:
        yield worker


@pytest.fixture()
def celery_worker(committed_db: Flask) -> Iterator[Any]:
    """A real Celery worker (thread pool) consuming every queue from the test broker."""
    with running_worker(committed_db) as worker:
        yield worker


# ---- real edge services -----------------------------------------------------------------


class SmtpSink:
    """aiosmtpd handler that keeps every accepted message; ``fail_with`` makes it refuse."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.fail_with: str | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_with:
            return self.fail_with
        from email import message_from_bytes, policy

        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture()
def smtp_server() -> Iterator[Any]:
    """A real SMTP server on a free local port; ``.handler.messages`` holds what it accepted."""
    from aiosmtpd.controller import Controller

    handler = SmtpSink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 in server mode (real HTTP on a local port); yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
