"""Complimentary grants (api.md §11): create, revoke. Takes a session, never commits.

Lookups first (404), then the manager check (403), then the business rules (409): README §3.4.
A grant row is unique per (user, content); granting again reactivates a revoked row in one
``INSERT … ON CONFLICT DO UPDATE … WHERE revoked_at IS NOT NULL`` so two concurrent grants
cannot both succeed. Each change writes its audit event and, after the commit, drops the
cached access answer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app import errors
from app.access.cache import invalidate_access_after_commit
from app.access.models import ContentAccess
from app.content.models import Content
from app.dashboard import audit
from app.http import not_found
from app.identity.models import User
from app.notifications.service import content_url, queue_email
from app.orgs.access import OrgAccess, is_staff

ACCESS_GRANTED = "access-granted"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _already_has_access(message: str) -> errors.Conflict:
    return errors.Conflict(message, code="ALREADY_HAS_ACCESS")


def create_grant(session: Session, org: OrgAccess, user_id: uuid.UUID, content_id: uuid.UUID) -> ContentAccess:
    """A complimentary grant for ``user_id`` on org content; emails the grantee."""
    user = session.get(User, user_id)
    if user is None:
        raise not_found("USER_NOT_FOUND")
    content = session.scalar(
        select(Content).where(
            Content.id == content_id,
            Content.organization_id == org.organization_id,
            Content.deleted_at.is_(None),
        )
    )
    if content is None:
        raise not_found("CONTENT_NOT_FOUND")
    org.require("admin")
    if is_staff(session, user, org.organization_id):
        raise _already_has_access("Staff of the organization already have access to its content.")
    now = utcnow()
    values = {
        "source": "complimentary",
        "purchase_id": None,
        "granted_by": org.user_id,
        "granted_at": now,
        "revoked_at": None,
        "revoke_reason": None,
        "revoked_by": None,
        "updated_at": now,
    }
    insert = pg_insert(ContentAccess).values(
        user_id=user.id, content_id=content.id, organization_id=content.organization_id, **values
    )
    stmt = insert.on_conflict_do_update(
        constraint="uq_content_access_user_id_content_id",
        set_=values,
        where=ContentAccess.revoked_at.is_not(None),
    ).returning(ContentAccess.id)
    grant_id = session.execute(stmt).scalar_one_or_none()
    if grant_id is None:
        raise _already_has_access("The user already has an active grant for this content.")
    grant = session.execute(
        select(ContentAccess).where(ContentAccess.id == grant_id).execution_options(populate_existing=True)
    ).scalar_one()
    audit.record(
        session,
        organization_id=org.organization_id,
        actor_user_id=org.user_id,
        actor_role=org.actor_role,
        action="grant.create",
        target_type="grant",
        target_id=grant.id,
        metadata={"user_id": str(user.id), "content_id": str(content.id), "source": "complimentary"},
    )
    queue_email(
        session,
        ACCESS_GRANTED,
        user.email,
        user.id,
        org.organization_id,
        {
            "content_title": content.title,
            "content_url": content_url(org.organization.slug, content.slug),
            "granted_by_name": _caller_name(session, org),
        },
        dedupe_key=f"{ACCESS_GRANTED}:{grant.id}:{int(grant.granted_at.timestamp())}",
    )
    invalidate_access_after_commit(session, user.id, content.id)
    return grant


def _caller_name(session: Session, org: OrgAccess) -> str:
    return session.scalar(select(User.name).where(User.id == org.user_id)) or ""


def revoke_grant(session: Session, org: OrgAccess, user_id: uuid.UUID, content_id: uuid.UUID) -> ContentAccess:
    """Revoke the active grant (any source; purchases stay as they are)."""
    grant = session.scalar(
        select(ContentAccess).where(
            ContentAccess.organization_id == org.organization_id,
            ContentAccess.user_id == user_id,
            ContentAccess.content_id == content_id,
            ContentAccess.revoked_at.is_(None),
        )
    )
    if grant is None:
        raise not_found("GRANT_NOT_FOUND")
    org.require("admin")
    now = utcnow()
    revoked = session.execute(
        update(ContentAccess)
        .where(ContentAccess.id == grant.id, ContentAccess.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason="admin", revoked_by=org.user_id, updated_at=now)
        .returning(ContentAccess.id)
        .execution_options(synchronize_session=False)
    ).first()
    if revoked is None:  # revoked by someone else between our read and our update
        raise not_found("GRANT_NOT_FOUND")
    session.refresh(grant)
    audit.record(
        session,
        organization_id=org.organization_id,
        actor_user_id=org.user_id,
        actor_role=org.actor_role,
        action="grant.revoke",
        target_type="grant",
        target_id=grant.id,
        metadata={
            "user_id": str(user_id),
            "content_id": str(content_id),
            "source": grant.source,
            "purchase_id": str(grant.purchase_id) if grant.purchase_id else None,
        },
    )
    invalidate_access_after_commit(session, user_id, content_id)
    return grant
