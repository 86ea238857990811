"""Commerce routes (api.md §9, §12): checkout, session status, purchases, org refunds, Stripe
events administration, and the Stripe webhook.

``/webhooks/stripe`` is a plain Flask blueprint outside ``/api/v1`` (and outside the OpenAPI
document): it takes Stripe's raw body, not a JSON API request, and its whole job is
verify -> store -> 200 (jobs.md §4.1); the processing happens in the worker.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import flask
import structlog
from flask import Response, jsonify, request
from flask.views import MethodView
from sqlalchemy import select
from sqlalchemy.exc import DataError, SQLAlchemyError

from app import db, errors
from app.api import Blueprint, error_responses
from app.commerce import processing, refunds, service, webhooks
from app.commerce.models import Purchase, StripeEvent
from app.commerce.schemas import (
    EVENT_ID,
    CheckoutCreatedSchema,
    CheckoutCreateSchema,
    CheckoutStatusSchema,
    MyPurchasesArgsSchema,
    MyPurchaseSchema,
    PurchaseSchema,
    RefundRequestSchema,
    StripeEventDetailSchema,
    StripeEventListArgsSchema,
    StripeEventSchema,
)
from app.http import body_limit, path_uuid
from app.identity.guards import current_principal, current_user, require_auth
from app.identity.prechecks import route_limit
from app.orgs.access import OrgAccess, require_org_role
from app.schemas import EmptySchema, list_schema, paginate

log = structlog.get_logger(__name__)

WEBHOOK_MAX_BYTES = 1024 * 1024

COMMON = (429, 500, 503)
JSON_BODY = (400, 413, 415)
SIGNED_IN = (401, 403)

blp = Blueprint("commerce", __name__, url_prefix="/api/v1", description="Checkout, purchases and refunds")
admin_blp = Blueprint(
    "stripe_events", __name__, url_prefix="/api/v1/admin", description="Stripe events (platform owner)"
)
webhook_bp = flask.Blueprint("stripe_webhook", __name__)


# ---- checkout ------------------------------------------------------------------------------


@blp.route("/checkout")
class Checkout(MethodView):
    @blp.response(201, CheckoutCreatedSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, *COMMON)
    @route_limit("10 per minute", key="user")
    @require_auth
    @blp.arguments(CheckoutCreateSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Start a checkout for a published, priced content item"""
        row = service.start_checkout(
            db.session, current_user(), data["content_id"], data["success_url"], data["cancel_url"]
        )
        db.session.commit()
        return {"checkout_url": row.url, "session_id": row.id, "expires_at": row.expires_at}


@blp.route("/checkout/sessions/<session_id>")
class CheckoutSessionItem(MethodView):
    @blp.response(200, CheckoutStatusSchema)
    @error_responses(blp, 401, 404, *COMMON)
    @require_auth
    def get(self, session_id: str) -> Any:
        """Status of the caller's checkout session (for the success page)"""
        result = service.checkout_status(db.session, current_principal().user_id, session_id)
        db.session.commit()  # a recon_ event when the provider says paid and nothing is fulfilled yet
        view = result.view()
        if result.purchase is not None:
            view["purchase"] = service.purchase_view(result.purchase)
        return view


@blp.route("/me/purchases")
class MyPurchases(MethodView):
    @blp.response(200, list_schema(MyPurchaseSchema))
    @error_responses(blp, 400, 401, *COMMON)
    @require_auth
    @blp.arguments(MyPurchasesArgsSchema, location="query")
    def get(self, args: dict[str, Any]) -> Any:
        """The caller's purchases, newest first"""
        return service.list_purchases(
            db.session,
            current_principal().user_id,
            status=args.get("status"),
            page=args["page"],
            per_page=args["per_page"],
        )


@blp.route("/orgs/<org_id>/purchases/<purchase_id>/refund")
class PurchaseRefund(MethodView):
    @blp.response(202, PurchaseSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, *COMMON)
    @require_auth
    @blp.arguments(RefundRequestSchema)
    @require_org_role("creator")
    @path_uuid("purchase_id", "PURCHASE_NOT_FOUND")
    def post(self, data: dict[str, Any], purchase_id: uuid.UUID, org: OrgAccess) -> Any:
        """Refund the remaining amount of a purchase (access is revoked when the refund lands)"""
        session = db.session
        # Lookup (404) before role (403), as README §3.4 orders the checks.
        found = session.scalar(
            select(Purchase.id).where(Purchase.id == purchase_id, Purchase.organization_id == org.organization_id)
        )
        if found is None:
            raise errors.NotFound("The purchase was not found.", code="PURCHASE_NOT_FOUND")
        org.require("admin")
        purchase = refunds.request_refund(
            session,
            organization_id=org.organization_id,
            purchase_id=purchase_id,
            requested_by=org.user_id,
            actor_role=org.actor_role,
            reason=data.get("reason"),
        )
        session.commit()
        return service.purchase_view(purchase)


# ---- platform administration --------------------------------------------------------------------


def _event_view(event: StripeEvent, *, payload: bool = False) -> dict[str, Any]:
    view = {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "livemode": event.livemode,
        "status": event.status,
        "attempts": event.attempts,
        "next_attempt_at": event.next_attempt_at,
        "last_error": event.last_error,
        "object_id": event.object_id,
        "payment_intent_id": event.payment_intent_id,
        "received_at": event.received_at,
        "processed_at": event.processed_at,
    }
    if payload:
        view["payload"] = event.payload
    return view


def _event_not_found() -> errors.NotFound:
    return errors.NotFound("The Stripe event was not found.", code="STRIPE_EVENT_NOT_FOUND")


def _event_id_path(func: Any) -> Any:
    """404 for an ``event_id`` that is not ``^[A-Za-z0-9_]{1,255}$``, before the body is validated."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not EVENT_ID.match(kwargs.get("event_id", "")):
            raise _event_not_found()
        return func(*args, **kwargs)

    return wrapper


def _require_platform_owner() -> None:
    # After the schema (README §3.4) and before any lookup: others never learn whether an event exists.
    if not current_principal().is_platform_owner:
        raise errors.Forbidden()


@admin_blp.route("/stripe-events")
class StripeEvents(MethodView):
    @admin_blp.response(200, list_schema(StripeEventSchema))
    @error_responses(admin_blp, 400, 401, 403, *COMMON)
    @require_auth
    @admin_blp.arguments(StripeEventListArgsSchema, location="query")
    def get(self, args: dict[str, Any]) -> Any:
        """List stored Stripe events, newest first"""
        _require_platform_owner()
        stmt = select(StripeEvent).order_by(StripeEvent.received_at.desc(), StripeEvent.id)
        if args.get("status"):
            stmt = stmt.where(StripeEvent.status == args["status"])
        if args.get("type"):
            stmt = stmt.where(StripeEvent.type == args["type"])
        result = paginate(db.session, stmt, args["page"], args["per_page"])
        result["items"] = [_event_view(e) for e in result["items"]]
        return result


@admin_blp.route("/stripe-events/<event_id>")
class StripeEventItem(MethodView):
    @admin_blp.response(200, StripeEventDetailSchema)
    @error_responses(admin_blp, 401, 403, 404, *COMMON)
    @require_auth
    @_event_id_path
    def get(self, event_id: str) -> Any:
        """A stored Stripe event with its payload"""
        _require_platform_owner()
        return _event_view(processing.get_event(db.session, event_id), payload=True)


@admin_blp.route("/stripe-events/<event_id>/replay")
class StripeEventReplay(MethodView):
    @admin_blp.response(202, StripeEventSchema)
    @error_responses(admin_blp, *JSON_BODY, 401, 403, 404, 409, *COMMON)
    @require_auth
    @_event_id_path
    @admin_blp.arguments(EmptySchema)
    def post(self, _data: dict[str, Any], event_id: str) -> Any:
        """Process a Stripe event again (any status except processing)"""
        _require_platform_owner()
        event = processing.replay_event(db.session, event_id)
        db.session.commit()
        log.info("stripe.event_replay_requested", event_id=event_id)
        return _event_view(event)


# ---- the webhook ----------------------------------------------------------------------------------


@webhook_bp.post("/webhooks/stripe")
@route_limit("1000 per minute", key="ip")
@body_limit(WEBHOOK_MAX_BYTES)
def stripe_webhook() -> Response:
    """Verify the raw body, store the event, acknowledge; never any business logic here."""
    body = request.get_data(cache=False)  # the exact bytes Stripe signed, before any parsing
    try:
        webhooks.ingest_webhook(body, request.headers.get("Stripe-Signature"))
    except DataError:
        # Signed, parsed, but Postgres refuses a value (e.g. a lone surrogate in a string): retrying
        # cannot help, so this is the sender's error, not a 503 that Stripe would retry for days.
        log.warning("stripe.event_unstorable")
        raise webhooks.InvalidPayload() from None
    except SQLAlchemyError:
        log.error("stripe.event_store_failed", exc_info=True)
        raise errors.ServiceUnavailable("database", "The event could not be stored; retry later.") from None
    return jsonify({"received": True})
