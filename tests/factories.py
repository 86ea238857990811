"""factory-boy factories. They flush, never commit; the session is bound per test."""

from __future__ import annotations

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy.orm import Session

from app.system.models import WorkerPing

_session: Session | None = None


def bind(session: Session | None) -> None:
    """Point every factory at the test's session (the ``db_session`` fixture does this)."""
    global _session
    _session = session


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
