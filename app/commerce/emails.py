"""The commerce emails (jobs.md §8.4): purchase-receipt, new-sale, refund-processed.

Queued in the business transaction through the outbox with the spec's dedupe keys, so a
replayed or concurrent event can never send one twice.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from app.commerce.models import Purchase
from app.content.models import Content
from app.identity.models import User
from app.notifications import service as notifications
from app.notifications.rendering import Money
from app.orgs.models import Membership, Organization

log = structlog.get_logger(__name__)


def queue_purchase_emails(session: Session, purchase: Purchase, content: Content, customer: User) -> None:
    """Receipt to the customer and new-sale to the org owner (never for duplicates)."""
    # The org and its owner in one round trip (the owner row is missing only in broken data).
    organization, owner = session.execute(
        select(Organization, User)
        .outerjoin(Membership, and_(Membership.organization_id == Organization.id, Membership.role == "owner"))
        .outerjoin(User, User.id == Membership.user_id)
        .where(Organization.id == content.organization_id)
    ).one()
    amount = Money(purchase.amount_cents, purchase.currency)
    notifications.queue_email(
        session,
        "purchase-receipt",
        customer.email,
        customer.id,
        organization.id,
        {
            "content_title": content.title,
            "content_url": notifications.content_url(organization.slug, content.slug),
            "amount": amount,
            "purchase_id": str(purchase.id),
            "purchased_at": purchase.purchased_at,
            "library_url": notifications.library_url(),
            "user_name": customer.name,
        },
        f"purchase-receipt:{purchase.id}",
    )
    if owner is None:
        log.warning("commerce.no_org_owner", organization_id=str(organization.id))
        return
    notifications.queue_email(
        session,
        "new-sale",
        owner.email,
        owner.id,
        organization.id,
        {
            "content_title": content.title,
            "amount": amount,
            "customer_name": customer.name,
            "dashboard_url": notifications.dashboard_url(organization.id),
            "user_name": owner.name,
        },
        f"new-sale:{purchase.id}",
    )


def queue_refund_email(session: Session, purchase: Purchase, previous_cents: int, refunded_at: datetime) -> None:
    """refund-processed, once per increase of the refunded amount (the key carries the new total)."""
    customer = session.get(User, purchase.customer_id)
    content = session.get(Content, purchase.content_id)
    if customer is None or content is None:  # FKs make this impossible; never fail a refund over an email
        return
    total = purchase.refunded_amount_cents
    notifications.queue_email(
        session,
        "refund-processed",
        customer.email,
        customer.id,
        purchase.organization_id,
        {
            "content_title": content.title,
            "refund_amount": Money(total - previous_cents, purchase.currency),
            "total_refunded": Money(total, purchase.currency),
            "original_amount": Money(purchase.amount_cents, purchase.currency),
            "is_full_refund": total >= purchase.amount_cents,
            "is_duplicate": purchase.is_duplicate,
            "refunded_at": refunded_at,
            "user_name": customer.name,
        },
        f"refund-processed:{purchase.id}:{total}",
    )
