"""``admin_audit_events`` and ``audit.record()``: the one way every module writes it (data-model.md).

Bottom layer: imports no domain, so orgs, commerce and the dashboard all call down to it. The
model sits next to its one writer; the dashboard owns the table's reading (its audit log page)
and imports the model from here. Foreign keys name their tables, not their models.

``record()`` is called inside the business transaction (never commits), so the audit row exists
exactly when the change does. Metadata holds before/after values of changed fields and never secrets.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import g, has_app_context
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.db import Base, created_at_column, uuid_pk

ACTOR_ROLES = ("owner", "admin", "creator", "platform_owner", "system")
AUDIT_ACTIONS = (
    "org.update",
    "member.add",
    "member.role_change",
    "member.remove",
    "ownership.transfer",
    "invitation.create",
    "invitation.revoke",
    "settings.update",
    "settings.logo_update",
    "settings.logo_delete",
    "grant.create",
    "grant.revoke",
    "refund.request",
    "refund.auto_duplicate",
    "payment.mismatch",
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
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'::jsonb"), default=dict)
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_at_column()


def record(
    session: Session,
    *,
    organization_id: uuid.UUID,
    actor_user_id: uuid.UUID | None,
    actor_role: str,
    action: str,
    target_type: str,
    target_id: str | uuid.UUID,
    metadata: dict[str, Any] | None = None,
) -> AdminAuditEvent:
    request_id = g.get("request_id") if has_app_context() else None
    event = AdminAuditEvent(
        organization_id=organization_id,
        actor_user_id=actor_user_id,
        actor_role=actor_role,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        metadata_=metadata or {},
        request_id=request_id,
    )
    session.add(event)
    return event


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``{field: {"before": old, "after": new}}`` for the fields whose value changed."""
    return {
        key: {"before": before.get(key), "after": value} for key, value in after.items() if before.get(key) != value
    }
