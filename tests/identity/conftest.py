"""Identity/orgs test fixtures: cheap password hashing, recorded tasks, a rate-limited app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.identity import passwords
from tests.identity.helpers import fast_hasher


@pytest.fixture(autouse=True)
def fast_passwords() -> Iterator[None]:
    """argon2id with tiny parameters (the production ones cost ~100 ms per hash)."""
    previous = passwords.use_hasher(fast_hasher())
    yield
    passwords.use_hasher(previous)


@pytest.fixture(autouse=True)
def recorded_tasks(
    sent_tasks: list[tuple[str, tuple[Any, ...], float | None]],
) -> list[tuple[str, tuple[Any, ...], float | None]]:
    """Tasks published after commit (email.send, storage.delete_object) are recorded, not sent."""
    return sent_tasks


@pytest.fixture(scope="session")
def limited_app(app_factory: Any) -> Flask:
    """The app with rate limiting on (off in the default test app)."""
    flask_app: Flask = app_factory(RATELIMIT_ENABLED=True)
    return flask_app


@contextmanager
def bound_client(flask_app: Flask, db_session: Session) -> Iterator[FlaskClient]:
    """A client of another app built by ``app_factory``, inside the per-test rolled-back transaction."""
    from tests.conftest import _bind_sessions, clear_redis

    state = flask_app.extensions["db"]
    original = _bind_sessions(flask_app, db_session.connection(), join_transaction_mode="create_savepoint")
    original_sender = flask_app.extensions["task_sender"]
    flask_app.extensions["task_sender"] = lambda name, args, countdown: None
    clear_redis(flask_app.extensions["redis"])
    try:
        yield flask_app.test_client()
    finally:
        state.sessionmaker = original
        flask_app.extensions["task_sender"] = original_sender
        clear_redis(flask_app.extensions["redis"])


@pytest.fixture()
def limited_client(limited_app: Flask, db_session: Session) -> Iterator[FlaskClient]:
    """A client of ``limited_app`` (rate limits on)."""
    with bound_client(limited_app, db_session) as test_client:
        yield test_client
