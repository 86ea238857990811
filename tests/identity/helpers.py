"""Helpers for tests that need signed-in callers and organizations (reusable by other domains).

``signed_in(user)`` inserts a session row directly (no login round trip) and returns its token;
``auth(token)`` is the matching Bearer header. ``make_org(owner)`` builds an org with its owner
membership and settings row; ``add_member`` adds another.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.identity.models import AuthSession, User
from app.identity.sessions import new_token
from app.orgs.models import Membership, Organization
from tests import factories

# Cheap argon2id parameters for tests; the hash of TEST_PASSWORD in factories uses the same ones.
FAST_HASHER_PARAMS = {"time_cost": 1, "memory_cost": 8, "parallelism": 1, "hash_len": 16, "salt_len": 16}
TEST_PASSWORD = factories.TEST_PASSWORD
ORIGIN = "http://localhost:3000"  # in the default CORS_ORIGINS


def fast_hasher() -> PasswordHasher:
    return PasswordHasher(**FAST_HASHER_PARAMS)  # type: ignore[arg-type]


def make_user(**kwargs: Any) -> User:
    """A user with credentials for TEST_PASSWORD."""
    user: User = factories.AccountFactory(**kwargs)
    return user


def signed_in(
    user: User,
    *,
    remember_me: bool = False,
    last_seen_ago: timedelta = timedelta(0),
    expires_in: timedelta = timedelta(hours=24),
    revoked: bool = False,
) -> str:
    """Insert an active session for ``user`` and return its token."""
    token, token_hash = new_token()
    now = datetime.now(UTC)
    factories.AuthSessionFactory(
        user_id=user.id,
        token_hash=token_hash,
        remember_me=remember_me,
        last_seen_at=now - last_seen_ago,
        expires_at=now + expires_in,
        revoked_at=now if revoked else None,
    )
    return token


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def make_org(owner: User | None = None, **kwargs: Any) -> Organization:
    owner = owner or make_user()
    org: Organization = factories.OrganizationFactory(created_by=owner.id, **kwargs)
    factories.MembershipFactory(organization_id=org.id, user_id=owner.id, role="owner")
    return org


def add_member(org: Organization, user: User | None = None, role: str = "creator") -> User:
    user = user or make_user()
    factories.MembershipFactory(organization_id=org.id, user_id=user.id, role=role)
    return user


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def session_row(session: Session, session_id: uuid.UUID | str) -> AuthSession:
    session.expire_all()
    row = session.get(AuthSession, uuid.UUID(str(session_id)))
    assert row is not None
    return row


def membership_role(session: Session, org: Organization, user: User) -> str | None:
    session.expire_all()
    return session.scalar(
        select(Membership.role).where(Membership.organization_id == org.id, Membership.user_id == user.id)
    )
