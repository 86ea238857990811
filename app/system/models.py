from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk


class WorkerPing(Base):
    """One ping sent through the broker; the worker stamps it (proves the whole task path)."""

    __tablename__ = "worker_pings"

    id: Mapped[uuid.UUID] = uuid_pk()
    created_at: Mapped[datetime] = created_at_column()
    processed_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
