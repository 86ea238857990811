"""dashboard rollups

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 08:50:00

Revenue per (org, currency, UTC day) and per (content, currency), and the set of each org's
customers, kept by statement-level triggers on ``purchases`` and ``content_access`` in the
transaction that changes them. Why: on an org with a million purchases, summing the purchases
themselves takes seconds even with an index-only scan; the rollups keep the summary and a
year of revenue to a few hundred rows. The definitions are api.md §11's: gross = amount;
refunded = refunded_amount (+ the unrefunded rest of a ``charged_back`` row); purchase_count =
``completed`` and not duplicate; every amount on the UTC day of ``purchased_at``. An UPDATE
subtracts the old rows' contribution and adds the new one's; keys whose delta is zero are not
touched, so updates that change no money (refund_status, dispute fields) take no rollup lock.
Rows are written in key order, so two multi-row statements cannot deadlock on them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One purchase row ``r`` -> its contribution, times ``{sign}``.
CONTRIBUTION = """
    SELECT r.organization_id, r.content_id, r.currency,
           (r.purchased_at AT TIME ZONE 'UTC')::date AS day,
           {sign} * r.amount_cents::bigint AS gross,
           {sign} * (r.refunded_amount_cents + CASE WHEN r.status = 'charged_back'
                     THEN r.amount_cents - r.refunded_amount_cents ELSE 0 END)::bigint AS refunded,
           {sign} * (CASE WHEN r.status = 'completed' AND NOT r.is_duplicate THEN 1 ELSE 0 END) AS cnt
    FROM {rows} AS r
"""

APPLY = """
    INSERT INTO dashboard_daily_revenue AS t
        (organization_id, currency, day, gross_cents, refunded_cents, purchase_count)
    SELECT organization_id, currency, day, sum(gross), sum(refunded), sum(cnt)::integer
    FROM ({changes}) AS c
    GROUP BY organization_id, currency, day
    HAVING sum(gross) <> 0 OR sum(refunded) <> 0 OR sum(cnt) <> 0
    ORDER BY organization_id, currency, day
    ON CONFLICT (organization_id, currency, day) DO UPDATE SET
        gross_cents = t.gross_cents + EXCLUDED.gross_cents,
        refunded_cents = t.refunded_cents + EXCLUDED.refunded_cents,
        purchase_count = t.purchase_count + EXCLUDED.purchase_count;
    INSERT INTO dashboard_content_revenue AS t
        (content_id, currency, organization_id, gross_cents, refunded_cents, purchase_count)
    SELECT content_id, currency, organization_id, sum(gross), sum(refunded), sum(cnt)::integer
    FROM ({changes}) AS c
    GROUP BY content_id, currency, organization_id
    HAVING sum(gross) <> 0 OR sum(refunded) <> 0 OR sum(cnt) <> 0
    ORDER BY content_id, currency
    ON CONFLICT (content_id, currency) DO UPDATE SET
        gross_cents = t.gross_cents + EXCLUDED.gross_cents,
        refunded_cents = t.refunded_cents + EXCLUDED.refunded_cents,
        purchase_count = t.purchase_count + EXCLUDED.purchase_count;
"""

NEW_CUSTOMERS = """
    INSERT INTO dashboard_customers (organization_id, user_id)
    SELECT DISTINCT organization_id, {user_column} FROM new_rows
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
"""

TRIGGERS = {
    # name: (table, event, transition tables, body)
    "dashboard_purchases_inserted": (
        "purchases",
        "INSERT",
        "NEW TABLE AS new_rows",
        APPLY.format(changes=CONTRIBUTION.format(sign=1, rows="new_rows"))
        + NEW_CUSTOMERS.format(user_column="customer_id"),
    ),
    "dashboard_purchases_updated": (
        "purchases",
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        APPLY.format(
            changes=CONTRIBUTION.format(sign=1, rows="new_rows")
            + " UNION ALL "
            + CONTRIBUTION.format(sign=-1, rows="old_rows")
        ),
    ),
    "dashboard_purchases_deleted": (
        "purchases",
        "DELETE",
        "OLD TABLE AS old_rows",
        APPLY.format(changes=CONTRIBUTION.format(sign=-1, rows="old_rows")),
    ),
    "dashboard_grants_inserted": (
        "content_access",
        "INSERT",
        "NEW TABLE AS new_rows",
        NEW_CUSTOMERS.format(user_column="user_id"),
    ),
}


def upgrade() -> None:
    op.create_table(
        "dashboard_daily_revenue",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("currency", postgresql.CHAR(length=3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("gross_cents", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("refunded_cents", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("purchase_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_dashboard_daily_revenue_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "currency", "day", name=op.f("pk_dashboard_daily_revenue")),
    )
    op.create_table(
        "dashboard_content_revenue",
        sa.Column("content_id", sa.Uuid(), nullable=False),
        sa.Column("currency", postgresql.CHAR(length=3), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("gross_cents", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("refunded_cents", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("purchase_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["content.id"],
            name=op.f("fk_dashboard_content_revenue_content_id_content"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_dashboard_content_revenue_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("content_id", "currency", name=op.f("pk_dashboard_content_revenue")),
    )
    op.create_index(
        "ix_dashboard_content_revenue_org_currency",
        "dashboard_content_revenue",
        ["organization_id", "currency"],
    )
    op.create_table(
        "dashboard_customers",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_dashboard_customers_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_dashboard_customers_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("organization_id", "user_id", name=op.f("pk_dashboard_customers")),
    )
    for name, (table, event, transition, body) in TRIGGERS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$")
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    # Backfill from what exists (the triggers see only later changes).
    op.execute(APPLY.format(changes=CONTRIBUTION.format(sign=1, rows="purchases")))
    op.execute(
        "INSERT INTO dashboard_customers (organization_id, user_id) "
        "SELECT organization_id, customer_id FROM purchases UNION SELECT organization_id, user_id FROM content_access "
        "ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    for name, (table, _event, _transition, _body) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER {name} ON {table}")
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("dashboard_customers")
    op.drop_index("ix_dashboard_content_revenue_org_currency", table_name="dashboard_content_revenue")
    op.drop_table("dashboard_content_revenue")
    op.drop_table("dashboard_daily_revenue")
