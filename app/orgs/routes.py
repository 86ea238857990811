"""``/api/v1/orgs`` and ``/api/v1/invitations`` routes: organizations, members, invitations,
settings (api.md §4, §5). Staff join only by invitation: there is no ``POST …/members`` (405).

Decorator order on org-scoped methods (README §3.4): ``require_auth`` (401, CSRF, malformed
path ids -> 404) above ``@blp.arguments`` (400), ``require_org_role`` below it (404 for
non-members, 403 for a too-small role).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from flask import Response
from flask.views import MethodView

from app import db, errors
from app.api import Blueprint, error_responses
from app.db import enqueue_after_commit
from app.http import body_limit, not_found, path_uuid, raw_body
from app.identity.guards import current_principal, current_user, require_auth
from app.identity.prechecks import multipart, route_limit
from app.orgs import branding, invitations, service
from app.orgs.access import OrgAccess, require_org_role
from app.orgs.schemas import (
    LOGO_REQUEST_MAX_BYTES,
    AcceptedMemberSchema,
    InvitationAcceptSchema,
    InvitationCreateSchema,
    InvitationListArgsSchema,
    InvitationLookupSchema,
    InvitationSchema,
    LogoSchema,
    LogoUploadSchema,
    MemberListArgsSchema,
    MemberSchema,
    MemberUpdateSchema,
    OrganizationSchema,
    OrgCreateSchema,
    OrgListArgsSchema,
    OrgUpdateSchema,
    SettingsSchema,
    SettingsUpdateSchema,
)
from app.schemas import EmptySchema, list_schema
from app.storage import StorageError, get_storage
from app.storage.keys import logo_key

log = structlog.get_logger(__name__)

# One blueprint at /api/v1: the invitee's routes (/invitations/…) are not under /orgs.
blp = Blueprint("orgs", __name__, url_prefix="/api/v1", description="Organizations, members, invitations and settings")

COMMON = (429, 500, 503)
JSON_BODY = (400, 413, 415)
SIGNED_IN = (401, 403)

DELETE_OBJECT_TASK = "storage.delete_object"
SETTINGS_CACHE_CONTROL = "public, max-age=60"


def _empty(status: int) -> Response:
    return Response(status=status)


def _invalidate_after_commit(org_id: uuid.UUID) -> None:
    # Called right after our commit: the next read rebuilds the cached branding.
    branding.invalidate(org_id)


# ---- organizations ----------------------------------------------------------------------------


@blp.route("/orgs")
class Organizations(MethodView):
    @blp.response(200, list_schema(OrganizationSchema))
    @error_responses(blp, 400, 401, 403, *COMMON)
    @require_auth
    @blp.arguments(OrgListArgsSchema, location="query")
    def get(self, args: dict[str, Any]) -> Any:
        """List the caller's organizations (all=true: every org, platform owner only)"""
        return service.list_orgs(
            db.session, current_principal(), all_orgs=args["all_orgs"], page=args["page"], per_page=args["per_page"]
        )

    @blp.response(201, OrganizationSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 409, *COMMON)
    @route_limit("10 per hour", key="user")
    @require_auth
    @blp.arguments(OrgCreateSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Create an organization (the caller becomes its owner)"""
        org = service.create_org(db.session, current_user(), **data)
        db.session.commit()
        return service.org_view(org, "owner")


@blp.route("/orgs/<org_id>")
class OrganizationItem(MethodView):
    @blp.response(200, OrganizationSchema)
    @error_responses(blp, 401, 404, *COMMON)
    @require_auth
    @require_org_role("creator")
    def get(self, org: OrgAccess) -> Any:
        """Get an organization"""
        return service.org_view(org.organization, org.membership_role)

    @blp.response(200, OrganizationSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, *COMMON)
    @require_auth
    @blp.arguments(OrgUpdateSchema)
    @require_org_role("admin")
    def patch(self, data: dict[str, Any], org: OrgAccess) -> Any:
        """Update an organization's name, slug or description"""
        updated = service.update_org(db.session, org, data)
        db.session.commit()
        _invalidate_after_commit(updated.id)  # the cached branding carries the slug and name
        return service.org_view(updated, org.membership_role)


# ---- members ----------------------------------------------------------------------------------


@blp.route("/orgs/<org_id>/members")
class Members(MethodView):
    @blp.response(200, list_schema(MemberSchema))
    @error_responses(blp, 400, 401, 404, *COMMON)
    @require_auth
    @blp.arguments(MemberListArgsSchema, location="query")
    @require_org_role("creator")
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """List the organization's members (owner, admins, creators; then by name)"""
        return service.list_members(
            db.session, org.organization_id, role=args.get("role"), page=args["page"], per_page=args["per_page"]
        )


@blp.route("/orgs/<org_id>/members/<user_id>")
class MemberItem(MethodView):
    @blp.response(200, MemberSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 422, *COMMON)
    @require_auth
    @blp.arguments(MemberUpdateSchema)
    @require_org_role("creator")
    @path_uuid("user_id", "MEMBER_NOT_FOUND")
    def patch(self, data: dict[str, Any], user_id: uuid.UUID, org: OrgAccess) -> Any:
        """Change a member's role (role owner transfers ownership)"""
        member = service.change_member_role(db.session, org, user_id, data["role"])
        db.session.commit()
        return member

    @blp.response(204)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 422, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @require_org_role("creator")
    @path_uuid("user_id", "MEMBER_NOT_FOUND")
    def delete(self, _data: dict[str, Any], user_id: uuid.UUID, org: OrgAccess) -> Any:
        """Remove a member (any member may remove itself; never the owner)"""
        service.remove_member(db.session, org, user_id)
        db.session.commit()
        return _empty(204)


# ---- invitations (api.md §4) --------------------------------------------------------------------


@blp.route("/orgs/<org_id>/invitations")
class Invitations(MethodView):
    @blp.response(201, InvitationSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, *COMMON)
    @route_limit("30 per hour", key="user")
    @require_auth
    @blp.arguments(InvitationCreateSchema)
    @require_org_role("admin")
    def post(self, data: dict[str, Any], org: OrgAccess) -> Any:
        """Invite an email address to join as admin or creator

        The answer is the same whether or not an account exists for the address. A pending
        invitation of the same address is replaced (its link stops working). The address gets
        the `org-invitation` email; only an account with that address, verified, can accept.
        409 `ALREADY_MEMBER` when the address belongs to a member.
        """
        invitation, _token = invitations.create_invitation(db.session, org, email=data["email"], role=data["role"])
        db.session.commit()  # the email.send message goes out after this commit
        return invitations.invitation_view(invitation)

    @blp.response(200, list_schema(InvitationSchema))
    @error_responses(blp, 400, *SIGNED_IN, 404, *COMMON)
    @require_auth
    @blp.arguments(InvitationListArgsSchema, location="query")
    @require_org_role("admin")
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """List the organization's invitations, newest first (status filter includes expired)"""
        return invitations.list_invitations(
            db.session, org.organization_id, status=args.get("status"), page=args["page"], per_page=args["per_page"]
        )


@blp.route("/orgs/<org_id>/invitations/<invitation_id>")
class InvitationItem(MethodView):
    @blp.response(204)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @require_org_role("creator")
    @path_uuid("invitation_id", "INVITATION_NOT_FOUND")
    def delete(self, _data: dict[str, Any], invitation_id: uuid.UUID, org: OrgAccess) -> Any:
        """Revoke a pending invitation (its link stops working)

        404 `INVITATION_NOT_FOUND`; 409 `STATE_CONFLICT` when it is accepted, revoked or expired.
        """
        invitations.revoke_invitation(db.session, org, invitation_id)
        db.session.commit()
        return _empty(204)


@blp.route("/invitations/<token>")
class InvitationLookup(MethodView):
    @blp.response(200, InvitationLookupSchema)
    @error_responses(blp, 404, *COMMON)
    def get(self, token: str) -> Any:
        """Show an invitation by its token (public: the accept page)

        404 `INVITATION_NOT_FOUND` when the token is unknown, used, revoked or expired.
        """
        return invitations.lookup(db.session, token)


@blp.route("/invitations/accept")
class InvitationAccept(MethodView):
    @blp.response(200, AcceptedMemberSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, *COMMON)
    @require_auth
    @blp.arguments(InvitationAcceptSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Accept an invitation as the signed-in user

        The caller's email must be verified (403 `EMAIL_NOT_VERIFIED`) and equal the invited
        address (403 `INVITATION_EMAIL_MISMATCH`); 404 `INVITATION_NOT_FOUND` for an unknown,
        used, revoked or expired token; 409 `ALREADY_MEMBER`.
        """
        member = invitations.accept(db.session, current_user(), data["token"])
        db.session.commit()
        return member


# ---- settings ---------------------------------------------------------------------------------


def settings_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {
        "organization_id": snapshot["organization_id"],
        "organization_slug": snapshot["organization_slug"],
        "platform_name": snapshot["platform_name"],
        "primary_color": snapshot["primary_color"],
        "secondary_color": snapshot["secondary_color"],
        "support_email": snapshot["support_email"],
        "contact_url": snapshot["contact_url"],
        "business_name": snapshot["business_name"],
        "timezone": snapshot["timezone"],
        "enable_signups": snapshot["enable_signups"],
        "enable_purchases": snapshot["enable_purchases"],
        "logo_url": branding.logo_url(snapshot["logo_key"]),
        "updated_at": datetime.fromisoformat(snapshot["updated_at"]),
    }


def _snapshot(org_id: uuid.UUID) -> dict[str, Any]:
    snapshot = branding.settings_snapshot(db.session, org_id)
    if snapshot is None:
        raise not_found("ORG_NOT_FOUND")
    return snapshot


@blp.route("/orgs/<org_id>/settings")
class Settings(MethodView):
    @blp.response(200, SettingsSchema, headers={"Cache-Control": {"schema": {"type": "string"}}})
    @error_responses(blp, 404, *COMMON)
    def get(self, org_id: str) -> Any:
        """Get an organization's branding settings (public; org id or slug)"""
        resolved = service.resolve_public_org_id(db.session, org_id)
        return settings_view(_snapshot(resolved)), 200, {"Cache-Control": SETTINGS_CACHE_CONTROL}

    @blp.response(200, SettingsSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, *COMMON)
    @require_auth
    @blp.arguments(SettingsUpdateSchema)
    @require_org_role("admin")
    def put(self, data: dict[str, Any], org: OrgAccess) -> Any:
        """Replace an organization's branding settings"""
        service.update_settings(db.session, org, data)
        db.session.commit()
        _invalidate_after_commit(org.organization_id)
        return settings_view(_snapshot(org.organization_id))


@blp.route("/orgs/<org_id>/settings/logo")
class Logo(MethodView):
    @blp.response(200, LogoSchema)
    @error_responses(blp, 400, *SIGNED_IN, 404, 413, 415, *COMMON)
    @route_limit("30 per hour", key="user")
    @multipart
    @raw_body
    @body_limit(LOGO_REQUEST_MAX_BYTES)
    @require_auth
    @blp.arguments(LogoUploadSchema, location="files")
    @require_org_role("admin")
    def put(self, files: dict[str, Any], org: OrgAccess) -> Any:
        """Upload the organization's logo (PNG, JPEG or WebP, at most 5 MiB)"""
        upload = files["file"]
        key = logo_key(org.organization_id, uuid.uuid4(), upload.extension)
        try:
            get_storage().put_bytes(key, upload.data, upload.content_type)
        except StorageError:
            log.warning("logo.store_failed", organization_id=str(org.organization_id))
            raise errors.ServiceUnavailable("storage") from None
        previous = service.set_logo(db.session, org, key)
        if previous and previous != key:
            # The old object goes only once the new key is committed (no broken logo in between).
            enqueue_after_commit(db.session, DELETE_OBJECT_TASK, previous)
        db.session.commit()
        _invalidate_after_commit(org.organization_id)
        return {"logo_url": branding.logo_url(key)}

    @blp.response(204)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @require_org_role("admin")
    def delete(self, _data: dict[str, Any], org: OrgAccess) -> Any:
        """Remove the organization's logo"""
        previous = service.delete_logo(db.session, org)
        if previous:
            enqueue_after_commit(db.session, DELETE_OBJECT_TASK, previous)
        db.session.commit()
        _invalidate_after_commit(org.organization_id)
        return _empty(204)
