"""notifications tables (data-model.md): email_outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampMixin, uuid_pk

TEMPLATES = (
    "email-verification",
    "password-reset",
    "password-changed",
    "welcome",
    "purchase-receipt",
    "refund-processed",
    "access-granted",
    "media-ready",
    "media-failed",
    "new-sale",
    "org-invitation",
)
STATUSES = ("queued", "sent", "failed", "dead")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class EmailOutbox(TimestampMixin, Base):
    """One email, committed with the change that causes it; sent by ``email.send``."""

    __tablename__ = "email_outbox"
    __table_args__ = (
        CheckConstraint(f"template IN ({_in(TEMPLATES)})", name="template"),
        CheckConstraint(f"status IN ({_in(STATUSES)})", name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_email_outbox_due", "next_attempt_at", postgresql_where=text("status IN ('queued', 'failed')")),
        Index("ix_email_outbox_org_created", "organization_id", text("created_at DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    template: Mapped[str] = mapped_column(String(40))
    organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id", ondelete="SET NULL"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    recipient: Mapped[str] = mapped_column(String(254))
    context: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"), default=dict)
    status: Mapped[str] = mapped_column(String(10), server_default="queued", default="queued")
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    claimed_at: Mapped[datetime | None]
    subject: Mapped[str | None] = mapped_column(String(255))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    sent_at: Mapped[datetime | None]
