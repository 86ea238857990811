"""Grants: the one writer of ``content_access`` (data-model.md: the access package owns it).

Commerce fulfils, refunds and disputes, the dashboard grants and revokes by hand; all of them
change a grant through these functions, and each function drops the cached access answer
(``access:{user_id}:{content_id}``, ``app.access.cache``) once the change is committed. None of
them commits. A grant row is unique per (user, content): granting again reactivates or
overwrites the one row.

The purchase grant is on the webhook worker's hot path: it is written in the same statement that
inserts the purchase (the caller's ``INSERT … RETURNING``, composed here as a CTE), so fulfilment
stays one round trip. The rarer changes (refund, dispute, the dashboard's) use the ORM.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.access.cache import invalidate_access_after_commit
from app.access.models import ContentAccess


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---- purchases (commerce: fulfilment, refunds, disputes) -----------------------------------------

# The grant of the purchase that the CTE ``p`` inserts: inserted, or the existing row of the
# (user, content) reactivated/overwritten for this purchase.
_GRANT_FOR_PURCHASE = """
    WITH p AS ({purchase_insert})
    INSERT INTO content_access AS a (id, user_id, content_id, organization_id, source, purchase_id, granted_by,
        granted_at, revoked_at, revoke_reason, revoked_by)
    SELECT %(grant_id)s, p.customer_id, p.content_id, p.organization_id, 'purchase', p.id, NULL, p.purchased_at,
        NULL, NULL, NULL
    FROM p
    ON CONFLICT ON CONSTRAINT uq_content_access_user_id_content_id DO UPDATE SET
        source = 'purchase', purchase_id = EXCLUDED.purchase_id, granted_by = NULL,
        granted_at = EXCLUDED.granted_at, revoked_at = NULL, revoke_reason = NULL, revoked_by = NULL,
        updated_at = now()
"""


@lru_cache(maxsize=4)
def _grant_for_purchase_sql(purchase_insert: str) -> str:
    # Built once per purchase statement: the same text every time, so psycopg keeps it prepared.
    return _GRANT_FOR_PURCHASE.format(purchase_insert=purchase_insert)


def grant_with_purchase(
    session: Session,
    purchase_insert: str,
    params: dict[str, Any],
    *,
    user_id: uuid.UUID,
    content_id: uuid.UUID,
) -> None:
    """Insert a purchase and grant its access in one statement.

    ``purchase_insert`` is the caller's ``INSERT INTO purchases … RETURNING id, customer_id,
    content_id, organization_id, purchased_at`` (its ``params`` must not use ``grant_id``); the
    grant takes the user, content, org and time from the row it returns. ``user_id`` and
    ``content_id`` name the cached answer to drop after the commit.
    """
    session.connection().exec_driver_sql(_grant_for_purchase_sql(purchase_insert), {**params, "grant_id": uuid.uuid4()})
    invalidate_access_after_commit(session, user_id, content_id)


def _grant_of_purchase(session: Session, purchase_id: uuid.UUID) -> ContentAccess | None:
    """The grant row only if it points at this purchase (a later purchase or comp grant is left alone)."""
    return session.execute(
        select(ContentAccess)
        .where(ContentAccess.purchase_id == purchase_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def revoke_purchase_grant(
    session: Session, purchase_id: uuid.UUID, *, user_id: uuid.UUID, content_id: uuid.UUID, reason: str
) -> bool:
    """A full refund (``refund``) or a dispute (``dispute``) revokes the purchase's grant, if it is
    still this purchase's and active. True when it changed."""
    grant = _grant_of_purchase(session, purchase_id)
    if grant is None or grant.revoked_at is not None:
        return False
    grant.revoked_at = utcnow()
    grant.revoke_reason = reason
    grant.revoked_by = None
    grant.updated_at = utcnow()
    invalidate_access_after_commit(session, user_id, content_id)
    return True


def restore_purchase_grant(
    session: Session, purchase_id: uuid.UUID, *, user_id: uuid.UUID, content_id: uuid.UUID
) -> bool:
    """A dispute won: the grant a dispute revoked is active again (any other revocation stands)."""
    grant = _grant_of_purchase(session, purchase_id)
    if grant is None or grant.revoke_reason != "dispute":
        return False
    now = utcnow()
    grant.revoked_at = None
    grant.revoke_reason = None
    grant.revoked_by = None
    grant.granted_at = now
    grant.updated_at = now
    invalidate_access_after_commit(session, user_id, content_id)
    return True


# ---- complimentary grants (the dashboard, api.md §11) --------------------------------------------


def grant_complimentary(
    session: Session,
    *,
    user_id: uuid.UUID,
    content_id: uuid.UUID,
    organization_id: uuid.UUID,
    granted_by: uuid.UUID,
) -> ContentAccess | None:
    """A complimentary grant, or None when the user already has an active one.

    One ``INSERT … ON CONFLICT DO UPDATE … WHERE revoked_at IS NOT NULL``: a revoked row is
    reactivated, an active one is left alone, so two concurrent grants cannot both succeed.
    """
    now = utcnow()
    values = {
        "source": "complimentary",
        "purchase_id": None,
        "granted_by": granted_by,
        "granted_at": now,
        "revoked_at": None,
        "revoke_reason": None,
        "revoked_by": None,
        "updated_at": now,
    }
    insert = pg_insert(ContentAccess).values(
        user_id=user_id, content_id=content_id, organization_id=organization_id, **values
    )
    stmt = insert.on_conflict_do_update(
        constraint="uq_content_access_user_id_content_id",
        set_=values,
        where=ContentAccess.revoked_at.is_not(None),
    ).returning(ContentAccess.id)
    grant_id = session.execute(stmt).scalar_one_or_none()
    if grant_id is None:
        return None
    grant = session.execute(
        select(ContentAccess).where(ContentAccess.id == grant_id).execution_options(populate_existing=True)
    ).scalar_one()
    invalidate_access_after_commit(session, user_id, content_id)
    return grant


def revoke_by_admin(session: Session, grant: ContentAccess, *, revoked_by: uuid.UUID) -> bool:
    """Revoke an active grant of any source (a purchase stays as it is); ``grant`` is refreshed.

    Guarded on ``revoked_at IS NULL``: False when someone else revoked it since it was read.
    """
    now = utcnow()
    revoked = session.execute(
        update(ContentAccess)
        .where(ContentAccess.id == grant.id, ContentAccess.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason="admin", revoked_by=revoked_by, updated_at=now)
        .returning(ContentAccess.id)
        .execution_options(synchronize_session=False)
    ).first()
    if revoked is None:
        return False
    session.refresh(grant)
    invalidate_access_after_commit(session, grant.user_id, grant.content_id)
    return True
