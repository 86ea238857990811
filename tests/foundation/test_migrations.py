"""The migrations and the models describe the same schema (what ``alembic check`` verifies)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from app.db import Base


def test_models_match_the_migrated_database(app: Flask) -> None:
    engine = app.extensions["db"].engine
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], "models and migrations differ; add a revision:\n" + "\n".join(map(str, diff))
