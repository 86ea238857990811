"""Accounts, login sessions and one-time tokens (api.md §3, security.md §1-§2).

Every function takes the request's session, adds and flushes, and raises ``AppError``s; the route
commits. Session-cache evictions are attached to the session and run after its commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from flask import jsonify
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import errors
from app.http import not_found
from app.identity import me_cache, passwords
from app.identity.access_entries import drop_user_access_after_commit
from app.identity.models import AuthSession, Credential, User, VerificationToken
from app.identity.schemas import MeSchema
from app.identity.sessions import Prefetched, evict_after_commit, hash_token, new_token, session_lifetime, utcnow
from app.notifications.service import login_url, queue_email, reset_password_url, verify_email_url
from app.schemas import paginate

log = structlog.get_logger(__name__)

EMAIL_VERIFICATION = "email_verification"
PASSWORD_RESET = "password_reset"  # noqa: S105 - a token purpose, not a secret
TOKEN_LIFETIMES = {EMAIL_VERIFICATION: timedelta(hours=24), PASSWORD_RESET: timedelta(hours=1)}
USER_AGENT_MAX = 255
IP_MAX = 45


# ---- what identity asks of organizations ------------------------------------------------------
# app.orgs sits above identity: it imports identity, never the reverse. Two answers here need its
# tables all the same (sign-up through an organization, the memberships of the Me object), so
# app.orgs hands them over at start-up (``create_app`` calls ``app.orgs.for_identity.supply``).


@dataclass(frozen=True)
class FromOrgs:
    signup_organization: Callable[[Session, str], uuid.UUID]
    """The id of the organization a customer signs up through, by slug; 404 ``ORG_NOT_FOUND``,
    403 ``SIGNUPS_DISABLED``."""
    me_view: Callable[[Session, uuid.UUID], dict[str, Any] | None]
    """The Me object (``MeSchema``): the user's columns and its memberships; None when there is
    no such user."""


_from_orgs: FromOrgs | None = None


def use_orgs(supplied: FromOrgs) -> None:
    global _from_orgs
    _from_orgs = supplied


def _orgs() -> FromOrgs:
    if _from_orgs is None:
        raise RuntimeError("app.orgs has not supplied identity's organization answers (create_app does)")
    return _from_orgs


# ---- users ----------------------------------------------------------------------------------


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.lower()))


def user_name(session: Session, user_id: uuid.UUID) -> str | None:
    """The user's display name, None when the user is gone (the lookup emails use for ``user_name``)."""
    return session.scalar(select(User.name).where(User.id == user_id))


def create_user(
    session: Session,
    *,
    email: str,
    password: str,
    name: str,
    role: str = "customer",
    verified_at: datetime | None = None,
    signup_organization_id: uuid.UUID | None = None,
) -> User:
    """Insert a user and its credentials; 409 ``EMAIL_TAKEN`` when the address has an account."""
    email = email.lower()
    if get_user_by_email(session, email) is not None:
        raise errors.Conflict("An account with this email already exists.", code="EMAIL_TAKEN")
    user = User(
        email=email,
        name=name,
        role=role,
        email_verified_at=verified_at,
        signup_organization_id=signup_organization_id,
    )
    session.add(user)
    try:
        # A savepoint, so a concurrent registration of the same address is a clean 409.
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise errors.Conflict("An account with this email already exists.", code="EMAIL_TAKEN") from None
    session.add(Credential(user_id=user.id, password_hash=passwords.hash_password(password)))
    session.flush()
    return user


def register(session: Session, *, email: str, password: str, name: str, org_slug: str | None) -> User:
    """Create a customer account, issue an email-verification token and queue its email."""
    signup_org_id = _orgs().signup_organization(session, org_slug) if org_slug is not None else None
    user = create_user(session, email=email, password=password, name=name, signup_organization_id=signup_org_id)
    _send_verification(session, user)
    return user


_ME_SCHEMA = MeSchema()


def me_body(session: Session, user_id: uuid.UUID, prefetched: Prefetched) -> bytes | None:
    """The JSON body of ``GET /auth/me``: from the ``me:{user_id}`` cache while it is current
    (``prefetched``: read with the session), else built from Postgres (one query) and cached.
    None when the user no longer exists."""
    cached = me_cache.lookup(user_id, prefetched)
    if cached.body is not None:
        return cached.body
    view = _orgs().me_view(session, user_id)
    if view is None:
        return None
    # Exactly what flask-smorest would send for the MeSchema response.
    body = jsonify(_ME_SCHEMA.dump(view)).get_data()
    me_cache.store(user_id, cached.generation, body)
    return body


# ---- one-time tokens --------------------------------------------------------------------------


def issue_token(session: Session, user_id: uuid.UUID, purpose: str) -> tuple[VerificationToken, str]:
    """A new single-use token; the user's other unconsumed tokens of this purpose are deleted."""
    session.execute(
        delete(VerificationToken).where(
            VerificationToken.user_id == user_id,
            VerificationToken.purpose == purpose,
            VerificationToken.consumed_at.is_(None),
        )
    )
    raw, token_hash = new_token()
    row = VerificationToken(
        user_id=user_id, purpose=purpose, token_hash=token_hash, expires_at=utcnow() + TOKEN_LIFETIMES[purpose]
    )
    session.add(row)
    session.flush()
    return row, raw


def consume_token(session: Session, raw: str, purpose: str) -> VerificationToken:
    """Mark the token used; 400 ``INVALID_TOKEN`` when unknown, expired, superseded or used.

    The conditional UPDATE makes two concurrent uses of one token a single success.
    """
    now = utcnow()
    token_id = session.scalar(
        update(VerificationToken)
        .where(
            VerificationToken.token_hash == hash_token(raw),
            VerificationToken.purpose == purpose,
            VerificationToken.consumed_at.is_(None),
            VerificationToken.expires_at > now,
        )
        .values(consumed_at=now)
        .returning(VerificationToken.id)
    )
    if token_id is None:
        raise errors.ValidationError("The token is invalid or has expired.", code="INVALID_TOKEN")
    token = session.get(VerificationToken, token_id)
    assert token is not None
    return token


def _send_verification(session: Session, user: User) -> None:
    token, raw = issue_token(session, user.id, EMAIL_VERIFICATION)
    queue_email(
        session,
        "email-verification",
        user.email,
        user.id,
        user.signup_organization_id,
        {"verification_url": verify_email_url(raw), "expires_in_hours": 24, "user_name": user.name},
        f"email-verification:{token.id}",
    )


def verify_email(session: Session, raw: str) -> User:
    """Consume a verification token; the first verification sets the date and queues ``welcome``."""
    token = consume_token(session, raw, EMAIL_VERIFICATION)
    user = session.get(User, token.user_id)
    assert user is not None
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        session.flush()
        queue_email(
            session,
            "welcome",
            user.email,
            user.id,
            user.signup_organization_id,
            {"login_url": login_url(), "user_name": user.name},
            f"welcome:{user.id}",
        )
    return user


def resend_verification(session: Session, email: str) -> None:
    """New token + email for an existing unverified user; silently nothing otherwise (no enumeration)."""
    user = get_user_by_email(session, email)
    if user is None or user.email_verified:
        return
    _send_verification(session, user)


def request_password_reset(session: Session, email: str) -> None:
    """Issue a 1-hour reset token and queue its email; unknown addresses get nothing (no enumeration)."""
    user = get_user_by_email(session, email)
    if user is None:
        return
    token, raw = issue_token(session, user.id, PASSWORD_RESET)
    queue_email(
        session,
        "password-reset",
        user.email,
        user.id,
        user.signup_organization_id,
        {"reset_url": reset_password_url(raw), "expires_in_minutes": 60, "user_name": user.name},
        f"password-reset:{token.id}",
    )


# ---- passwords --------------------------------------------------------------------------------


def _credential(session: Session, user_id: uuid.UUID) -> Credential:
    credential = session.get(Credential, user_id, with_for_update=True)
    if credential is None:  # every account has credentials; a missing row is a data error
        raise errors.Unauthenticated()
    return credential


def _set_password(session: Session, user: User, credential: Credential, password: str, field: str) -> None:
    if passwords.verify_password(credential.password_hash, password):
        raise errors.ValidationError.field(field, "The new password must differ from the current one.")
    now = utcnow()
    credential.password_hash = passwords.hash_password(password)
    credential.password_changed_at = now
    # A reset link mailed before this change must stop working (security.md §1): consume every
    # open reset token of the user in this transaction (the one just used is already consumed).
    session.execute(
        update(VerificationToken)
        .where(
            VerificationToken.user_id == user.id,
            VerificationToken.purpose == PASSWORD_RESET,
            VerificationToken.consumed_at.is_(None),
        )
        .values(consumed_at=now)
    )
    session.flush()
    queue_email(
        session,
        "password-changed",
        user.email,
        user.id,
        user.signup_organization_id,
        {"changed_at": now, "user_name": user.name},
        f"password-changed:{user.id}:{int(now.timestamp())}",
    )


def confirm_password_reset(session: Session, raw: str, password: str) -> User:
    """Set a new password with a reset token; every session and every other open reset token of
    the user is revoked."""
    token = consume_token(session, raw, PASSWORD_RESET)
    user = session.get(User, token.user_id)
    assert user is not None
    _set_password(session, user, _credential(session, user.id), password, "password")
    revoke_sessions(session, user.id)
    return user


def change_password(
    session: Session, user_id: uuid.UUID, current_session_id: uuid.UUID, current_password: str, new_password: str
) -> None:
    """Change the password; every other session and every open reset token of the user is revoked."""
    user = session.get(User, user_id)
    if user is None:
        raise errors.Unauthenticated()
    credential = _credential(session, user_id)
    if not passwords.verify_password(credential.password_hash, current_password):
        raise errors.ValidationError.field("current_password", "The current password is wrong.")
    _set_password(session, user, credential, new_password, "new_password")
    revoke_sessions(session, user_id, keep=current_session_id)


# ---- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    token: str
    session: AuthSession
    user: User


def login(
    session: Session, *, email: str, password: str, remember_me: bool, ip: str | None, user_agent: str | None
) -> LoginResult:
    """Check the credentials (constant work for unknown emails) and open a session."""
    row = session.execute(
        select(User, Credential).join(Credential, Credential.user_id == User.id).where(User.email == email.lower())
    ).first()
    if row is None:
        passwords.verify_dummy(password)
        raise errors.AppError("Email or password is wrong.", status=401, code="INVALID_CREDENTIALS")
    user, credential = row
    if not passwords.verify_password(credential.password_hash, password):
        raise errors.AppError("Email or password is wrong.", status=401, code="INVALID_CREDENTIALS")
    if passwords.needs_rehash(credential.password_hash):
        # Same password, current parameters; not a password change (no email, no revocation).
        credential.password_hash = passwords.hash_password(password)
    raw, token_hash = new_token()
    now = utcnow()
    auth_session = AuthSession(
        user_id=user.id,
        token_hash=token_hash,
        remember_me=remember_me,
        expires_at=now + session_lifetime(remember_me),
        last_seen_at=now,
        created_at=now,
        ip_address=(ip or None) and ip[:IP_MAX],
        user_agent=_clean_user_agent(user_agent),
    )
    session.add(auth_session)
    session.flush()
    return LoginResult(raw, auth_session, user)


def _clean_user_agent(value: str | None) -> str | None:
    if not value:
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()[:USER_AGENT_MAX]
    return cleaned or None


def revoke_sessions(session: Session, user_id: uuid.UUID, *, keep: uuid.UUID | None = None) -> int:
    """Revoke the user's active sessions (except ``keep``); cache entries go after the commit."""
    stmt = (
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(AuthSession.token_hash)
    )
    if keep is not None:
        stmt = stmt.where(AuthSession.id != keep)
    hashes = list(session.scalars(stmt))
    evict_after_commit(session, user_id, hashes, all_sessions=keep is None)
    return len(hashes)


def revoke_session(session: Session, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
    """Revoke one active session of the user; 404 ``SESSION_NOT_FOUND`` otherwise (others', revoked, expired)."""
    token_hash = session.scalar(
        update(AuthSession)
        .where(
            AuthSession.id == session_id,
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > utcnow(),
        )
        .values(revoked_at=utcnow())
        .returning(AuthSession.token_hash)
    )
    if token_hash is None:
        raise not_found("SESSION_NOT_FOUND")
    evict_after_commit(session, user_id, [token_hash], all_sessions=False)


def end_session(session: Session, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    """Logout: revoke the presented session if it is still active; never an error (api.md §3)."""
    token_hash = session.scalar(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(AuthSession.token_hash)
    )
    if token_hash is None:
        return False
    evict_after_commit(session, user_id, [token_hash], all_sessions=False)
    return True


def list_sessions(session: Session, user_id: uuid.UUID, page: int, per_page: int) -> dict[str, Any]:
    stmt = (
        select(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > utcnow())
        .order_by(AuthSession.last_seen_at.desc(), AuthSession.created_at.desc(), AuthSession.id)
    )
    return paginate(session, stmt, page, per_page)


def set_platform_owner(session: Session, *, email: str, password: str | None, name: str) -> tuple[User, str]:
    """Create the platform owner (verified), or promote an existing user (revoking its sessions).

    Returns the user and what happened: ``created``, ``promoted`` or ``unchanged``.
    """
    user = get_user_by_email(session, email)
    if user is None:
        if password is None:
            raise errors.ValidationError.field("password", "A password is required to create the user.")
        problems = passwords.policy_errors(password)
        if problems:
            raise errors.ValidationError(details={"password": problems})
        user = create_user(
            session, email=email, password=password, name=name, role="platform_owner", verified_at=utcnow()
        )
        return user, "created"
    if user.role == "platform_owner":
        return user, "unchanged"
    user.role = "platform_owner"
    session.flush()
    # The cached sessions carry the old role; a role change starts over (security.md §1).
    revoke_sessions(session, user.id)
    drop_user_access_after_commit(session, user.id)  # a platform owner is staff of every org's content
    return user, "promoted"
