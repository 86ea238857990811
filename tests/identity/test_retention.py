"""jobs.md §9: spent sessions and verification tokens are deleted a week after they were spent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.identity import retention
from app.identity.models import AuthSession, VerificationToken
from tests.factories import AuthSessionFactory, UserFactory

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _token(session: Session, user_id: object, n: int, **kw: object) -> VerificationToken:
    token = VerificationToken(user_id=user_id, purpose="email_verification", token_hash=f"{n:064x}", **kw)
    session.add(token)
    return token


def test_sessions_and_tokens_spent_more_than_a_week_ago_go_and_the_rest_stay(db_session: Session) -> None:
    user = UserFactory()
    keep_live = AuthSessionFactory(user_id=user.id, expires_at=NOW + DAY)
    keep_recently_expired = AuthSessionFactory(user_id=user.id, expires_at=NOW - 6 * DAY)
    keep_recently_revoked = AuthSessionFactory(user_id=user.id, expires_at=NOW + DAY, revoked_at=NOW - 6 * DAY)
    AuthSessionFactory(user_id=user.id, expires_at=NOW - 8 * DAY)
    AuthSessionFactory(user_id=user.id, expires_at=NOW + 30 * DAY, revoked_at=NOW - 8 * DAY)
    live = _token(db_session, user.id, 1, expires_at=NOW + DAY)
    recent = _token(db_session, user.id, 2, expires_at=NOW + DAY, consumed_at=NOW - 6 * DAY)
    _token(db_session, user.id, 3, expires_at=NOW - 8 * DAY)
    _token(db_session, user.id, 4, expires_at=NOW + DAY, consumed_at=NOW - 8 * DAY)
    db_session.flush()

    assert retention.delete_spent(db_session, NOW) == {"sessions": 2, "verification_tokens": 2}
    left = set(db_session.scalars(select(AuthSession.id).where(AuthSession.user_id == user.id)))
    assert left == {keep_live.id, keep_recently_expired.id, keep_recently_revoked.id}
    tokens = set(db_session.scalars(select(VerificationToken.id).where(VerificationToken.user_id == user.id)))
    assert tokens == {live.id, recent.id}
    assert retention.delete_spent(db_session, NOW) == {"sessions": 0, "verification_tokens": 0}
