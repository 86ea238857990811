"""content tables (data-model.md): content."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import CHAR
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampMixin, uuid_pk

CONTENT_TYPES = ("video", "audio")
CONTENT_STATUSES = ("draft", "published", "archived")
VISIBILITIES = ("public", "purchased_only")


class Content(TimestampMixin, Base):
    __tablename__ = "content"
    __table_args__ = (
        ForeignKeyConstraint(
            ["media_id", "organization_id"],
            ["media_items.id", "media_items.organization_id"],
            name="fk_content_media_id_media_items",
            ondelete="RESTRICT",
        ),
        CheckConstraint("content_type IN ('video', 'audio')", name="content_type"),
        CheckConstraint("visibility IN ('public', 'purchased_only')", name="visibility"),
        CheckConstraint("status IN ('draft', 'published', 'archived')", name="status"),
        CheckConstraint("char_length(title) BETWEEN 1 AND 200", name="title_length"),
        CheckConstraint("slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name="slug_format"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        CheckConstraint(
            "price_cents IS NULL OR price_cents = 0 OR price_cents BETWEEN 50 AND 10000000", name="price_range"
        ),
        CheckConstraint("jsonb_typeof(tags) = 'array' AND jsonb_array_length(tags) <= 10", name="tags"),
        CheckConstraint("(visibility = 'purchased_only') = (COALESCE(price_cents, 0) > 0)", name="visibility_price"),
        CheckConstraint("status <> 'published' OR published_at IS NOT NULL", name="published_at"),
        UniqueConstraint("id", "organization_id", name="uq_content_id_organization_id"),
        Index(
            "ux_content_org_slug", "organization_id", "slug", unique=True, postgresql_where=text("deleted_at IS NULL")
        ),
        Index(
            "ix_content_catalog",
            "organization_id",
            "status",
            text("published_at DESC"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The catalogue's price sort and its ILIKE search (migration 0009).
        Index(
            "ix_content_catalog_price",
            "organization_id",
            "status",
            text("COALESCE(price_cents, 0)"),
            "id",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        *(
            Index(
                f"ix_content_{column}_trgm",
                column,
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
                postgresql_where=text("deleted_at IS NULL"),
            )
            for column in ("title", "description")
        ),
        Index("ix_content_media_id", "media_id", postgresql_where=text("deleted_at IS NULL")),
        Index("ix_content_tags", "tags", postgresql_using="gin", postgresql_ops={"tags": "jsonb_path_ops"}),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    media_id: Mapped[uuid.UUID]
    title: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(5000))
    content_type: Mapped[str] = mapped_column(String(10))
    visibility: Mapped[str] = mapped_column(String(20))
    price_cents: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(CHAR(3))
    category: Mapped[str | None] = mapped_column(String(50))
    tags: Mapped[list[str]] = mapped_column(server_default=text("'[]'::jsonb"), default=list)
    status: Mapped[str] = mapped_column(String(20), server_default="draft", default="draft")
    published_at: Mapped[datetime | None]
    archived_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]

    @property
    def is_free(self) -> bool:
        return not self.price_cents
