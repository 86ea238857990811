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
