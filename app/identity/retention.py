"""Retention of spent identity rows (jobs.md §9, run daily by ``maintenance.cleanup``).

Sessions that expired or were revoked, and verification tokens that expired or were consumed,
more than ``KEEP`` ago are deleted: nothing reads them any more (a session's Redis cache entry
lives at most five minutes and a revoked token is refused by its hash alone), and a week keeps
them for anyone looking into a recent incident.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session

from app.identity.models import AuthSession, VerificationToken

KEEP = timedelta(days=7)


def delete_spent(session: Session, now: datetime) -> dict[str, int]:
    """Delete sessions and verification tokens spent before ``now - KEEP``; counts per table."""
    cutoff = now - KEEP
    sessions = session.execute(
        delete(AuthSession).where(or_(AuthSession.expires_at < cutoff, AuthSession.revoked_at < cutoff))
    )
    tokens = session.execute(
        delete(VerificationToken).where(
            or_(VerificationToken.expires_at < cutoff, VerificationToken.consumed_at < cutoff)
        )
    )
    return {"sessions": _count(sessions), "verification_tokens": _count(tokens)}


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
