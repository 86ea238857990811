"""The one place that decides whether the caller may act inside an organization (security.md §1.1).

Steps, in order: the org is resolved (``{org_id}`` path, or the ``organization_id`` of a row
addressed by id) -> the caller's membership is read from Postgres on every request (no cache,
so a removal takes effect at once) -> a platform_owner counts as ``owner`` -> the role is
compared with the endpoint's minimum. Not a member (or no such org, or a malformed id) is a 404
with the resource's code, byte-identical to a missing resource; a member with too small a role
gets 403 ``FORBIDDEN``. A platform_owner acting in an org it is not a member of is logged
(``platform_owner.org_access``) and its audit events carry ``actor_role = platform_owner``.

Usage on an ``{org_id}`` route (``require_auth`` above the arguments, the role check below)::

    @blp.response(200, OrganizationSchema)
    @require_auth
    @blp.arguments(OrgUpdateSchema)
    @require_org_role("admin")
    def patch(self, data, org: OrgAccess): ...

For a resource addressed by its own id (``/media/{id}``): load the row, then
``resource_access(session, media.organization_id, "MEDIA_NOT_FOUND", "creator")``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

import structlog
from flask import g, has_request_context, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import db, errors
from app.http import declare_path_ids, not_found, parse_path_ids
from app.identity.guards import authenticate
from app.identity.models import User
from app.identity.sessions import Principal
from app.orgs.models import ROLE_RANK, Membership, Organization

log = structlog.get_logger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

ORG_NOT_FOUND = "ORG_NOT_FOUND"


@dataclass(frozen=True)
class OrgAccess:
    """The caller inside one organization."""

    organization: Organization
    principal: Principal
    membership_role: str | None  # the caller's own membership role, None when not a member
    role: str  # effective role: membership role, or owner for a platform_owner

    @property
    def organization_id(self) -> uuid.UUID:
        return self.organization.id

    @property
    def user_id(self) -> uuid.UUID:
        return self.principal.user_id

    @property
    def is_platform_owner(self) -> bool:
        return self.principal.is_platform_owner

    @property
    def acts_as_platform_owner(self) -> bool:
        """True when the platform_owner role, not a membership, is what grants the access."""
        return self.is_platform_owner and self.membership_role != "owner"

    @property
    def actor_role(self) -> str:
        """``actor_role`` for audit events written by this caller."""
        if self.acts_as_platform_owner or self.membership_role is None:
            return "platform_owner"
        return self.membership_role

    def has_role(self, min_role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[min_role]

    def require(self, min_role: str) -> None:
        if not self.has_role(min_role):
            raise errors.Forbidden()


def membership_role(session: Session, organization_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
    return session.scalar(
        select(Membership.role).where(Membership.organization_id == organization_id, Membership.user_id == user_id)
    )


def is_staff(session: Session, user: User, organization_id: uuid.UUID) -> bool:
    """Staff of the organization: any member, or a platform_owner (they already have access to its content)."""
    return user.is_platform_owner or membership_role(session, organization_id, user.id) is not None


def _access(
    session: Session, principal: Principal, organization: Organization, not_found_code: str, min_role: str
) -> OrgAccess:
    own_role = membership_role(session, organization.id, principal.user_id)
    if own_role is None and not principal.is_platform_owner:
        raise not_found(not_found_code)
    role = "owner" if principal.is_platform_owner else cast(str, own_role)
    access = OrgAccess(organization=organization, principal=principal, membership_role=own_role, role=role)
    if own_role is None:
        log.info(
            "platform_owner.org_access",
            organization_id=str(organization.id),
            endpoint=request.endpoint if has_request_context() else None,
            method=request.method if has_request_context() else None,
        )
    if has_request_context():
        g.organization_id = organization.id
        structlog.contextvars.bind_contextvars(organization_id=str(organization.id))
    access.require(min_role)
    return access


def org_access(session: Session, principal: Principal, org_id: uuid.UUID, min_role: str = "creator") -> OrgAccess:
    """Access to the org named in the path: 404 ``ORG_NOT_FOUND`` unless a member (or platform_owner)."""
    organization = session.get(Organization, org_id)
    if organization is None:
        raise not_found(ORG_NOT_FOUND)
    return _access(session, principal, organization, ORG_NOT_FOUND, min_role)


def resource_access(
    session: Session,
    organization_id: uuid.UUID,
    not_found_code: str,
    min_role: str = "creator",
    principal: Principal | None = None,
) -> OrgAccess:
    """Access to the org owning a row addressed by id (media, content, purchase).

    Not a member -> 404 ``not_found_code`` (the same answer as a missing row); role below
    ``min_role`` -> 403. Call it after loading the row (and filtering soft-deleted ones).
    """
    principal = principal or authenticate()
    organization = session.get(Organization, organization_id)
    if organization is None:
        raise not_found(not_found_code)
    return _access(session, principal, organization, not_found_code, min_role)


def require_org_role(min_role: str, path_arg: str = "org_id", *, arg_name: str = "org") -> Callable[[F], F]:
    """Resolve ``{org_id}``, check membership (404) and role (403); pass ``org: OrgAccess``.

    Put it *below* ``@blp.arguments`` (so schema errors come before the lookup) and
    ``require_auth`` above (so 401/CSRF/malformed-id come before the schema).
    """
    if min_role not in ROLE_RANK:
        raise ValueError(f"unknown role {min_role!r}")

    def decorator(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            parse_path_ids(kwargs, {path_arg: ORG_NOT_FOUND})
            org_id = kwargs.pop(path_arg)
            kwargs[arg_name] = org_access(db.session, principal, org_id, min_role)
            return func(*args, **kwargs)

        declare_path_ids(wrapper, {path_arg: ORG_NOT_FOUND})
        return cast(F, wrapper)

    return decorator
