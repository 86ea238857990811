"""dashboard indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 08:50:00

Covering indexes for the org dashboard (api.md §11): revenue, summary and top content read
``(organization_id, currency, purchased_at)`` plus the money columns with an index-only scan;
the customer list reads the org's grantees with their revocation time.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_purchases_org_currency_purchased",
        "purchases",
        ["organization_id", "currency", "purchased_at"],
        postgresql_include=[
            "amount_cents",
            "refunded_amount_cents",
            "status",
            "is_duplicate",
            "content_id",
            "customer_id",
        ],
    )
    op.create_index(
        "ix_content_access_org_user",
        "content_access",
        ["organization_id", "user_id"],
        postgresql_include=["revoked_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_content_access_org_user", table_name="content_access")
    op.drop_index("ix_purchases_org_currency_purchased", table_name="purchases")
