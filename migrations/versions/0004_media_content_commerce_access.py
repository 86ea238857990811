"""media content commerce access

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:11:41.924053
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=10), server_default="webhook", nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("api_version", sa.String(length=50), nullable=True),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="received", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=2000), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("source IN ('webhook', 'local', 'reconcile')", name=op.f("ck_stripe_events_source")),
        sa.CheckConstraint(
            "status IN ('received', 'processing', 'processed', 'ignored', 'failed', 'dead')",
            name=op.f("ck_stripe_events_status"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_stripe_events_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
    )
    op.create_index(
        "ix_stripe_events_due",
        "stripe_events",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('received', 'failed', 'processing')"),
    )
    op.create_index("ix_stripe_events_payment_intent", "stripe_events", ["payment_intent_id"], unique=False)
    op.create_index(
        "ix_stripe_events_status_received",
        "stripe_events",
        ["status", sa.literal_column("received_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_stripe_events_type_received", "stripe_events", ["type", sa.literal_column("received_at DESC")], unique=False
    )
    op.create_table(
        "media_items",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=5000), nullable=True),
        sa.Column("media_type", sa.String(length=10), nullable=False),
        sa.Column("mime_type", sa.String(length=50), nullable=False),
        sa.Column("file_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="uploading", nullable=False),
        sa.Column("original_key", sa.String(length=500), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("processing_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("hls_master_key", sa.String(length=500), nullable=True),
        sa.Column("hls_preview_key", sa.String(length=500), nullable=True),
        sa.Column("thumbnail_key", sa.String(length=500), nullable=True),
        sa.Column("waveform_key", sa.String(length=500), nullable=True),
        sa.Column(
            "renditions", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("loudness_lufs", sa.Numeric(precision=5, scale=2), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(media_type = 'video') = (mime_type LIKE 'video/%%')", name=op.f("ck_media_items_type_mime")
        ),
        sa.CheckConstraint("media_type IN ('video', 'audio')", name=op.f("ck_media_items_media_type")),
        sa.CheckConstraint(
            "mime_type IN ('video/mp4', 'video/quicktime', 'video/webm', 'audio/mpeg', 'audio/mp4', 'audio/wav', 'audio/ogg', 'audio/webm')",
            name=op.f("ck_media_items_mime_type"),
        ),
        sa.CheckConstraint(
            "status <> 'ready' OR (hls_master_key IS NOT NULL AND hls_preview_key IS NOT NULL AND duration_seconds IS NOT NULL AND ready_at IS NOT NULL AND jsonb_array_length(renditions) > 0 AND ((media_type = 'video' AND thumbnail_key IS NOT NULL AND width IS NOT NULL AND height IS NOT NULL) OR (media_type = 'audio' AND waveform_key IS NOT NULL)))",
            name=op.f("ck_media_items_ready_outputs"),
        ),
        sa.CheckConstraint(
            "status IN ('uploading', 'uploaded', 'processing', 'ready', 'failed')", name=op.f("ck_media_items_status")
        ),
        sa.CheckConstraint("attempts BETWEEN 0 AND 10", name=op.f("ck_media_items_attempts")),
        sa.CheckConstraint("char_length(title) BETWEEN 1 AND 255", name=op.f("ck_media_items_title_length")),
        sa.CheckConstraint("duration_seconds BETWEEN 1 AND 86400", name=op.f("ck_media_items_duration")),
        sa.CheckConstraint("file_size_bytes > 0", name=op.f("ck_media_items_file_size_positive")),
        sa.CheckConstraint("height BETWEEN 1 AND 4320", name=op.f("ck_media_items_height")),
        sa.CheckConstraint("width BETWEEN 1 AND 7680", name=op.f("ck_media_items_width")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_media_items_created_by_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_media_items_organization_id_organizations"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_items")),
        sa.UniqueConstraint("id", "organization_id", name="uq_media_items_id_organization_id"),
    )
    op.create_index(
        "ix_media_items_org_created",
        "media_items",
        ["organization_id", sa.literal_column("created_at DESC")],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_media_items_sweep",
        "media_items",
        ["status", "heartbeat_at"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL AND status IN ('uploading', 'uploaded', 'processing')"),
    )
    op.create_index(
        "ix_media_items_unpurged",
        "media_items",
        ["deleted_at"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NOT NULL AND purged_at IS NULL"),
    )
    op.create_table(
        "content",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=False),
        sa.Column("media_id", sa.UUID(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=5000), nullable=True),
        sa.Column("content_type", sa.String(length=10), nullable=False),
        sa.Column("visibility", sa.String(length=20), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=True),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=True),
        sa.Column(
            "tags", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("status", sa.String(length=20), server_default="draft", nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(visibility = 'purchased_only') = (COALESCE(price_cents, 0) > 0)", name=op.f("ck_content_visibility_price")
        ),
        sa.CheckConstraint("content_type IN ('video', 'audio')", name=op.f("ck_content_content_type")),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ck_content_currency")),
        sa.CheckConstraint(
            "jsonb_typeof(tags) = 'array' AND jsonb_array_length(tags) <= 10", name=op.f("ck_content_tags")
        ),
        sa.CheckConstraint("slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name=op.f("ck_content_slug_format")),
        sa.CheckConstraint("status <> 'published' OR published_at IS NOT NULL", name=op.f("ck_content_published_at")),
        sa.CheckConstraint("status IN ('draft', 'published', 'archived')", name=op.f("ck_content_status")),
        sa.CheckConstraint("visibility IN ('public', 'purchased_only')", name=op.f("ck_content_visibility")),
        sa.CheckConstraint("char_length(title) BETWEEN 1 AND 200", name=op.f("ck_content_title_length")),
        sa.CheckConstraint(
            "price_cents IS NULL OR price_cents = 0 OR price_cents BETWEEN 50 AND 10000000",
            name=op.f("ck_content_price_range"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_content_created_by_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["media_id", "organization_id"],
            ["media_items.id", "media_items.organization_id"],
            name="fk_content_media_id_media_items",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_content_organization_id_organizations"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content")),
        sa.UniqueConstraint("id", "organization_id", name="uq_content_id_organization_id"),
    )
    op.create_index(
        "ix_content_catalog",
        "content",
        ["organization_id", "status", sa.literal_column("published_at DESC")],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_content_media_id", "content", ["media_id"], unique=False, postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.create_index(
        "ix_content_tags",
        "content",
        ["tags"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    op.create_index(
        "ux_content_org_slug",
        "content",
        ["organization_id", "slug"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "checkout_sessions",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=10), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("content_id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="open", nullable=False),
        sa.Column("payment_status", sa.String(length=10), server_default="unpaid", nullable=False),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("success_url", sa.String(length=2000), nullable=False),
        sa.Column("cancel_url", sa.String(length=2000), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ck_checkout_sessions_currency")),
        sa.CheckConstraint(
            "payment_status IN ('unpaid', 'paid', 'failed')", name=op.f("ck_checkout_sessions_payment_status")
        ),
        sa.CheckConstraint("provider IN ('stripe', 'local')", name=op.f("ck_checkout_sessions_provider")),
        sa.CheckConstraint("status IN ('open', 'complete', 'expired')", name=op.f("ck_checkout_sessions_status")),
        sa.CheckConstraint("amount_cents >= 50", name=op.f("ck_checkout_sessions_amount")),
        sa.ForeignKeyConstraint(
            ["content_id", "organization_id"],
            ["content.id", "content.organization_id"],
            name="fk_checkout_sessions_content_id_content",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["users.id"], name=op.f("fk_checkout_sessions_customer_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_sessions")),
    )
    op.create_index(
        "ix_checkout_sessions_open",
        "checkout_sessions",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_checkout_sessions_reuse",
        "checkout_sessions",
        ["customer_id", "content_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_table(
        "content_daily_stats",
        sa.Column("content_id", sa.UUID(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("views_started", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("seconds_watched", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("completions", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("completions >= 0", name=op.f("ck_content_daily_stats_completions")),
        sa.CheckConstraint("seconds_watched >= 0", name=op.f("ck_content_daily_stats_seconds_watched")),
        sa.CheckConstraint("views_started >= 0", name=op.f("ck_content_daily_stats_views_started")),
        sa.ForeignKeyConstraint(
            ["content_id"], ["content.id"], name=op.f("fk_content_daily_stats_content_id_content"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_content_daily_stats_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("content_id", "day", name=op.f("pk_content_daily_stats")),
    )
    op.create_index("ix_content_daily_stats_org_day", "content_daily_stats", ["organization_id", "day"], unique=False)
    op.create_table(
        "playback_progress",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("content_id", sa.UUID(), nullable=False),
        sa.Column("position_seconds", sa.Integer(), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("duration_seconds >= 1", name=op.f("ck_playback_progress_duration")),
        sa.CheckConstraint("position_seconds >= 0", name=op.f("ck_playback_progress_position")),
        sa.ForeignKeyConstraint(
            ["content_id"], ["content.id"], name=op.f("fk_playback_progress_content_id_content"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_playback_progress_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "content_id", name=op.f("pk_playback_progress")),
    )
    op.create_index(
        "ix_playback_progress_user",
        "playback_progress",
        ["user_id", sa.literal_column("updated_at DESC")],
        unique=False,
    )
    op.create_table(
        "purchases",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("content_id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=10), nullable=False),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="completed", nullable=False),
        sa.Column("is_duplicate", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("purchased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refunded_amount_cents", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refund_status", sa.String(length=20), nullable=True),
        sa.Column("refund_reason", sa.String(length=500), nullable=True),
        sa.Column("refund_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refund_requested_by", sa.UUID(), nullable=True),
        sa.Column("provider_refund_id", sa.String(length=255), nullable=True),
        sa.Column("refund_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("refund_last_error", sa.String(length=500), nullable=True),
        sa.Column("disputed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispute_id", sa.String(length=255), nullable=True),
        sa.Column("dispute_status", sa.String(length=30), nullable=True),
        sa.Column("dispute_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ck_purchases_currency")),
        sa.CheckConstraint("provider IN ('stripe', 'local')", name=op.f("ck_purchases_provider")),
        sa.CheckConstraint(
            "refund_status IS NULL OR refund_status IN ('requested', 'submitted', 'succeeded', 'failed')",
            name=op.f("ck_purchases_refund_status"),
        ),
        sa.CheckConstraint(
            "status <> 'refunded' OR (refunded_amount_cents = amount_cents AND refunded_at IS NOT NULL)",
            name=op.f("ck_purchases_refunded"),
        ),
        sa.CheckConstraint("status IN ('completed', 'refunded', 'charged_back')", name=op.f("ck_purchases_status")),
        sa.CheckConstraint("amount_cents >= 0", name=op.f("ck_purchases_amount")),
        sa.CheckConstraint(
            "refunded_amount_cents >= 0 AND refunded_amount_cents <= amount_cents",
            name=op.f("ck_purchases_refunded_amount"),
        ),
        sa.ForeignKeyConstraint(
            ["checkout_session_id"],
            ["checkout_sessions.id"],
            name=op.f("fk_purchases_checkout_session_id_checkout_sessions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["content_id", "organization_id"],
            ["content.id", "content.organization_id"],
            name="fk_purchases_content_id_content",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["users.id"], name=op.f("fk_purchases_customer_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["refund_requested_by"],
            ["users.id"],
            name=op.f("fk_purchases_refund_requested_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchases")),
        sa.UniqueConstraint("checkout_session_id", name=op.f("uq_purchases_checkout_session_id")),
        sa.UniqueConstraint("payment_intent_id", name=op.f("uq_purchases_payment_intent_id")),
    )
    op.create_index("ix_purchases_content_id", "purchases", ["content_id"], unique=False)
    op.create_index(
        "ix_purchases_customer", "purchases", ["customer_id", sa.literal_column("purchased_at DESC")], unique=False
    )
    op.create_index("ix_purchases_org_purchased", "purchases", ["organization_id", "purchased_at"], unique=False)
    op.create_index(
        "ix_purchases_refund_requested",
        "purchases",
        ["refund_requested_at"],
        unique=False,
        postgresql_where=sa.text("refund_status = 'requested'"),
    )
    op.create_index(
        "ux_purchases_one_completed",
        "purchases",
        ["customer_id", "content_id"],
        unique=True,
        postgresql_where=sa.text("status = 'completed' AND NOT is_duplicate"),
    )
    op.create_table(
        "content_access",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("content_id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("purchase_id", sa.UUID(), nullable=True),
        sa.Column("granted_by", sa.UUID(), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(length=20), nullable=True),
        sa.Column("revoked_by", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(source = 'purchase') = (purchase_id IS NOT NULL)", name=op.f("ck_content_access_purchase_source")
        ),
        sa.CheckConstraint(
            "revoke_reason IS NULL OR revoke_reason IN ('refund', 'dispute', 'admin')",
            name=op.f("ck_content_access_revoke_reason"),
        ),
        sa.CheckConstraint("source IN ('purchase', 'complimentary')", name=op.f("ck_content_access_source")),
        sa.CheckConstraint("(revoked_at IS NULL) = (revoke_reason IS NULL)", name=op.f("ck_content_access_revoked")),
        sa.ForeignKeyConstraint(
            ["content_id", "organization_id"],
            ["content.id", "content.organization_id"],
            name="fk_content_access_content_id_content",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["granted_by"], ["users.id"], name=op.f("fk_content_access_granted_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["purchase_id"], ["purchases.id"], name=op.f("fk_content_access_purchase_id_purchases"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by"], ["users.id"], name=op.f("fk_content_access_revoked_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_content_access_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_access")),
        sa.UniqueConstraint("user_id", "content_id", name="uq_content_access_user_id_content_id"),
    )
    op.create_index("ix_content_access_org_granted", "content_access", ["organization_id", "granted_at"], unique=False)
    op.create_index(
        "ix_content_access_user_active",
        "content_access",
        ["user_id", sa.literal_column("granted_at DESC")],
        unique=False,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:

    op.drop_index(
        "ix_content_access_user_active", table_name="content_access", postgresql_where=sa.text("revoked_at IS NULL")
    )
    op.drop_index("ix_content_access_org_granted", table_name="content_access")
    op.drop_table("content_access")
    op.drop_index(
        "ux_purchases_one_completed",
        table_name="purchases",
        postgresql_where=sa.text("status = 'completed' AND NOT is_duplicate"),
    )
    op.drop_index(
        "ix_purchases_refund_requested", table_name="purchases", postgresql_where=sa.text("refund_status = 'requested'")
    )
    op.drop_index("ix_purchases_org_purchased", table_name="purchases")
    op.drop_index("ix_purchases_customer", table_name="purchases")
    op.drop_index("ix_purchases_content_id", table_name="purchases")
    op.drop_table("purchases")
    op.drop_index("ix_playback_progress_user", table_name="playback_progress")
    op.drop_table("playback_progress")
    op.drop_index("ix_content_daily_stats_org_day", table_name="content_daily_stats")
    op.drop_table("content_daily_stats")
    op.drop_index("ix_checkout_sessions_reuse", table_name="checkout_sessions")
    op.drop_index(
        "ix_checkout_sessions_open", table_name="checkout_sessions", postgresql_where=sa.text("status = 'open'")
    )
    op.drop_table("checkout_sessions")
    op.drop_index("ux_content_org_slug", table_name="content", postgresql_where=sa.text("deleted_at IS NULL"))
    op.drop_index(
        "ix_content_tags", table_name="content", postgresql_using="gin", postgresql_ops={"tags": "jsonb_path_ops"}
    )
    op.drop_index("ix_content_media_id", table_name="content", postgresql_where=sa.text("deleted_at IS NULL"))
    op.drop_index("ix_content_catalog", table_name="content", postgresql_where=sa.text("deleted_at IS NULL"))
    op.drop_table("content")
    op.drop_index(
        "ix_media_items_unpurged",
        table_name="media_items",
        postgresql_where=sa.text("deleted_at IS NOT NULL AND purged_at IS NULL"),
    )
    op.drop_index(
        "ix_media_items_sweep",
        table_name="media_items",
        postgresql_where=sa.text("deleted_at IS NULL AND status IN ('uploading', 'uploaded', 'processing')"),
    )
    op.drop_index(
        "ix_media_items_org_created", table_name="media_items", postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.drop_table("media_items")
    op.drop_index("ix_stripe_events_type_received", table_name="stripe_events")
    op.drop_index("ix_stripe_events_status_received", table_name="stripe_events")
    op.drop_index("ix_stripe_events_payment_intent", table_name="stripe_events")
    op.drop_index(
        "ix_stripe_events_due",
        table_name="stripe_events",
        postgresql_where=sa.text("status IN ('received', 'failed', 'processing')"),
    )
    op.drop_table("stripe_events")
