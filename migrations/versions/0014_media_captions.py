"""media captions

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 09:10:00

``media_captions`` (data-model.md, api.md §6.2): one WebVTT track per (video media item, BCP 47
language), stored re-serialised under the media's prefix; the HLS proxy lists them as subtitles.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media_captions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("media_id", sa.UUID(), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("vtt_key", sa.String(length=500), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("cue_count", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("char_length(label) BETWEEN 1 AND 100", name=op.f("ck_media_captions_label_length")),
        sa.CheckConstraint("size_bytes BETWEEN 1 AND 2097152", name=op.f("ck_media_captions_size")),
        sa.CheckConstraint("cue_count >= 1", name=op.f("ck_media_captions_cue_count")),
        sa.ForeignKeyConstraint(
            ["media_id"], ["media_items.id"], name=op.f("fk_media_captions_media_id_media_items"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_media_captions_created_by_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_captions")),
        sa.UniqueConstraint("media_id", "language", name="uq_media_captions_media_id_language"),
    )


def downgrade() -> None:
    op.drop_table("media_captions")
