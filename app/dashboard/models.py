"""dashboard tables: admin_audit_events (append-only; data-model.md) and the revenue rollups.

The rollups (``dashboard_daily_revenue``, ``dashboard_content_revenue``, ``dashboard_customers``,
``dashboard_customer_revenue``) are
not in data-model.md: they are kept by Postgres triggers on ``purchases`` and ``content_access``
(migrations 0006, 0007), in the same transaction as the purchase or grant change, so the dashboard reads a
few hundred rows instead of every purchase of the org. The application never writes them.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, ForeignKeyConstraint, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import CHAR
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column, uuid_pk

ACTOR_ROLES = ("owner", "admin", "creator", "platform_owner", "system")
AUDIT_ACTIONS = (
    "org.update",
    "member.add",
    "member.role_change",
    "member.remove",
    "ownership.transfer",
    "invitation.create",
    "invitation.revoke",
    "settings.update",
    "settings.logo_update",
    "settings.logo_delete",
    "grant.create",
    "grant.revoke",
    "refund.request",
    "refund.auto_duplicate",
    "payment.mismatch",
)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class AdminAuditEvent(Base):
    """Who did what to an org; written in the same transaction as the change it records."""

    __tablename__ = "admin_audit_events"
    __table_args__ = (
        CheckConstraint(f"actor_role IN ({_in(ACTOR_ROLES)})", name="actor_role"),
        CheckConstraint(f"action IN ({_in(AUDIT_ACTIONS)})", name="action"),
        Index("ix_admin_audit_events_org_created", "organization_id", text("created_at DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str] = mapped_column(String(30))
    target_id: Mapped[str] = mapped_column(String(255))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'::jsonb"), default=dict)
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_at_column()


class DailyRevenue(Base):
    """Σ over the org's purchases in one currency whose ``purchased_at`` falls on one UTC day."""

    __tablename__ = "dashboard_daily_revenue"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(CHAR(3), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    gross_cents: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    refunded_cents: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    purchase_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class ContentRevenue(Base):
    """All-time Σ over one content item's purchases in one currency (the summary's top content)."""

    __tablename__ = "dashboard_content_revenue"
    __table_args__ = (Index("ix_dashboard_content_revenue_org_currency", "organization_id", "currency"),)

    content_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"), primary_key=True)
    currency: Mapped[str] = mapped_column(CHAR(3), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    gross_cents: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    refunded_cents: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    purchase_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class DashboardCustomer(Base):
    """A user with at least one purchase or grant of the org's content (api.md §11 "customer")."""

    __tablename__ = "dashboard_customers"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = created_at_column()
    active_grant_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class CustomerRevenue(Base):
    """One customer's ``completed`` purchases in one currency (the customer list; migration 0007)."""

    __tablename__ = "dashboard_customer_revenue"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "user_id"],
            ["dashboard_customers.organization_id", "dashboard_customers.user_id"],
            name="fk_dashboard_customer_revenue_organization_id_dashboard_customers",
            ondelete="CASCADE",
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(CHAR(3), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    purchase_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_spent_cents: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    first_purchase_at: Mapped[datetime | None]
    last_purchase_at: Mapped[datetime | None]
