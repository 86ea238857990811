"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from app.dashboard.models import AdminAuditEvent
from app.db import Base
from app.identity.models import AuthSession, Credential, User, VerificationToken
from app.notifications.models import EmailOutbox
from app.orgs.models import Membership, Organization, OrgSettings
from app.system.models import WorkerPing

__all__ = [
    "AdminAuditEvent",
    "AuthSession",
    "Base",
    "Credential",
    "EmailOutbox",
    "Membership",
    "OrgSettings",
    "Organization",
    "User",
    "VerificationToken",
    "WorkerPing",
]
