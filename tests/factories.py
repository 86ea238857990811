"""factory-boy factories. They flush, never commit; the session is bound per test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import factory
from factory.alchemy import SQLAlchemyModelFactory
from flask import Flask
from sqlalchemy.orm import Session

from app.system.models import WorkerPing

_session: Session | None = None


def bind(session: Session | None) -> None:
    """Point every factory at the test's session (the ``db_session`` fixture does this)."""
    global _session
    _session = session


@contextmanager
def committed_session(flask_app: Flask) -> Iterator[Session]:
    """A real session whose work is committed on exit (end-to-end tests with other processes)."""
    session = flask_app.extensions["db"].sessionmaker()
    bind(session)
    try:
        yield session
        session.commit()
    finally:
        bind(None)
        session.close()


def current_session() -> Session:
    assert _session is not None, "factories need the db_session fixture"
    return _session


class BaseFactory(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = current_session
        sqlalchemy_session_persistence = "flush"


class WorkerPingFactory(BaseFactory):
    class Meta:
        model = WorkerPing

    worker = factory.Sequence(lambda n: f"worker-{n}")


# ---- identity, orgs and the email outbox (added with the email pipeline) ---------------------------

from app.identity.models import User  # noqa: E402
from app.notifications.models import EmailOutbox  # noqa: E402
from app.orgs.models import Organization, OrgSettings  # noqa: E402


class UserFactory(BaseFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Sequence(lambda n: f"User {n}")


class OrgSettingsFactory(BaseFactory):
    class Meta:
        model = OrgSettings

    platform_name = factory.Sequence(lambda n: f"Org {n}")
    support_email = factory.Sequence(lambda n: f"support{n}@example.com")
    timezone = "UTC"


class OrganizationFactory(BaseFactory):
    """An organization with its ``org_settings`` row (``settings__timezone="Europe/Paris"`` etc.)."""

    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")
    created_by = factory.LazyFunction(lambda: UserFactory().id)

    @factory.post_generation
    def settings(obj: Organization, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            kwargs.setdefault("platform_name", obj.name)
            OrgSettingsFactory(organization_id=obj.id, **kwargs)


class OutboxFactory(BaseFactory):
    """An ``email_outbox`` row (a ``welcome`` email by default)."""

    class Meta:
        model = EmailOutbox

    dedupe_key = factory.Sequence(lambda n: f"test:{n}")
    template = "welcome"
    recipient = factory.Sequence(lambda n: f"recipient{n}@example.com")
    context = factory.LazyFunction(lambda: {"login_url": "http://localhost:3000/login"})


# ---- credentials, sessions and memberships (identity and orgs) -----------------------------------

from datetime import UTC, datetime, timedelta  # noqa: E402

from argon2 import PasswordHasher  # noqa: E402

from app.identity.models import AuthSession, Credential  # noqa: E402
from app.orgs.models import Membership  # noqa: E402

TEST_PASSWORD = "Passw0rd-test"
# Cheap argon2id parameters (tests/identity/helpers.py FAST_HASHER_PARAMS): verifying stays fast
# whatever hasher is current; with the production hasher a login re-hashes it once.
TEST_PASSWORD_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=16, salt_len=16).hash(
    TEST_PASSWORD
)


class CredentialFactory(BaseFactory):
    class Meta:
        model = Credential

    password_hash = TEST_PASSWORD_HASH


class AccountFactory(UserFactory):
    """A user who can log in with ``TEST_PASSWORD``."""

    @factory.post_generation
    def credential(obj: User, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            CredentialFactory(user_id=obj.id, **kwargs)


class MembershipFactory(BaseFactory):
    class Meta:
        model = Membership

    role = "creator"


class AuthSessionFactory(BaseFactory):
    class Meta:
        model = AuthSession

    token_hash = factory.Sequence(lambda n: f"{n:064x}")
    expires_at = factory.LazyFunction(lambda: datetime.now(UTC) + timedelta(hours=24))


# ---- media (added with the media ingest pipeline) ------------------------------------------------

import uuid  # noqa: E402

from app.media.models import MediaItem  # noqa: E402
from app.storage import keys as storage_keys  # noqa: E402


class MediaItemFactory(BaseFactory):
    """A ``media_items`` row, ``uploaded`` by default (its original is not stored: tests put it)."""

    class Meta:
        model = MediaItem

    id = factory.LazyFunction(uuid.uuid4)
    organization_id = factory.LazyFunction(lambda: OrganizationFactory().id)
    created_by = factory.LazyFunction(lambda: UserFactory().id)
    title = factory.Sequence(lambda n: f"Media {n}")
    media_type = "video"
    mime_type = factory.LazyAttribute(lambda o: "video/mp4" if o.media_type == "video" else "audio/mpeg")
    file_size_bytes = 1024
    status = "uploaded"
    original_key = factory.LazyAttribute(lambda o: storage_keys.original_key(o.organization_id, o.id, o.mime_type))


# ---- commerce: paid content, checkout sessions, purchases, Stripe events (issue 6) -----------------

from app.access.models import ContentAccess  # noqa: E402
from app.commerce.models import CheckoutSession, Purchase, StripeEvent  # noqa: E402
from app.content.models import Content  # noqa: E402


class PaidContentFactory(BaseFactory):
    """A published content item priced 19.99 USD, with its media (``uploaded``) in the same org."""

    class Meta:
        model = Content

    id = factory.LazyFunction(uuid.uuid4)
    organization_id = factory.LazyFunction(lambda: OrganizationFactory().id)
    created_by = factory.LazyFunction(lambda: UserFactory().id)
    media_id = factory.LazyAttribute(
        lambda o: MediaItemFactory(organization_id=o.organization_id, created_by=o.created_by).id
    )
    title = factory.Sequence(lambda n: f"Lesson {n}")
    slug = factory.Sequence(lambda n: f"lesson-{n}")
    content_type = "video"
    price_cents = 1999
    currency = "usd"
    visibility = factory.LazyAttribute(lambda o: "purchased_only" if (o.price_cents or 0) > 0 else "public")
    status = "published"
    published_at = factory.LazyFunction(lambda: datetime.now(UTC))


class CheckoutSessionFactory(BaseFactory):
    class Meta:
        model = CheckoutSession

    id = factory.LazyFunction(lambda: f"cs_test_{uuid.uuid4().hex}")
    provider = "stripe"
    amount_cents = 1999
    currency = "usd"
    url = factory.LazyAttribute(lambda o: f"https://checkout.stripe.com/c/pay/{o.id}")
    success_url = "http://localhost:3000/checkout/success?session_id={CHECKOUT_SESSION_ID}"
    cancel_url = "http://localhost:3000/checkout/cancelled"
    expires_at = factory.LazyFunction(lambda: datetime.now(UTC) + timedelta(minutes=30))


class PurchaseFactory(BaseFactory):
    """A completed purchase with its checkout session (pass ``customer_id`` and ``content``)."""

    class Meta:
        model = Purchase
        exclude = ("content",)

    content = factory.SubFactory(PaidContentFactory)
    id = factory.LazyFunction(uuid.uuid4)
    customer_id = factory.LazyFunction(lambda: UserFactory().id)
    content_id = factory.LazyAttribute(lambda o: o.content.id)
    organization_id = factory.LazyAttribute(lambda o: o.content.organization_id)
    provider = "stripe"
    checkout_session_id = factory.LazyAttribute(
        lambda o: (
            CheckoutSessionFactory(
                customer_id=o.customer_id,
                content_id=o.content_id,
                organization_id=o.organization_id,
                amount_cents=o.amount_cents,
                status="complete",
                payment_status="paid",
                payment_intent_id=o.payment_intent_id,
            ).id
        )
    )
    payment_intent_id = factory.LazyFunction(lambda: f"pi_test_{uuid.uuid4().hex}")
    amount_cents = factory.LazyAttribute(lambda o: o.content.price_cents)
    currency = "usd"
    status = "completed"
    purchased_at = factory.LazyFunction(lambda: datetime.now(UTC))


class GrantFactory(BaseFactory):
    class Meta:
        model = ContentAccess

    source = "complimentary"
    granted_at = factory.LazyFunction(lambda: datetime.now(UTC))


class StripeEventFactory(BaseFactory):
    class Meta:
        model = StripeEvent

    id = factory.LazyFunction(lambda: f"evt_test_{uuid.uuid4().hex}")
    type = "checkout.session.completed"
    livemode = False
    stripe_created_at = factory.LazyFunction(lambda: datetime.now(UTC))
    payload = factory.LazyAttribute(
        lambda o: {"id": o.id, "type": o.type, "created": 0, "livemode": o.livemode, "data": {"object": {}}}
    )


# ---- end of commerce factories ---------------------------------------------------------------------
