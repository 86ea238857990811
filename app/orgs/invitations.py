"""Invitations: the only way staff join an organization (api.md §4, security.md §1).

A manager invites an email address; the token travels only to that mailbox (``org-invitation``),
and only someone signed in with that address *verified* can accept it. Registering a victim's
address first (it stays unverified) therefore gains nothing, and the manager's answer is the
same whether or not an account exists for the address: no account is looked up by it, and the
outbox row carries no ``user_id`` (the org's email log shows it).

Tokens are 32 random bytes (URL-safe), stored only as SHA-256, single use, valid 7 days.
``expired`` is not stored: it is a ``pending`` row past ``expires_at``. Changes lock the
organization row first, like membership changes (``service.lock_org``), so replacing,
revoking and accepting invitations of one org run one after the other and the one-pending rule
(``ux_invitations_pending``) is never hit as a database error. Takes a session, never commits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from app import audit, errors
from app.http import not_found
from app.identity.access_entries import drop_user_access_after_commit
from app.identity.models import User
from app.identity.sessions import hash_token, new_token
from app.notifications.service import invitation_accept_url, queue_email
from app.orgs.access import OrgAccess
from app.orgs.models import Invitation, Membership, Organization
from app.orgs.service import lock_org, member_view
from app.schemas import paginate

INVITATION_TTL = timedelta(days=7)
ORG_INVITATION = "org-invitation"
INVITATION_NOT_FOUND = "INVITATION_NOT_FOUND"


def utcnow() -> datetime:
    return datetime.now(UTC)


def status_of(invitation: Invitation, now: datetime) -> str:
    if invitation.status == "pending" and invitation.expires_at <= now:
        return "expired"
    return invitation.status


def invitation_view(invitation: Invitation, now: datetime | None = None) -> dict[str, Any]:
    return {
        "id": invitation.id,
        "organization_id": invitation.organization_id,
        "email": invitation.email,
        "role": invitation.role,
        "status": status_of(invitation, now or utcnow()),
        "invited_by": invitation.invited_by,
        "expires_at": invitation.expires_at,
        "accepted_at": invitation.accepted_at,
        "created_at": invitation.created_at,
    }


def email_hint(email: str) -> str:
    """``c***@example.com``: enough for the invitee to recognise the address, not to learn it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _already_member() -> errors.Conflict:
    return errors.Conflict("This email address belongs to a member of the organization.", code="ALREADY_MEMBER")


# ---- managers ---------------------------------------------------------------------------------


def create_invitation(session: Session, access: OrgAccess, *, email: str, role: str) -> tuple[Invitation, str]:
    """Invite ``email`` (lower-case) as ``admin`` or ``creator``; returns the row and its raw token.

    A pending invitation of the same org and email is revoked first (its token stops working).
    Queues ``org-invitation`` to the address; audit ``invitation.create``.
    """
    access.require("admin")
    email = email.lower()
    org = access.organization
    lock_org(session, org.id)
    is_member = session.scalar(
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == org.id, User.email == email)
    )
    if is_member is not None:
        raise _already_member()
    now = utcnow()
    replaced = session.scalar(
        update(Invitation)
        .where(Invitation.organization_id == org.id, Invitation.email == email, Invitation.status == "pending")
        .values(status="revoked", revoked_at=now, updated_at=now)
        .returning(Invitation.id)
    )
    token, token_hash = new_token()
    invitation = Invitation(
        organization_id=org.id,
        email=email,
        role=role,
        token_hash=token_hash,
        status="pending",
        invited_by=access.user_id,
        expires_at=now + INVITATION_TTL,
        created_at=now,
        updated_at=now,
    )
    session.add(invitation)
    session.flush()
    audit.record(
        session,
        organization_id=org.id,
        actor_user_id=access.user_id,
        actor_role=access.actor_role,
        action="invitation.create",
        target_type="invitation",
        target_id=invitation.id,
        metadata={
            "email": email,
            "role": role,
            "replaced_invitation_id": str(replaced) if replaced is not None else None,
        },
    )
    inviter = session.scalar(select(User.name).where(User.id == access.user_id)) or ""
    queue_email(
        session,
        ORG_INVITATION,
        email,
        None,  # never the account of the address: the email log would tell the manager it exists
        org.id,
        {
            "organization_name": org.name,
            "role": role,
            "invited_by_name": inviter,
            "accept_url": invitation_accept_url(token),
            "expires_at": invitation.expires_at,
        },
        f"{ORG_INVITATION}:{invitation.id}",
    )
    session.flush()
    return invitation, token


def list_invitations(
    session: Session, org_id: uuid.UUID, *, status: str | None, page: int, per_page: int
) -> dict[str, Any]:
    """The org's invitations, newest first (``ix_invitations_org_created``); ``status`` may be ``expired``."""
    now = utcnow()
    stmt = select(Invitation).where(Invitation.organization_id == org_id)
    if status == "expired":
        stmt = stmt.where(Invitation.status == "pending", Invitation.expires_at <= now)
    elif status == "pending":
        stmt = stmt.where(Invitation.status == "pending", Invitation.expires_at > now)
    elif status is not None:
        stmt = stmt.where(Invitation.status == status)
    stmt = stmt.order_by(Invitation.created_at.desc(), Invitation.id.desc())
    envelope = paginate(session, cast("Select[Any]", stmt), page, per_page)
    envelope["items"] = [invitation_view(invitation, now) for invitation in envelope["items"]]
    return envelope


def revoke_invitation(session: Session, access: OrgAccess, invitation_id: uuid.UUID) -> Invitation:
    """Revoke a pending invitation of this org; 409 ``STATE_CONFLICT`` once accepted, revoked or expired."""
    lock_org(session, access.organization_id)
    invitation = session.scalar(
        select(Invitation)
        .where(Invitation.id == invitation_id, Invitation.organization_id == access.organization_id)
        .with_for_update()
    )
    if invitation is None:
        raise not_found(INVITATION_NOT_FOUND)
    access.require("admin")
    now = utcnow()
    status = status_of(invitation, now)
    if status != "pending":
        raise errors.Conflict(f"The invitation is {status}; only a pending invitation can be revoked.")
    invitation.status = "revoked"
    invitation.revoked_at = now
    audit.record(
        session,
        organization_id=access.organization_id,
        actor_user_id=access.user_id,
        actor_role=access.actor_role,
        action="invitation.revoke",
        target_type="invitation",
        target_id=invitation.id,
        metadata={"email": invitation.email, "role": invitation.role},
    )
    session.flush()
    return invitation


# ---- the invitee ------------------------------------------------------------------------------


def _open_invitation(session: Session, token: str, *, lock: bool = False) -> Invitation:
    """The pending, unexpired invitation of ``token``; 404 for unknown, used, revoked or expired."""
    stmt = select(Invitation).where(Invitation.token_hash == hash_token(token))
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    invitation = session.scalar(stmt)
    if invitation is None or status_of(invitation, utcnow()) != "pending":
        raise not_found(INVITATION_NOT_FOUND)
    return invitation


def lookup(session: Session, token: str) -> dict[str, Any]:
    """What the accept page shows before sign-in: the org, the role and a hint of the address."""
    invitation = _open_invitation(session, token)
    org = session.get(Organization, invitation.organization_id)
    assert org is not None  # the FK cascades: no invitation outlives its org
    return {
        "organization_name": org.name,
        "organization_slug": org.slug,
        "role": invitation.role,
        "email_hint": email_hint(invitation.email),
        "expires_at": invitation.expires_at,
    }


def accept(session: Session, user: User, token: str) -> dict[str, Any]:
    """Make ``user`` a member with the invited role, if its *verified* email is the invited one.

    Checks, in order: 404 ``INVITATION_NOT_FOUND`` (unknown, used, revoked, expired), 403
    ``EMAIL_NOT_VERIFIED``, 403 ``INVITATION_EMAIL_MISMATCH``, 409 ``ALREADY_MEMBER``. Audit
    ``member.add`` with the new member as the actor.
    """
    org_id = _open_invitation(session, token).organization_id
    lock_org(session, org_id)
    # Read again under the locks: a concurrent accept, revoke or replacement has finished by now.
    invitation = _open_invitation(session, token, lock=True)
    if not user.email_verified:
        raise errors.Forbidden("Verify your email address before accepting an invitation.", code="EMAIL_NOT_VERIFIED")
    if user.email.lower() != invitation.email.lower():
        raise errors.Forbidden(
            "This invitation was sent to another email address; sign in with that address to accept it.",
            code="INVITATION_EMAIL_MISMATCH",
        )
    if session.scalar(select(Membership.id).where(Membership.organization_id == org_id, Membership.user_id == user.id)):
        raise errors.Conflict("You are already a member of this organization.", code="ALREADY_MEMBER")
    now = utcnow()
    membership = Membership(organization_id=org_id, user_id=user.id, role=invitation.role)
    session.add(membership)
    drop_user_access_after_commit(session, user.id)  # cached answers for the org's content now say staff
    invitation.status = "accepted"
    invitation.accepted_at = now
    invitation.accepted_by = user.id
    session.flush()
    audit.record(
        session,
        organization_id=org_id,
        actor_user_id=user.id,
        actor_role=invitation.role,
        action="member.add",
        target_type="membership",
        target_id=user.id,
        metadata={
            "user_id": str(user.id),
            "role": invitation.role,
            "invited_by": str(invitation.invited_by),
            "invitation_id": str(invitation.id),
        },
    )
    session.flush()
    session.refresh(membership)
    return {**member_view(membership, user), "organization_id": org_id}
