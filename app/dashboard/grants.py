"""Complimentary grants (api.md §11): create, revoke. Takes a session, never commits.

Lookups first (404), then the manager check (403), then the business rules (409): README §3.4.
The grant itself is written by ``app.access.grants`` (the one writer of ``content_access``, which
also drops the cached access answer after the commit); this module adds the org's rules, the
audit event and the grantee's email.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import audit, errors
from app.access import grants as access_grants
from app.access.models import ContentAccess
from app.content.models import Content
from app.http import not_found
from app.identity.models import User
from app.notifications.service import content_url, queue_email
from app.orgs.access import OrgAccess, is_staff

ACCESS_GRANTED = "access-granted"


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
    grant = access_grants.grant_complimentary(
        session,
        user_id=user.id,
        content_id=content.id,
        organization_id=content.organization_id,
        granted_by=org.user_id,
    )
    if grant is None:
        raise _already_has_access("The user already has an active grant for this content.")
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
    if not access_grants.revoke_by_admin(session, grant, revoked_by=org.user_id):
        raise not_found("GRANT_NOT_FOUND")  # revoked by someone else between our read and our update
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
    return grant
