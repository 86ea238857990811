"""commerce tables (data-model.md): checkout_sessions, purchases, stripe_events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import CHAR
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampMixin, uuid_pk

PROVIDERS = ("stripe", "local")
STRIPE_EVENT_STATUSES = ("received", "processing", "processed", "ignored", "failed", "dead")


class CheckoutSession(TimestampMixin, Base):
    __tablename__ = "checkout_sessions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["content_id", "organization_id"],
            ["content.id", "content.organization_id"],
            name="fk_checkout_sessions_content_id_content",
            ondelete="RESTRICT",
        ),
        CheckConstraint("provider IN ('stripe', 'local')", name="provider"),
        CheckConstraint("amount_cents >= 50", name="amount"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        CheckConstraint("status IN ('open', 'complete', 'expired')", name="status"),
        CheckConstraint("payment_status IN ('unpaid', 'paid', 'failed')", name="payment_status"),
        Index("ix_checkout_sessions_reuse", "customer_id", "content_id", text("created_at DESC")),
        Index("ix_checkout_sessions_open", "expires_at", postgresql_where=text("status = 'open'")),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(10))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    content_id: Mapped[uuid.UUID]
    organization_id: Mapped[uuid.UUID]
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(CHAR(3))
    status: Mapped[str] = mapped_column(String(10), server_default="open", default="open")
    payment_status: Mapped[str] = mapped_column(String(10), server_default="unpaid", default="unpaid")
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(Text)
    success_url: Mapped[str] = mapped_column(String(2000))
    cancel_url: Mapped[str] = mapped_column(String(2000))
    expires_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class Purchase(TimestampMixin, Base):
    __tablename__ = "purchases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["content_id", "organization_id"],
            ["content.id", "content.organization_id"],
            name="fk_purchases_content_id_content",
            ondelete="RESTRICT",
        ),
        CheckConstraint("provider IN ('stripe', 'local')", name="provider"),
        CheckConstraint("amount_cents >= 0", name="amount"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        CheckConstraint("status IN ('completed', 'refunded', 'charged_back')", name="status"),
        CheckConstraint("refunded_amount_cents >= 0 AND refunded_amount_cents <= amount_cents", name="refunded_amount"),
        CheckConstraint(
            "refund_status IS NULL OR refund_status IN ('requested', 'submitted', 'succeeded', 'failed')",
            name="refund_status",
        ),
        CheckConstraint(
            "status <> 'refunded' OR (refunded_amount_cents = amount_cents AND refunded_at IS NOT NULL)",
            name="refunded",
        ),
        Index(
            "ux_purchases_one_completed",
            "customer_id",
            "content_id",
            unique=True,
            postgresql_where=text("status = 'completed' AND NOT is_duplicate"),
        ),
        Index("ix_purchases_org_purchased", "organization_id", "purchased_at"),
        Index("ix_purchases_customer", "customer_id", text("purchased_at DESC")),
        Index("ix_purchases_content_id", "content_id"),
        # Dashboard (migration 0005): every revenue query filters org + currency + purchased_at and
        # reads only these columns, so it is answered by an index-only scan.
        Index(
            "ix_purchases_org_currency_purchased",
            "organization_id",
            "currency",
            "purchased_at",
            postgresql_include=[
                "amount_cents",
                "refunded_amount_cents",
                "status",
                "is_duplicate",
                "content_id",
                "customer_id",
            ],
        ),
        Index(
            "ix_purchases_refund_requested",
            "refund_requested_at",
            postgresql_where=text("refund_status = 'requested'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    content_id: Mapped[uuid.UUID]
    organization_id: Mapped[uuid.UUID]
    provider: Mapped[str] = mapped_column(String(10))
    checkout_session_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("checkout_sessions.id", ondelete="RESTRICT"), unique=True
    )
    payment_intent_id: Mapped[str] = mapped_column(String(255), unique=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(CHAR(3))
    status: Mapped[str] = mapped_column(String(20), server_default="completed", default="completed")
    is_duplicate: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)
    purchased_at: Mapped[datetime]
    refunded_amount_cents: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    refunded_at: Mapped[datetime | None]
    refund_status: Mapped[str | None] = mapped_column(String(20))
    refund_reason: Mapped[str | None] = mapped_column(String(500))
    refund_requested_at: Mapped[datetime | None]
    refund_requested_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    provider_refund_id: Mapped[str | None] = mapped_column(String(255))
    refund_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    refund_last_error: Mapped[str | None] = mapped_column(String(500))
    disputed_at: Mapped[datetime | None]
    dispute_id: Mapped[str | None] = mapped_column(String(255))
    dispute_status: Mapped[str | None] = mapped_column(String(30))
    dispute_event_at: Mapped[datetime | None]


class StripeEvent(Base):
    """A verified provider event, stored before it is processed (the durable-job row)."""

    __tablename__ = "stripe_events"
    __table_args__ = (
        CheckConstraint("source IN ('webhook', 'local', 'reconcile')", name="source"),
        CheckConstraint(
            "status IN ('received', 'processing', 'processed', 'ignored', 'failed', 'dead')", name="status"
        ),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index(
            "ix_stripe_events_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('received', 'failed', 'processing')"),
        ),
        Index("ix_stripe_events_payment_intent", "payment_intent_id"),
        Index("ix_stripe_events_type_received", "type", text("received_at DESC")),
        Index("ix_stripe_events_status_received", "status", text("received_at DESC")),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(10), server_default="webhook", default="webhook")
    livemode: Mapped[bool] = mapped_column(Boolean)
    api_version: Mapped[str | None] = mapped_column(String(50))
    stripe_created_at: Mapped[datetime]
    object_id: Mapped[str | None] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(12), server_default="received", default="received")
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(2000))
    received_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    processed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"), onupdate=text("now()"))
