"""Organizations, members and settings (api.md §4, §5). Takes a session, flushes, never commits.

Staff join only through invitations (``app.orgs.invitations``). Membership changes lock the
organization row first, so concurrent changes to one org (two ownership transfers, a transfer
and a removal) run one after the other and the one-owner rule (``ux_memberships_one_owner``) is
never hit as a database error.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Select, case, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import audit, errors
from app.http import not_found, parse_uuid
from app.identity.access_entries import drop_user_access_after_commit
from app.identity.models import User
from app.identity.sessions import Principal
from app.orgs.access import OrgAccess
from app.orgs.catalog_generation import catalog_changed_after_commit
from app.orgs.models import Membership, Organization, OrgSettings
from app.schemas import paginate

SETTINGS_FIELDS = (
    "platform_name",
    "primary_color",
    "secondary_color",
    "support_email",
    "contact_url",
    "business_name",
    "timezone",
    "enable_signups",
    "enable_purchases",
)


def _slug_taken() -> errors.Conflict:
    return errors.Conflict("This slug is already used.", code="SLUG_TAKEN")


def org_view(org: Organization, my_role: str | None) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "slug": org.slug,
        "description": org.description,
        "my_role": my_role,
        "created_at": org.created_at,
        "updated_at": org.updated_at,
    }


# ---- organizations ----------------------------------------------------------------------------


def create_org(session: Session, user: User, *, name: str, slug: str, description: str | None) -> Organization:
    """Insert the org, the caller's owner membership and the default settings, together."""
    if session.scalar(select(Organization.id).where(Organization.slug == slug)) is not None:
        raise _slug_taken()
    org = Organization(name=name, slug=slug, description=description, created_by=user.id)
    session.add(org)
    try:
        with session.begin_nested():  # a concurrent create of the same slug is a clean 409
            session.flush()
    except IntegrityError:
        raise _slug_taken() from None
    # (a new org has no content yet: no cached access answer of the creator can concern it)
    session.add(Membership(organization_id=org.id, user_id=user.id, role="owner"))
    session.add(OrgSettings(organization_id=org.id, platform_name=name, support_email=user.email))
    session.flush()
    return org


def list_orgs(session: Session, principal: Principal, *, all_orgs: bool, page: int, per_page: int) -> dict[str, Any]:
    """The caller's organizations (``all_orgs``: every org, platform_owner only), name ascending."""
    if all_orgs:
        if not principal.is_platform_owner:
            raise errors.Forbidden("Only a platform owner may list every organization.")
        stmt = select(Organization, Membership.role).outerjoin(
            Membership, (Membership.organization_id == Organization.id) & (Membership.user_id == principal.user_id)
        )
    else:
        stmt = select(Organization, Membership.role).join(
            Membership, (Membership.organization_id == Organization.id) & (Membership.user_id == principal.user_id)
        )
    stmt = stmt.order_by(Organization.name, Organization.id)
    envelope = paginate(session, cast("Select[Any]", stmt), page, per_page)
    envelope["items"] = [org_view(org, role) for org, role in envelope["items"]]
    return envelope


def update_org(session: Session, access: OrgAccess, data: dict[str, Any]) -> Organization:
    """Change name/slug/description; audit ``org.update`` with the changed fields."""
    org = access.organization
    before = {key: getattr(org, key) for key in data}
    changed = audit.changes(before, data)
    if not changed:
        return org
    if "slug" in changed and session.scalar(
        select(Organization.id).where(Organization.slug == data["slug"], Organization.id != org.id)
    ):
        raise _slug_taken()
    for key in changed:
        setattr(org, key, data[key])
    if "slug" in changed or "name" in changed:
        # The public catalogue resolves {org_slug}, and its items show the org's name and slug.
        catalog_changed_after_commit(session, org.id)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise _slug_taken() from None
    audit.record(
        session,
        organization_id=org.id,
        actor_user_id=access.user_id,
        actor_role=access.actor_role,
        action="org.update",
        target_type="organization",
        target_id=org.id,
        metadata=changed,
    )
    session.flush()
    session.refresh(org)
    return org


def resolve_public_org_id(session: Session, id_or_slug: str) -> uuid.UUID:
    """The org named by a UUID or a slug (public settings); 404 ``ORG_NOT_FOUND`` otherwise."""
    org_id = parse_uuid(id_or_slug)
    column = Organization.id if org_id is not None else Organization.slug
    found = session.scalar(select(Organization.id).where(column == (org_id or id_or_slug)))
    if found is None:
        raise not_found("ORG_NOT_FOUND")
    return found


# ---- members ----------------------------------------------------------------------------------

_ROLE_ORDER = case({"owner": 0, "admin": 1, "creator": 2}, value=Membership.role)


def member_view(membership: Membership, user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "email": user.email,
        "name": user.name,
        "role": membership.role,
        "joined_at": membership.created_at,
    }


def list_members(session: Session, org_id: uuid.UUID, *, role: str | None, page: int, per_page: int) -> dict[str, Any]:
    stmt = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == org_id)
        .order_by(_ROLE_ORDER, User.name, User.id)
    )
    if role is not None:
        stmt = stmt.where(Membership.role == role)
    envelope = paginate(session, cast("Select[Any]", stmt), page, per_page)
    envelope["items"] = [member_view(m, u) for m, u in envelope["items"]]
    return envelope


def lock_org(session: Session, org_id: uuid.UUID) -> None:
    """Serialize membership and invitation changes of one org (``SELECT … FOR UPDATE`` on its row)."""
    session.execute(select(Organization.id).where(Organization.id == org_id).with_for_update())


def _member(session: Session, org_id: uuid.UUID, user_id: uuid.UUID) -> tuple[Membership, User]:
    row = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == org_id, Membership.user_id == user_id)
    ).first()
    if row is None:
        raise not_found("MEMBER_NOT_FOUND")
    return row[0], row[1]


def _owner_required(message: str) -> errors.Unprocessable:
    return errors.Unprocessable(message, code="OWNER_REQUIRED")


def change_member_role(session: Session, access: OrgAccess, user_id: uuid.UUID, role: str) -> dict[str, Any]:
    """Change a member's role; ``owner`` transfers ownership (the previous owner becomes admin)."""
    lock_org(session, access.organization_id)
    membership, user = _member(session, access.organization_id, user_id)
    access.require("admin")
    if role == "owner":
        access.require("owner")
    if membership.role == role:
        return member_view(membership, user)
    if membership.role == "owner":
        raise _owner_required("The owner's role cannot be changed; transfer ownership instead.")
    previous = membership.role
    if role == "owner":
        old_owner = session.scalar(
            select(Membership).where(Membership.organization_id == access.organization_id, Membership.role == "owner")
        )
        # Demote first and flush: the partial unique index allows one owner at any moment.
        if old_owner is not None:
            old_owner.role = "admin"
            session.flush()
        membership.role = "owner"
        session.flush()
        audit.record(
            session,
            organization_id=access.organization_id,
            actor_user_id=access.user_id,
            actor_role=access.actor_role,
            action="ownership.transfer",
            target_type="membership",
            target_id=user.id,
            metadata={
                "user_id": str(user.id),
                "role": {"before": previous, "after": "owner"},
                "previous_owner_id": str(old_owner.user_id) if old_owner is not None else None,
            },
        )
    else:
        membership.role = role
        session.flush()
        audit.record(
            session,
            organization_id=access.organization_id,
            actor_user_id=access.user_id,
            actor_role=access.actor_role,
            action="member.role_change",
            target_type="membership",
            target_id=user.id,
            metadata={"user_id": str(user.id), "role": {"before": previous, "after": role}},
        )
    session.flush()
    session.refresh(membership)
    return member_view(membership, user)


def remove_member(session: Session, access: OrgAccess, user_id: uuid.UUID) -> None:
    """Remove a member (managers; any member may remove itself); never the owner."""
    lock_org(session, access.organization_id)
    membership, user = _member(session, access.organization_id, user_id)
    if user_id != access.user_id:
        access.require("admin")
    if membership.role == "owner":
        raise _owner_required("The owner cannot be removed; transfer ownership first.")
    role = membership.role
    session.delete(membership)
    drop_user_access_after_commit(session, user.id)  # cached answers for the org's content said staff
    audit.record(
        session,
        organization_id=access.organization_id,
        actor_user_id=access.user_id,
        actor_role=access.actor_role,
        action="member.remove",
        target_type="membership",
        target_id=user.id,
        metadata={"user_id": str(user.id), "role": role},
    )
    session.flush()


# ---- settings ---------------------------------------------------------------------------------


def _settings_row(session: Session, org_id: uuid.UUID) -> OrgSettings:
    settings = session.get(OrgSettings, org_id, with_for_update=True)
    if settings is None:  # inserted with the org; missing means the org is gone
        raise not_found("ORG_NOT_FOUND")
    return settings


def update_settings(session: Session, access: OrgAccess, data: dict[str, Any]) -> OrgSettings:
    """Replace the settings document; audit ``settings.update`` with the changed fields."""
    access.require("admin")
    settings = _settings_row(session, access.organization_id)
    values = {key: data[key] for key in SETTINGS_FIELDS}
    changed = audit.changes({key: getattr(settings, key) for key in SETTINGS_FIELDS}, values)
    if not changed:
        return settings
    for key in changed:
        setattr(settings, key, values[key])
    settings.updated_by = access.user_id
    audit.record(
        session,
        organization_id=access.organization_id,
        actor_user_id=access.user_id,
        actor_role=access.actor_role,
        action="settings.update",
        target_type="settings",
        target_id=access.organization_id,
        metadata=changed,
    )
    session.flush()
    return settings


def set_logo(session: Session, access: OrgAccess, key: str) -> str | None:
    """Point the settings at a stored logo; returns the previous key (to delete after commit)."""
    access.require("admin")
    settings = _settings_row(session, access.organization_id)
    previous = settings.logo_key
    settings.logo_key = key
    settings.updated_by = access.user_id
    audit.record(
        session,
        organization_id=access.organization_id,
        actor_user_id=access.user_id,
        actor_role=access.actor_role,
        action="settings.logo_update",
        target_type="settings",
        target_id=access.organization_id,
        metadata={"logo_key": {"before": previous, "after": key}},
    )
    session.flush()
    return previous


def delete_logo(session: Session, access: OrgAccess) -> str | None:
    """Remove the logo; returns the removed key (None when there was none: no audit event)."""
    access.require("admin")
    settings = _settings_row(session, access.organization_id)
    previous = settings.logo_key
    if previous is None:
        return None
    settings.logo_key = None
    settings.updated_by = access.user_id
    audit.record(
        session,
        organization_id=access.organization_id,
        actor_user_id=access.user_id,
        actor_role=access.actor_role,
        action="settings.logo_delete",
        target_type="settings",
        target_id=access.organization_id,
        metadata={"logo_key": {"before": previous, "after": None}},
    )
    session.flush()
    return previous
