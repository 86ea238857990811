"""media tables (data-model.md): media_items, media_captions."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampMixin, uuid_pk

MEDIA_TYPES = ("video", "audio")
MEDIA_STATUSES = ("uploading", "uploaded", "processing", "ready", "failed")
VIDEO_MIME_TYPES = ("video/mp4", "video/quicktime", "video/webm")
AUDIO_MIME_TYPES = ("audio/mpeg", "audio/mp4", "audio/wav", "audio/ogg", "audio/webm")
MIME_TYPES = VIDEO_MIME_TYPES + AUDIO_MIME_TYPES


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class MediaItem(TimestampMixin, Base):
    __tablename__ = "media_items"
    __table_args__ = (
        CheckConstraint(f"media_type IN ({_in(MEDIA_TYPES)})", name="media_type"),
        CheckConstraint(f"mime_type IN ({_in(MIME_TYPES)})", name="mime_type"),
        CheckConstraint(f"status IN ({_in(MEDIA_STATUSES)})", name="status"),
        CheckConstraint("file_size_bytes > 0", name="file_size_positive"),
        CheckConstraint("attempts BETWEEN 0 AND 10", name="attempts"),
        CheckConstraint("duration_seconds BETWEEN 1 AND 86400", name="duration"),
        CheckConstraint("width BETWEEN 1 AND 7680", name="width"),
        CheckConstraint("height BETWEEN 1 AND 4320", name="height"),
        CheckConstraint("char_length(title) BETWEEN 1 AND 255", name="title_length"),
        CheckConstraint("(media_type = 'video') = (mime_type LIKE 'video/%')", name="type_mime"),
        CheckConstraint(
            "status <> 'ready' OR (hls_master_key IS NOT NULL AND hls_preview_key IS NOT NULL"
            " AND duration_seconds IS NOT NULL AND ready_at IS NOT NULL AND jsonb_array_length(renditions) > 0"
            " AND ((media_type = 'video' AND thumbnail_key IS NOT NULL AND width IS NOT NULL AND height IS NOT NULL)"
            " OR (media_type = 'audio' AND waveform_key IS NOT NULL)))",
            name="ready_outputs",
        ),
        UniqueConstraint("id", "organization_id", name="uq_media_items_id_organization_id"),
        Index(
            "ix_media_items_org_created",
            "organization_id",
            text("created_at DESC"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "ix_media_items_sweep",
            "status",
            "heartbeat_at",
            postgresql_where=text("deleted_at IS NULL AND status IN ('uploading', 'uploaded', 'processing')"),
        ),
        Index(
            "ix_media_items_unpurged",
            "deleted_at",
            postgresql_where=text("deleted_at IS NOT NULL AND purged_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(5000))
    media_type: Mapped[str] = mapped_column(String(10))
    mime_type: Mapped[str] = mapped_column(String(50))
    file_size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), server_default="uploading", default="uploading")
    original_key: Mapped[str] = mapped_column(String(500))
    # The original's ETag as upload-complete checked it; the worker downloads only that version.
    upload_etag: Mapped[str | None] = mapped_column(String(200))
    # The open multipart upload of the original (api.md §6.1); cleared on completion.
    multipart_upload_id: Mapped[str | None] = mapped_column(String(1024))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    job_id: Mapped[str | None] = mapped_column(String(64))
    processing_started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    error_message: Mapped[str | None] = mapped_column(String(500))
    hls_master_key: Mapped[str | None] = mapped_column(String(500))
    hls_preview_key: Mapped[str | None] = mapped_column(String(500))
    thumbnail_key: Mapped[str | None] = mapped_column(String(500))
    waveform_key: Mapped[str | None] = mapped_column(String(500))
    renditions: Mapped[list[str]] = mapped_column(server_default=text("'[]'::jsonb"), default=list)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    loudness_lufs: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    uploaded_at: Mapped[datetime | None]
    ready_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]


class MediaCaption(TimestampMixin, Base):
    """A WebVTT caption track of a video media item (api.md §6.2), stored re-serialised at ``vtt_key``."""

    __tablename__ = "media_captions"
    __table_args__ = (
        UniqueConstraint("media_id", "language", name="uq_media_captions_media_id_language"),
        CheckConstraint("char_length(label) BETWEEN 1 AND 100", name="label_length"),
        CheckConstraint("size_bytes BETWEEN 1 AND 2097152", name="size"),
        CheckConstraint("cue_count >= 1", name="cue_count"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    media_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("media_items.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(35))
    label: Mapped[str] = mapped_column(String(100))
    vtt_key: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(Integer)
    cue_count: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


__all__ = [
    "AUDIO_MIME_TYPES",
    "MEDIA_STATUSES",
    "MEDIA_TYPES",
    "MIME_TYPES",
    "VIDEO_MIME_TYPES",
    "MediaCaption",
    "MediaItem",
]
