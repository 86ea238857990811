"""Dashboard and org administration routes (api.md §11): managers only, creators 403 — except a
content item's engagement, which its creator may read too.

Decorator order (README §3.4): ``require_auth`` (401, CSRF, malformed path ids -> 404) above
``@blp.arguments`` (400), ``require_org_role`` below it (404 for non-members). Routes without a
second path id ask for ``admin`` at once; the others let any member through ``require_org_role``
and check ``admin`` after their own lookup, so a missing customer/grant is a 404 before the 403.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from flask.views import MethodView

from app import db
from app.api import Blueprint, error_responses
from app.dashboard import engagement, grants, service, svg
from app.dashboard.schemas import (
    AuditEventSchema,
    AuditListArgsSchema,
    ChartArgsSchema,
    CurrencyArgsSchema,
    CustomerDetailSchema,
    CustomerListArgsSchema,
    CustomerRowSchema,
    EngagementArgsSchema,
    EngagementSchema,
    GrantCreateSchema,
    GrantSchema,
    RangeArgsSchema,
    RevenueSchema,
    SummarySchema,
    TopContentArgsSchema,
    TopContentSchema,
)
from app.http import no_content, not_found, path_uuid
from app.identity.guards import require_auth
from app.notifications.schemas import EmailListArgsSchema, OutboxEmailSchema
from app.notifications.service import list_org_emails
from app.orgs.access import OrgAccess, require_org_role
from app.orgs.branding import branding_for
from app.schemas import EmptySchema, list_schema

blp = Blueprint("dashboard", __name__, url_prefix="/api/v1", description="Dashboard, customers, grants, audit")

COMMON = (429, 500, 503)
JSON_BODY = (400, 413, 415)
READ = (400, 401, 403, 404, *COMMON)  # query args, session, creator, not a member
MANAGER = "admin"
SVG_CACHE_CONTROL = "private, no-store"


# ---- dashboard figures ------------------------------------------------------------------------------


@blp.route("/orgs/<org_id>/dashboard/summary")
class Summary(MethodView):
    @blp.response(200, SummarySchema)
    @error_responses(blp, *READ)
    @require_auth
    @blp.arguments(CurrencyArgsSchema, location="query")
    @require_org_role(MANAGER)
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """Revenue all-time and this month, customers, top content, recent purchases"""
        return service.summary(db.session, org.organization_id, args["currency"])


@blp.route("/orgs/<org_id>/dashboard/revenue")
class Revenue(MethodView):
    @blp.response(200, RevenueSchema)
    @error_responses(blp, *READ)
    @require_auth
    @blp.arguments(RangeArgsSchema, location="query")
    @require_org_role(MANAGER)
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """Revenue per UTC day over a date range (zero-filled, at most 366 days)"""
        return service.revenue(db.session, org.organization_id, args["currency"], args["start"], args["end"])


@blp.route("/orgs/<org_id>/dashboard/revenue.svg")
class RevenueChart(MethodView):
    @blp.response(200, content_type="image/svg+xml", description="The daily series as an SVG bar chart")
    @blp.doc(responses={"200": {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}})
    @error_responses(blp, *READ)
    @require_auth
    @blp.arguments(ChartArgsSchema, location="query")
    @require_org_role(MANAGER)
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """Daily revenue or purchases as an SVG bar chart"""
        session = db.session
        daily = service.daily_revenue(session, org.organization_id, args["currency"], args["start"], args["end"])
        body = svg.render_chart(
            org_name=org.organization.name,
            metric=args["metric"],
            currency=args["currency"],
            start=args["start"],
            end=args["end"],
            daily=daily,
            color=branding_for(session, org.organization_id).primary_color,
        )
        return Response(body, content_type="image/svg+xml; charset=utf-8", headers={"Cache-Control": SVG_CACHE_CONTROL})


@blp.route("/orgs/<org_id>/dashboard/top-content")
class TopContent(MethodView):
    @blp.response(200, TopContentSchema)
    @error_responses(blp, *READ)
    @require_auth
    @blp.arguments(TopContentArgsSchema, location="query")
    @require_org_role(MANAGER)
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """Content ranked by net revenue, purchases or watch time over a date range"""
        return service.top_content(
            db.session,
            org.organization_id,
            metric=args["metric"],
            currency=args["currency"],
            start=args["start"],
            end=args["end"],
            limit=args["limit"],
        )


# ---- content engagement (managers; creators for what they created) ---------------------------------


@blp.route("/orgs/<org_id>/dashboard/content/<content_id>/engagement")
class Engagement(MethodView):
    @blp.response(200, EngagementSchema)
    @error_responses(blp, *READ)
    @require_auth
    @blp.arguments(EngagementArgsSchema, location="query")
    @require_org_role("creator")
    @path_uuid("content_id", "CONTENT_NOT_FOUND")
    def get(self, args: dict[str, Any], content_id: uuid.UUID, org: OrgAccess) -> Any:
        """Viewers, completions, the retention curve and daily watch figures of one content item"""
        item = engagement.readable_content(db.session, org, content_id)
        return engagement.engagement(db.session, item, args["start"], args["end"])


@blp.route("/orgs/<org_id>/dashboard/content/<content_id>/retention.svg")
class RetentionChart(MethodView):
    @blp.response(200, content_type="image/svg+xml", description="The retention curve as an SVG line chart")
    @blp.doc(responses={"200": {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}})
    @error_responses(blp, 401, 403, 404, *COMMON)
    @require_auth
    @require_org_role("creator")
    @path_uuid("content_id", "CONTENT_NOT_FOUND")
    def get(self, content_id: uuid.UUID, org: OrgAccess) -> Any:
        """The retention curve of one content item as an SVG line chart"""
        session = db.session
        content = engagement.readable_content(session, org, content_id).content
        audience = engagement.audience(session, content.id)
        body = svg.render_retention(
            title=content.title,
            viewers=audience.viewers,
            retention=audience.retention(),
            color=branding_for(session, org.organization_id).primary_color,
        )
        return Response(body, content_type="image/svg+xml; charset=utf-8", headers={"Cache-Control": SVG_CACHE_CONTROL})


# ---- customers ------------------------------------------------------------------------------------------


@blp.route("/orgs/<org_id>/dashboard/customers")
class Customers(MethodView):
    @blp.response(200, list_schema(CustomerRowSchema))
    @error_responses(blp, *READ)
    @require_auth
    @blp.arguments(CustomerListArgsSchema, location="query")
    @require_org_role(MANAGER)
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """List the org's customers (purchase or grant) with their totals"""
        return service.list_customers(db.session, org.organization_id, **args)


@blp.route("/orgs/<org_id>/dashboard/customers/<user_id>")
class CustomerItem(MethodView):
    @blp.response(200, CustomerDetailSchema)
    @error_responses(blp, *READ)
    @require_auth
    @blp.arguments(CurrencyArgsSchema, location="query")
    @require_org_role("creator")
    @path_uuid("user_id", "CUSTOMER_NOT_FOUND")
    def get(self, args: dict[str, Any], user_id: uuid.UUID, org: OrgAccess) -> Any:
        """A customer's purchases, grants and totals in this org"""
        if not service.is_customer(db.session, org.organization_id, user_id):
            raise not_found("CUSTOMER_NOT_FOUND")
        org.require(MANAGER)
        return service.customer_detail(db.session, org.organization_id, user_id, args["currency"])


@blp.route("/orgs/<org_id>/customers/<user_id>/grants")
class Grants(MethodView):
    @blp.response(201, GrantSchema)
    @error_responses(blp, *JSON_BODY, 401, 403, 404, 409, *COMMON)
    @require_auth
    @blp.arguments(GrantCreateSchema)
    @require_org_role("creator")
    @path_uuid("user_id", "USER_NOT_FOUND")
    def post(self, data: dict[str, Any], user_id: uuid.UUID, org: OrgAccess) -> Any:
        """Give a user complimentary access to org content (emails them)"""
        grant = grants.create_grant(db.session, org, user_id, data["content_id"])
        db.session.commit()
        return service.grant_view(grant)


@blp.route("/orgs/<org_id>/customers/<user_id>/grants/<content_id>")
class GrantItem(MethodView):
    @blp.response(204)
    @error_responses(blp, *JSON_BODY, 401, 403, 404, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @require_org_role("creator")
    @path_uuid("user_id", "GRANT_NOT_FOUND")
    @path_uuid("content_id", "GRANT_NOT_FOUND")
    def delete(self, _data: dict[str, Any], user_id: uuid.UUID, content_id: uuid.UUID, org: OrgAccess) -> Any:
        """Revoke a user's active grant (purchases are left as they are)"""
        grants.revoke_grant(db.session, org, user_id, content_id)
        db.session.commit()
        return no_content()


# ---- logs -----------------------------------------------------------------------------------------------


@blp.route("/orgs/<org_id>/audit")
class Audit(MethodView):
    @blp.response(200, list_schema(AuditEventSchema))
    @error_responses(blp, *READ)
    @require_auth
    @blp.arguments(AuditListArgsSchema, location="query")
    @require_org_role(MANAGER)
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """The org's audit events, newest first"""
        return service.list_audit(db.session, org.organization_id, **args)


@blp.route("/orgs/<org_id>/emails")
class Emails(MethodView):
    @blp.response(200, list_schema(OutboxEmailSchema))
    @error_responses(blp, *READ)
    @require_auth
    @blp.arguments(EmailListArgsSchema, location="query")
    @require_org_role(MANAGER)
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """Emails sent with this org's branding, newest first"""
        return list_org_emails(db.session, org.organization_id, **args)
