"""dashboard tables (data-model.md): admin_audit_events (append-only)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk

ACTOR_ROLES = ("owner", "admin", "creator", "platform_owner", "system")
AUDIT_ACTIONS = (
    "org.update",
    "member.add",
    "member.role_change",
    "member.remove",
    "ownership.transfer",
    "settings.update",
    "settings.logo_update",
    "settings.logo_delete",
    "grant.create",
    "grant.revoke",
    "refund.request",
    "refund.auto_duplicate",
)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class AdminAuditEvent(Base):
    """Who did what to an org; written in the same transaction as the change it records."""

    __tablename__ = "admin_audit_events"
    __table_args__ = (
        CheckConstraint(f"actor_role IN ({_in(ACTOR_ROLES)})", name="actor_role"),
        CheckConstraint(f"action IN ({_in(AUDIT_ACTIONS)})", name="action"),
        Index("ix_admin_audit_events_org_created", "organization_id", text("created_at DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str] = mapped_column(String(30))
    target_id: Mapped[str] = mapped_column(String(255))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", server_default=text("'{}'::jsonb"), default=dict
    )
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_at_column()
