"""factory-boy factories. They flush, never commit; the session is bound per test."""

from __future__ import annotations

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy.orm import Session

from app.system.models import WorkerPing

_session: Session | None = None


def bind(session: Session | None) -> None:
    """Point every factory at the test's session (the ``db_session`` fixture does this)."""
    global _session
    _session = session


def current_session() -> Session:
    assert _session is not None, "factories need the db_session fixture"
    return _session


class BaseFactory(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = current_session
        sqlalchemy_session_persistence = "flush"


class WorkerPingFactory(BaseFactory):
    class Meta:
        model = WorkerPing

    worker = factory.Sequence(lambda n: f"worker-{n}")
