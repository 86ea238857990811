"""Fixtures of the email pipeline tests: app contexts whose after-commit messages are recorded.

``mail_app`` is the default app (memory backend); ``smtp_app`` is a second app whose backend
talks to the real aiosmtpd server of ``smtp_server``. Both run against ``db_session`` (the
per-test rolled-back transaction): the service and task functions take the session as an
argument, so only configuration and the task sender come from the pushed app.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

Sent = list[tuple[str, tuple[Any, ...], float | None]]


@dataclass
class MailContext:
    app: Flask
    session: Session
    sent: Sent = field(default_factory=list)

    def send_ids(self) -> list[str]:
        """Outbox ids of the ``email.send`` messages published so far (and forget them)."""
        ids = [args[0] for name, args, _ in self.sent if name == "email.send"]
        self.sent.clear()
        return ids


@contextmanager
def _pushed(flask_app: Flask, session: Session) -> Iterator[MailContext]:
    ctx = MailContext(flask_app, session)
    original = flask_app.extensions["task_sender"]
    flask_app.extensions["task_sender"] = lambda name, args, countdown: ctx.sent.append((name, args, countdown))
    flask_app.extensions.setdefault("mail_memory", []).clear()
    try:
        with flask_app.app_context():
            yield ctx
    finally:
        flask_app.extensions["task_sender"] = original
        close_mail_connections(flask_app)


def close_mail_connections(flask_app: Flask) -> None:
    """Close the SMTP connections the app's backend keeps open between messages."""
    backend = flask_app.extensions.get("mail_backend")
    if backend is not None:
        backend.close_all()


@pytest.fixture()
def mail_app(app: Flask, db_session: Session) -> Iterator[MailContext]:
    """The default app (``MAIL_BACKEND=memory``) pushed, with after-commit messages recorded."""
    with _pushed(app, db_session) as ctx:
        yield ctx


@pytest.fixture()
def make_mail_app(app_factory: Any, db_session: Session) -> Iterator[Callable[..., MailContext]]:
    """Push a fresh app built with config overrides (e.g. another MAIL_BACKEND)."""
    stack: list[Any] = []

    def make(**overrides: Any) -> MailContext:
        cm = _pushed(app_factory(**overrides), db_session)
        stack.append(cm)
        return cm.__enter__()

    yield make
    while stack:
        stack.pop().__exit__(None, None, None)


@pytest.fixture()
def smtp_app(make_mail_app: Callable[..., MailContext], smtp_server: Any) -> MailContext:
    """An app whose backend is SMTP to the real aiosmtpd sink of ``smtp_server``."""
    return make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER=smtp_server.hostname, MAIL_PORT=smtp_server.port)


@contextmanager
def _capture_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    original_stream = handler.setStream(buffer)
    original_level = root.level
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        handler.setStream(original_stream)
        root.setLevel(original_level)


@pytest.fixture()
def capture_logs() -> Callable[[], Any]:
    """``with capture_logs() as buffer:`` collects what the root handler writes (INFO and up).

    A context manager rather than a fixture value because building an app replaces the root
    handler: enter it after the apps the test needs exist.
    """
    return _capture_logs
