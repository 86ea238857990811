"""dashboard tables: the revenue rollups.

``admin_audit_events`` (data-model.md lists it under the dashboard, which reads it for the audit
log) is defined in ``app/audit.py``, next to ``audit.record()``, its one writer: every module
writes audit rows, so the writer sits in the bottom layer, below the domains that call it.

The rollups (``dashboard_daily_revenue``, ``dashboard_content_revenue``, ``dashboard_customers``,
``dashboard_customer_revenue``, and ``dashboard_content_retention`` over ``playback_progress``) are
not in data-model.md: they are kept by Postgres triggers on ``purchases`` and ``content_access``
(migrations 0006, 0007, 0015), in the same transaction as the purchase or grant change, so the dashboard reads a
few hundred rows instead of every purchase of the org. The application never writes them.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    text,
)
from sqlalchemy.dialects.postgresql import CHAR
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, created_at_column


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


class ContentRetention(Base):
    """One content item's viewers whose furthest position falls in one 5 % bucket (migration 0015).

    ``bucket = floor(20 x furthest / duration)`` (0..20; 20 = watched to the end). Kept by
    statement triggers on ``playback_progress`` in the flush's own transaction, so the engagement
    endpoint reads 21 rows whatever the audience: retention[k] = Σ viewers of buckets >= k / Σ
    viewers; completions and the furthest fractions (millionths) are summed alongside.
    """

    __tablename__ = "dashboard_content_retention"
    __table_args__ = (CheckConstraint("bucket BETWEEN 0 AND 20", name="bucket"),)

    content_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"), primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    viewers: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    completions: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    fraction_micros: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
