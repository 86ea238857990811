"""media multipart upload

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 09:00:00

``media_items.multipart_upload_id`` (api.md §6.1): the open multipart upload of the original,
set when a media item is created with ``upload_mode=multipart`` (or its upload restarted) and
cleared when upload-complete assembles it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("media_items", sa.Column("multipart_upload_id", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    op.drop_column("media_items", "multipart_upload_id")
