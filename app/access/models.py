"""access tables (data-model.md): content_access (grants), playback_progress, content_daily_stats."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampMixin, updated_at_column, uuid_pk


class ContentAccess(TimestampMixin, Base):
    """A grant: one row per (user, content); granting again reactivates it."""

    __tablename__ = "content_access"
    __table_args__ = (
        ForeignKeyConstraint(
            ["content_id", "organization_id"],
            ["content.id", "content.organization_id"],
            name="fk_content_access_content_id_content",
            ondelete="RESTRICT",
        ),
        CheckConstraint("source IN ('purchase', 'complimentary')", name="source"),
        CheckConstraint(
            "revoke_reason IS NULL OR revoke_reason IN ('refund', 'dispute', 'admin')", name="revoke_reason"
        ),
        CheckConstraint("(source = 'purchase') = (purchase_id IS NOT NULL)", name="purchase_source"),
        CheckConstraint("(revoked_at IS NULL) = (revoke_reason IS NULL)", name="revoked"),
        UniqueConstraint("user_id", "content_id", name="uq_content_access_user_id_content_id"),
        Index("ix_content_access_org_granted", "organization_id", "granted_at"),
        # Dashboard customers (migration 0005): the org's grantees and their active grants.
        Index("ix_content_access_org_user", "organization_id", "user_id", postgresql_include=["revoked_at"]),
        Index(
            "ix_content_access_user_active",
            "user_id",
            text("granted_at DESC"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    content_id: Mapped[uuid.UUID]
    organization_id: Mapped[uuid.UUID]
    source: Mapped[str] = mapped_column(String(20))
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("purchases.id", ondelete="RESTRICT"))
    granted_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    granted_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(20))
    revoked_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class PlaybackProgress(TimestampMixin, Base):
    __tablename__ = "playback_progress"
    __table_args__ = (
        CheckConstraint("position_seconds >= 0", name="position"),
        CheckConstraint("duration_seconds >= 1", name="duration"),
        CheckConstraint("max_position_seconds >= 0", name="max_position"),
        Index("ix_playback_progress_user", "user_id", text("updated_at DESC")),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    content_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"), primary_key=True)
    position_seconds: Mapped[int] = mapped_column(Integer)
    # The furthest position ever reported: never lowered, clamped to the duration (migration 0015).
    # Statement triggers roll it up into dashboard_content_retention (the engagement endpoint).
    max_position_seconds: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    duration_seconds: Mapped[int] = mapped_column(Integer)
    completed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)
    completed_at: Mapped[datetime | None]
    client_ts: Mapped[datetime]


class ContentDailyStats(Base):
    __tablename__ = "content_daily_stats"
    __table_args__ = (
        CheckConstraint("views_started >= 0", name="views_started"),
        CheckConstraint("seconds_watched >= 0", name="seconds_watched"),
        CheckConstraint("completions >= 0", name="completions"),
        Index("ix_content_daily_stats_org_day", "organization_id", "day"),
    )

    content_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    views_started: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    seconds_watched: Mapped[int] = mapped_column(BigInteger, server_default=text("0"), default=0)
    completions: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    updated_at: Mapped[datetime] = updated_at_column()
