"""Shared pieces of the commerce and payments tests: a shop (org, owner, priced content, customer),
Stripe deliveries, and running the worker's code inside the test's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.commerce.models import CheckoutSession, Purchase, StripeEvent
from app.content.models import Content
from app.identity.models import User
from app.notifications.models import EmailOutbox
from app.orgs.models import Organization
from tests import factories
from tests.factories import committed_session
from tests.fakes import stripe_objects as so
from tests.identity.helpers import make_org

WEBHOOK = "/webhooks/stripe"
Sent = list[tuple[str, tuple[Any, ...], float | None]]


@dataclass
class Shop:
    owner: User
    org: Organization
    content: Content
    customer: User

    def metadata(self, content: Content | None = None, customer: User | None = None) -> dict[str, str]:
        content = content or self.content
        return {
            "customer_id": str((customer or self.customer).id),
            "content_id": str(content.id),
            "organization_id": str(content.organization_id),
        }

    def paid_session(self, *, stored: bool = True, **kwargs: Any) -> dict[str, Any]:
        """A paid Checkout Session of this shop's metadata (or the ``metadata`` given).

        ``stored``: its ``checkout_sessions`` row exists, as checkout stores it on creation (open,
        unpaid, the same amount and currency), so that fulfilment finds the session it created.
        Sessions with metadata of the test's own are never stored.
        """
        kwargs.setdefault("amount_total", self.content.price_cents)
        content, customer = kwargs.pop("content", None), kwargs.pop("customer", None)
        given = "metadata" in kwargs
        metadata = kwargs.pop("metadata") if given else self.metadata(content, customer)
        obj = so.checkout_session(metadata=metadata, **kwargs)
        if stored and not given:
            store_session(obj)
        return obj


def committed_paid_session(flask_app: Flask, shop: Shop, **kwargs: Any) -> dict[str, Any]:
    """``shop.paid_session`` with its row committed (tests whose web and worker are other sessions)."""
    with committed_session(flask_app):
        return shop.paid_session(**kwargs)


def store_session(obj: dict[str, Any]) -> CheckoutSession:
    """The ``checkout_sessions`` row checkout would have stored for ``obj`` when it was created."""
    meta = obj["metadata"]
    row: CheckoutSession = factories.CheckoutSessionFactory(
        id=obj["id"],
        provider="local" if obj["id"].startswith("cs_local_") else "stripe",
        customer_id=uuid.UUID(meta["customer_id"]),
        content_id=uuid.UUID(meta["content_id"]),
        organization_id=uuid.UUID(meta["organization_id"]),
        amount_cents=obj["amount_total"],
        currency=obj["currency"],
        expires_at=datetime.fromtimestamp(obj["expires_at"], UTC),
    )
    return row


def make_shop(price_cents: int = 1999) -> Shop:
    now = datetime.now(UTC)
    owner = factories.UserFactory(email_verified_at=now, name="Olga Owner")
    org = make_org(owner)
    content = factories.PaidContentFactory(
        organization_id=org.id, created_by=owner.id, price_cents=price_cents, title="Knife Skills"
    )
    customer = factories.UserFactory(email_verified_at=now, name="Ana Customer")
    return Shop(owner, org, content, customer)


@contextmanager
def in_app(flask_app: Flask, session: Session) -> Iterator[None]:
    """An app context whose ``db.session`` is the test's session (worker code, services)."""
    with flask_app.app_context():
        g.db_session = session
        try:
            yield
        finally:
            g.pop("db_session", None)  # the fixture owns and closes it


def deliver(client: FlaskClient, evt: dict[str, Any] | bytes, **kwargs: Any) -> Any:
    body, headers = so.signed(evt, **kwargs)
    return client.post(WEBHOOK, data=body, headers=headers)


def ingest_event(flask_app: Flask, session: Session, evt: dict[str, Any], *, source: str = "webhook") -> str:
    """Store ``evt`` through the ingest function (signature included) and commit."""
    from app.commerce.webhooks import ingest

    body, headers = so.signed(evt)
    with in_app(flask_app, session):
        ingest(session, body, headers["Stripe-Signature"], source=source)
        session.commit()
    return str(evt["id"])


def process(flask_app: Flask, session: Session, event_id: str) -> str | None:
    """What the worker does for one ``payments.process_stripe_event`` message."""
    from tasks.payments import process_event

    with in_app(flask_app, session):
        return process_event(session, event_id)


def make_due(session: Session, event_id: str) -> None:
    """Skip the backoff wait of a failed event."""
    session.execute(
        StripeEvent.__table__.update()
        .where(StripeEvent.id == event_id)
        .values(next_attempt_at=func.now() - timedelta(seconds=1))
    )
    session.commit()


def event_row(session: Session, event_id: str) -> StripeEvent:
    session.expire_all()
    row = session.get(StripeEvent, event_id)
    assert row is not None
    return row


def purchases(session: Session, **where: Any) -> list[Purchase]:
    session.expire_all()
    stmt = select(Purchase).order_by(Purchase.created_at)
    for name, value in where.items():
        stmt = stmt.where(getattr(Purchase, name) == value)
    return list(session.scalars(stmt))


def outbox(session: Session, template: str | None = None) -> list[EmailOutbox]:
    session.expire_all()
    stmt = select(EmailOutbox).order_by(EmailOutbox.created_at)
    if template:
        stmt = stmt.where(EmailOutbox.template == template)
    return list(session.scalars(stmt))


def task_names(sent: Sent) -> list[str]:
    return [name for name, _, _ in sent]
