"""``audit.record()``: the one way every module writes ``admin_audit_events``.

Called inside the business transaction (never commits), so the audit row exists exactly when
the change does. Metadata holds before/after values of changed fields and never secrets.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import g, has_app_context
from sqlalchemy.orm import Session

from app.dashboard.models import AdminAuditEvent


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
