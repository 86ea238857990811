"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from app.db import Base
from app.system.models import WorkerPing

__all__ = ["Base", "WorkerPing"]
