"""orgs tables (data-model.md): organizations, memberships, invitations, org_settings."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import CHAR
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampMixin, uuid_pk

MEMBER_ROLES = ("owner", "admin", "creator")
INVITATION_ROLES = ("admin", "creator")  # ownership is transferred, never invited
INVITATION_STATUSES = ("pending", "accepted", "revoked")  # stored; ``expired`` is computed
ROLE_RANK = {"creator": 1, "admin": 2, "owner": 3}
RESERVED_SLUGS = frozenset(
    {"api", "admin", "www", "app", "static", "storage", "webhooks", "health", "metrics", "docs"}
    | {"payments", "catalog", "me", "auth"}
)


class Organization(TimestampMixin, Base):
    __tablename__ = "organizations"
    __table_args__ = (
        CheckConstraint("slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND char_length(slug) BETWEEN 3 AND 50", name="slug_format"),
        CheckConstraint("char_length(name) BETWEEN 1 AND 100", name="name_length"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    description: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


class Membership(TimestampMixin, Base):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("organization_id", "user_id", name="uq_memberships_organization_id_user_id"),
        CheckConstraint("role IN ('owner', 'admin', 'creator')", name="role"),
        Index("ux_memberships_one_owner", "organization_id", unique=True, postgresql_where=text("role = 'owner'")),
        Index("ix_memberships_user_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))


class Invitation(TimestampMixin, Base):
    """A pending or settled offer to join an org as staff, addressed to an email (api.md §4).

    Only the SHA-256 of the token is kept. At most one ``pending`` row per (org, email): a new
    invitation revokes the previous one in the same transaction.
    """

    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'creator')", name="role"),
        CheckConstraint("status IN ('pending', 'accepted', 'revoked')", name="status"),
        Index(
            "ux_invitations_pending",
            "organization_id",
            "email",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_invitations_org_created", "organization_id", text("created_at DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(CHAR(64), unique=True)
    status: Mapped[str] = mapped_column(String(20), server_default="pending", default="pending")
    invited_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    accepted_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class OrgSettings(TimestampMixin, Base):
    """Branding and switches; one row per organization, inserted with it."""

    __tablename__ = "org_settings"
    __table_args__ = (
        CheckConstraint("primary_color ~ '^#[0-9A-F]{6}$'", name="primary_color"),
        CheckConstraint("secondary_color IS NULL OR secondary_color ~ '^#[0-9A-F]{6}$'", name="secondary_color"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    platform_name: Mapped[str] = mapped_column(String(100))
    primary_color: Mapped[str] = mapped_column(CHAR(7), server_default="#3B82F6", default="#3B82F6")
    secondary_color: Mapped[str | None] = mapped_column(CHAR(7))
    support_email: Mapped[str] = mapped_column(String(254))
    contact_url: Mapped[str | None] = mapped_column(String(500))
    business_name: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC", default="UTC")
    enable_signups: Mapped[bool] = mapped_column(Boolean, server_default=text("true"), default=True)
    enable_purchases: Mapped[bool] = mapped_column(Boolean, server_default=text("true"), default=True)
    logo_key: Mapped[str | None] = mapped_column(String(500))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


__all__ = [
    "INVITATION_ROLES",
    "INVITATION_STATUSES",
    "MEMBER_ROLES",
    "RESERVED_SLUGS",
    "ROLE_RANK",
    "Invitation",
    "Membership",
    "OrgSettings",
    "Organization",
]
