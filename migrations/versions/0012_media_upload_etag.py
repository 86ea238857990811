"""media upload etag

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 10:00:00

``media_items.upload_etag`` (security.md §8): upload-complete records the ETag of the original it
checked, so the worker and a retry can tell when the object was replaced afterwards. Rows uploaded
before this revision have none; their next retry pins the object it checks.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("media_items", sa.Column("upload_etag", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("media_items", "upload_etag")
