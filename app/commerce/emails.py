"""The commerce emails (jobs.md §8.4): purchase-receipt, new-sale, refund-processed.

Queued in the business transaction through the outbox with the spec's dedupe keys, so a
replayed or concurrent event can never send one twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy.orm import Session

from app.commerce.models import Purchase
from app.commerce.pipeline import SessionFacts
from app.content.models import Content
from app.identity.models import User
from app.notifications import service as notifications
from app.notifications.rendering import Money

log = structlog.get_logger(__name__)


def queue_purchase_emails(
    session: Session, facts: SessionFacts, purchase_id: uuid.UUID, purchased_at: datetime
) -> None:
    """Receipt to the customer and new-sale to the org owner (never for duplicates), in one INSERT.

    ``facts`` (``fulfilment.session_facts``) already holds the org and its owner.
    """
    amount = Money(facts.amount_cents, facts.currency)
    emails = [
        notifications.QueuedEmail(
            "purchase-receipt",
            facts.customer_email,
            facts.customer_id,
            facts.organization_id,
            {
                "content_title": facts.content_title,
                "content_url": notifications.content_url(facts.org_slug, facts.content_slug),
                "amount": amount,
                "purchase_id": str(purchase_id),
                "purchased_at": purchased_at,
                "library_url": notifications.library_url(),
                "user_name": facts.customer_name,
            },
            f"purchase-receipt:{purchase_id}",
        )
    ]
    if facts.owner_id is None or facts.owner_email is None:
        log.warning("commerce.no_org_owner", organization_id=str(facts.organization_id))
    else:
        emails.append(
            notifications.QueuedEmail(
                "new-sale",
                facts.owner_email,
                facts.owner_id,
                facts.organization_id,
                {
                    "content_title": facts.content_title,
                    "amount": amount,
                    "customer_name": facts.customer_name,
                    "dashboard_url": notifications.dashboard_url(facts.organization_id),
                    "user_name": facts.owner_name,
                },
                f"new-sale:{purchase_id}",
            )
        )
    notifications.queue_emails(session, emails)


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
