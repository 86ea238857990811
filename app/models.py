"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from app.access.models import ContentAccess, ContentDailyStats, PlaybackProgress
from app.audit import AdminAuditEvent
from app.commerce.models import CheckoutSession, Purchase, StripeEvent
from app.content.models import Content
from app.db import Base
from app.identity.models import AuthSession, Credential, User, VerificationToken
from app.media.models import MediaCaption, MediaItem
from app.notifications.models import EmailOutbox
from app.orgs.models import Membership, Organization, OrgSettings
from app.system.models import WorkerPing

__all__ = [
    "AdminAuditEvent",
    "AuthSession",
    "Base",
    "CheckoutSession",
    "Content",
    "ContentAccess",
    "ContentDailyStats",
    "Credential",
    "EmailOutbox",
    "MediaCaption",
    "MediaItem",
    "Membership",
    "OrgSettings",
    "Organization",
    "PlaybackProgress",
    "Purchase",
    "StripeEvent",
    "User",
    "VerificationToken",
    "WorkerPing",
]
