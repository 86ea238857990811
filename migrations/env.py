"""Alembic environment: URL from ``DATABASE_URL`` (or ``-x url=…``), metadata from every model.

``DATABASE_URL`` is read the way the app reads it: from the environment, and in development from
a ``.env`` file in the working directory for what the environment does not set.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from app.config import Config, load_dotenv
from app.db import ensure_database
from app.models import Base

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    override = context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url")
    if override:
        return str(override)
    load_dotenv()  # like create_app: a developer's .env applies to `alembic upgrade` too
    return Config.from_env().DATABASE_URL


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    ensure_database(url)  # a fresh machine has no ``codex`` database yet
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
