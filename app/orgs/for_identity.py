"""What identity shows of organizations: sign-up through an organization, and the memberships in
the Me object of ``GET /auth/me`` (api.md §3).

Identity sits below orgs and does not import it; ``supply`` (called by ``create_app``) hands it
these answers. Identity caches the ``/auth/me`` body under a generation per user
(app/identity/me_cache.py); the flush listener below replaces the generations of the members whose
view an org-side write changed, next to the query that shows those rows.
"""

from __future__ import annotations

import uuid
from itertools import chain
from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session, UOWTransaction

from app import errors
from app.http import not_found
from app.identity import me_cache
from app.identity import service as identity
from app.identity.models import User
from app.orgs.models import Membership, Organization, OrgSettings


def supply() -> None:
    """Hand identity its organization answers (idempotent: every app of the process shares them)."""
    identity.use_orgs(identity.FromOrgs(signup_organization=signup_organization, me_view=me_view))


def signup_organization(session: Session, slug: str) -> uuid.UUID:
    """The organization a customer signs up through; 404 ``ORG_NOT_FOUND``, 403 ``SIGNUPS_DISABLED``."""
    row = session.execute(
        select(Organization.id, OrgSettings.enable_signups)
        .join(OrgSettings, OrgSettings.organization_id == Organization.id)
        .where(Organization.slug == slug)
    ).first()
    if row is None:
        raise not_found("ORG_NOT_FOUND")
    if not row.enable_signups:
        raise errors.Forbidden("This organization does not accept sign-ups.", code="SIGNUPS_DISABLED")
    return row.id


# Built once: /auth/me is the hottest authenticated read, and composing the statement costs
# more CPU than running it.
_ME_STATEMENT = (
    select(
        User.id,
        User.email,
        User.name,
        User.role,
        User.email_verified_at,
        User.created_at,
        Organization.id.label("organization_id"),
        Organization.name.label("organization_name"),
        Organization.slug.label("organization_slug"),
        Membership.role.label("membership_role"),
    )
    .select_from(User)
    .outerjoin(Membership, Membership.user_id == User.id)
    .outerjoin(Organization, Organization.id == Membership.organization_id)
    .where(User.id == bindparam("user_id"))
    .order_by(Organization.name, Organization.id)
)


def me_view(session: Session, user_id: uuid.UUID) -> dict[str, Any] | None:
    """The Me object in one round trip: the user's columns, outer-joined to its memberships."""
    rows = session.execute(_ME_STATEMENT, {"user_id": user_id}).all()
    if not rows:
        return None
    first = rows[0]
    return {
        "id": first.id,
        "email": first.email,
        "name": first.name,
        "role": first.role,
        "email_verified": first.email_verified_at is not None,
        "email_verified_at": first.email_verified_at,
        "created_at": first.created_at,
        "memberships": [
            {
                "organization_id": r.organization_id,
                "organization_name": r.organization_name,
                "organization_slug": r.organization_slug,
                "role": r.membership_role,
            }
            for r in rows
            if r.organization_id is not None
        ],
    }


@event.listens_for(Session, "after_flush")
def _collect(db_session: Session, flush_context: UOWTransaction) -> None:
    """Note the members whose Me view this flush changed: a membership written, or an organization
    renamed (its name and slug show in every member's view). ``new``/``dirty``/``deleted`` still
    hold the flushed objects here; identity replaces the generations after the commit."""
    users: set[uuid.UUID] = set()
    renamed_orgs: list[uuid.UUID] = []
    for obj in chain(db_session.new, db_session.dirty, db_session.deleted):
        if isinstance(obj, Membership):
            users.add(obj.user_id)
        elif isinstance(obj, Organization) and obj not in db_session.new:
            renamed_orgs.append(obj.id)
    if renamed_orgs:
        members = db_session.connection().execute(
            select(Membership.user_id).where(Membership.organization_id.in_(renamed_orgs))
        )
        users.update(members.scalars())
    if users:
        me_cache.stale_after_commit(db_session, users)
