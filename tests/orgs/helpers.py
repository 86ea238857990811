"""Invitation rows for tests, built the way the service stores them (hash only) without its checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.identity.models import User
from app.identity.sessions import new_token
from app.orgs.models import Invitation, Organization
from tests import factories


def make_invitation(
    org: Organization,
    invited_by: User,
    *,
    email: str = "invitee@example.com",
    role: str = "creator",
    status: str = "pending",
    expires_in: timedelta = timedelta(days=7),
) -> tuple[Invitation, str]:
    """A flushed invitation and its raw token."""
    token, token_hash = new_token()
    now = datetime.now(UTC)
    invitation = Invitation(
        organization_id=org.id,
        email=email,
        role=role,
        token_hash=token_hash,
        status=status,
        invited_by=invited_by.id,
        expires_at=now + expires_in,
        revoked_at=now if status == "revoked" else None,
    )
    session = factories.current_session()
    session.add(invitation)
    session.flush()
    return invitation, token
