"""Checkout, checkout-session status and the customer's purchases (api.md §9).

The price always comes from the database, never from the client; the provider session carries
only ids in its metadata, and the webhook pipeline (``fulfilment``) is the one place a payment
becomes a purchase. Nothing here commits.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import structlog
from flask import current_app
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app import errors
from app.access.models import ContentAccess
from app.commerce import records
from app.commerce.models import CheckoutSession, Purchase
from app.commerce.pipeline import describe
from app.commerce.reconciliation import insert_recon_event
from app.commerce.schemas import SESSION_ID
from app.content.models import Content
from app.identity.models import User
from app.media.models import MediaItem
from app.orgs.access import is_staff
from app.orgs.models import OrgSettings
from app.payments import CheckoutRequest, PaymentProvider, PermanentProviderError, ProviderError, get_provider
from app.payments.base import StripeObject
from app.schemas import paginate

log = structlog.get_logger(__name__)

PLACEHOLDER = "{CHECKOUT_SESSION_ID}"
REUSE_MIN_REMAINING = timedelta(minutes=5)
IDEMPOTENCY_WINDOW_SECONDS = 600


def utcnow() -> datetime:
    return datetime.now(UTC)


def content_not_found() -> errors.NotFound:
    return errors.NotFound("The content was not found.", code="CONTENT_NOT_FOUND")


def session_not_found() -> errors.NotFound:
    return errors.NotFound("The checkout session was not found.", code="CHECKOUT_SESSION_NOT_FOUND")


# ---- redirect URLs ---------------------------------------------------------------------------


def success_url_for(given: str | None) -> str:
    """The given URL (``session_id={CHECKOUT_SESSION_ID}`` appended unless it has the
    placeholder) or the default ``FRONTEND_URL/checkout/success?session_id=…``."""
    if given is None:
        return f"{current_app.config['FRONTEND_URL']}/checkout/success?session_id={PLACEHOLDER}"
    if PLACEHOLDER in given:
        return given
    base, hash_sign, fragment = given.partition("#")
    separator = "" if base.endswith(("?", "&")) else ("&" if "?" in base else "?")
    url = f"{base}{separator}session_id={PLACEHOLDER}{hash_sign}{fragment}"
    if len(url) > 2000:
        raise errors.ValidationError.field("success_url", "Longer than 2000 characters.")
    return url


def cancel_url_for(given: str | None, content_id: uuid.UUID) -> str:
    if given is not None:
        return given
    return f"{current_app.config['FRONTEND_URL']}/checkout/cancelled?{urlencode({'content_id': str(content_id)})}"


def idempotency_key(user_id: uuid.UUID, content_id: uuid.UUID, price_cents: int, now: datetime) -> str:
    return f"checkout:{user_id}:{content_id}:{price_cents}:{int(now.timestamp()) // IDEMPOTENCY_WINDOW_SECONDS}"


# ---- checkout ----------------------------------------------------------------------------------


def _check_can_buy(session: Session, user: User, content: Content) -> None:
    """The spec's order after the content lookup: verified email, purchases on, priced, then 409s."""
    if not user.email_verified:
        raise errors.Forbidden("Verify your email address before buying.", code="EMAIL_NOT_VERIFIED")
    enabled = session.scalar(
        select(OrgSettings.enable_purchases).where(OrgSettings.organization_id == content.organization_id)
    )
    if enabled is False:
        raise errors.Forbidden("Purchases are disabled for this organization.", code="PURCHASES_DISABLED")
    if not content.price_cents:
        raise errors.ValidationError("This content is free.", code="CONTENT_IS_FREE")
    if is_staff(session, user, content.organization_id):
        raise errors.Conflict("Staff of the organization already have access.", code="ALREADY_HAS_ACCESS")
    owned = session.scalar(
        select(Purchase.id).where(
            Purchase.customer_id == user.id,
            Purchase.content_id == content.id,
            Purchase.status == "completed",
            Purchase.is_duplicate.is_(False),
        )
    )
    if owned is not None:
        raise errors.Conflict("You already bought this content.", code="ALREADY_PURCHASED")
    granted = session.scalar(
        select(ContentAccess.id).where(
            ContentAccess.user_id == user.id,
            ContentAccess.content_id == content.id,
            ContentAccess.source == "complimentary",
            ContentAccess.revoked_at.is_(None),
        )
    )
    if granted is not None:
        raise errors.Conflict("You already have access to this content.", code="ALREADY_HAS_ACCESS")


def start_checkout(
    session: Session, user: User, content_id: uuid.UUID, success_url: str | None, cancel_url: str | None
) -> CheckoutSession:
    """Reuse the caller's open session for the same item, price and redirects, or create one."""
    content = session.get(Content, content_id)
    if content is None or content.deleted_at is not None or content.status != "published":
        raise content_not_found()
    _check_can_buy(session, user, content)
    price = content.price_cents
    assert price is not None and price > 0
    success = success_url_for(success_url)
    cancel = cancel_url_for(cancel_url, content.id)
    now = utcnow()
    reusable = session.scalars(
        select(CheckoutSession)
        .where(
            CheckoutSession.customer_id == user.id,
            CheckoutSession.content_id == content.id,
            CheckoutSession.status == "open",
            CheckoutSession.amount_cents == price,
            CheckoutSession.currency == content.currency,
            CheckoutSession.success_url == success,
            CheckoutSession.cancel_url == cancel,
            CheckoutSession.expires_at >= now + REUSE_MIN_REMAINING,
        )
        .order_by(CheckoutSession.created_at.desc())
        .limit(1)
    ).first()
    if reusable is not None:
        return reusable
    provider = get_provider()
    metadata = records.session_metadata(user.id, content.id, content.organization_id)
    request = CheckoutRequest(
        amount_cents=price,
        currency=content.currency,
        product_name=content.title,
        customer_email=user.email,
        client_reference_id=str(user.id),
        metadata=metadata,
        success_url=success,
        cancel_url=cancel,
        expires_at=now + timedelta(minutes=current_app.config["CHECKOUT_SESSION_TTL_MINUTES"]),
        idempotency_key=idempotency_key(user.id, content.id, price, now),
    )
    try:
        created = _create_at_provider(provider, request)
    except ProviderError as exc:
        log.warning("checkout.provider_failed", error=describe(exc), transient=exc.transient)
        raise errors.ServiceUnavailable("payment_provider", "The payment provider is unavailable.") from exc
    session_id, url = created.get("id"), created.get("url")
    if not isinstance(session_id, str) or not SESSION_ID.match(session_id) or not isinstance(url, str):
        log.error("checkout.provider_bad_response")
        raise errors.ServiceUnavailable("payment_provider", "The payment provider is unavailable.")
    expires = created.get("expires_at")
    expires_at = (
        datetime.fromtimestamp(expires, UTC)
        if isinstance(expires, int) and not isinstance(expires, bool)
        else request.expires_at
    )
    # A replayed idempotent request returns the session we may already have stored.
    records.store_checkout_session(
        session,
        session_id=session_id,
        provider=provider.name,
        customer_id=user.id,
        content_id=content.id,
        organization_id=content.organization_id,
        amount_cents=price,
        currency=content.currency,
        url=url,
        success_url=success,
        cancel_url=cancel,
        expires_at=expires_at,
    )
    row = session.get(CheckoutSession, session_id)
    assert row is not None
    log.info("checkout.session_created", checkout_session_id=session_id, provider=provider.name)
    return row


def _create_at_provider(provider: PaymentProvider, request: CheckoutRequest) -> StripeObject:
    """Create with the spec's key; if that key was already used in this 10-minute window with
    other parameters (other redirect URLs, or an ``expires_at`` from an earlier second after a
    request whose commit failed), Stripe refuses it: retry once under a key that also names the
    parameters, so the caller gets a session instead of a 503 for the rest of the window."""
    try:
        return provider.create_checkout_session(request)
    except PermanentProviderError as exc:
        if not exc.idempotency_conflict:
            raise
    varying = f"{request.success_url}|{request.cancel_url}|{int(request.expires_at.timestamp())}"
    digest = hashlib.sha256(varying.encode("utf-8")).hexdigest()[:16]
    log.info("checkout.idempotency_conflict")
    return provider.create_checkout_session(replace(request, idempotency_key=f"{request.idempotency_key}:{digest}"))


# ---- session status ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutStatus:
    row: CheckoutSession
    status: str
    payment_status: str
    purchase: Purchase | None
    pending_fulfilment: bool

    def view(self) -> dict[str, Any]:
        return {
            "session_id": self.row.id,
            "status": self.status,
            "payment_status": self.payment_status,
            "content_id": self.row.content_id,
            "amount_cents": self.row.amount_cents,
            "currency": self.row.currency,
            "expires_at": self.row.expires_at,
            "purchase": self.purchase,
            "pending_fulfilment": self.pending_fulfilment,
        }


def checkout_status(session: Session, user_id: uuid.UUID, session_id: str) -> CheckoutStatus:
    """Read from ``checkout_sessions``; while ``open``, ask the provider. Paid at the provider but
    not fulfilled here -> ``pending_fulfilment`` and a ``recon_`` event (the webhook may be lost)."""
    if not SESSION_ID.match(session_id):
        raise session_not_found()
    row = session.get(CheckoutSession, session_id)
    if row is None or row.customer_id != user_id:
        raise session_not_found()
    purchase = session.scalars(select(Purchase).where(Purchase.checkout_session_id == row.id)).first()
    status, payment_status = row.status, row.payment_status
    if row.status == "open":
        try:
            remote = get_provider().retrieve_checkout_session(row.id)
        except ProviderError as exc:
            log.warning("checkout.status_provider_failed", error=describe(exc))
            remote = None
        if remote is not None:
            if remote.get("status") in {"open", "complete", "expired"}:
                status = remote["status"]
            if remote.get("payment_status") in {"paid", "unpaid"}:
                payment_status = remote["payment_status"]
            if status == "complete" and payment_status == "paid" and purchase is None:
                insert_recon_event(session, remote)
    pending = status == "complete" and payment_status == "paid" and purchase is None
    return CheckoutStatus(row, status, payment_status, purchase, pending)


# ---- the customer's purchases ------------------------------------------------------------------


def purchase_view(purchase: Purchase) -> dict[str, Any]:
    return {
        "id": purchase.id,
        "customer_id": purchase.customer_id,
        "content_id": purchase.content_id,
        "organization_id": purchase.organization_id,
        "amount_cents": purchase.amount_cents,
        "currency": purchase.currency,
        "status": purchase.status,
        "is_duplicate": purchase.is_duplicate,
        "refunded_amount_cents": purchase.refunded_amount_cents,
        "refund_status": purchase.refund_status,
        "refund_reason": purchase.refund_reason,
        "purchased_at": purchase.purchased_at,
        "refunded_at": purchase.refunded_at,
        "disputed_at": purchase.disputed_at,
        "dispute_status": purchase.dispute_status,
    }


def _thumbnail_url(key: str | None) -> str | None:
    if not key:
        return None
    from app.storage import get_storage

    try:
        return get_storage().presign_download(key, current_app.config["DOWNLOAD_URL_TTL_SECONDS"])
    except Exception:  # a storage hiccup must not hide the customer's purchases
        log.warning("storage.presign_failed", exc_info=True)
        return None


def list_purchases(
    session: Session, user_id: uuid.UUID, *, status: str | None, page: int, per_page: int
) -> dict[str, Any]:
    stmt: Select[Any] = (
        select(Purchase, Content, MediaItem.thumbnail_key)  # type: ignore[assignment]
        .join(Content, Content.id == Purchase.content_id)
        .outerjoin(MediaItem, MediaItem.id == Content.media_id)
        .where(Purchase.customer_id == user_id)
        .order_by(Purchase.purchased_at.desc(), Purchase.id.desc())
    )
    if status:
        stmt = stmt.where(Purchase.status == status)
    result = paginate(session, stmt, page, per_page)
    result["items"] = [
        {
            **purchase_view(purchase),
            "content": {
                "id": content.id,
                "title": content.title,
                "slug": content.slug,
                "content_type": content.content_type,
                "thumbnail_url": _thumbnail_url(thumbnail_key),
            },
        }
        for purchase, content, thumbnail_key in result["items"]
    ]
    return result
