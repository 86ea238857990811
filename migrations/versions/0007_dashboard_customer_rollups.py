"""dashboard customer rollups

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:00:00

The customer list (api.md §11) sorted by total spent or last purchase needs every customer's
figures; on an org with 100,000 customers and a million purchases aggregating them per request
took seconds. Per (org, currency, customer): completed-purchase count (not duplicates), net spent
(amount - refunded over ``completed`` rows), first and last ``completed`` purchase; per (org,
customer): the number of active grants. Unlike the money sums of 0006 these are recomputed from
the source rows of the customers a statement touched (min/max cannot be un-added), through
``ix_purchases_customer`` and ``ix_content_access_org_user``; an UPDATE that changes none of the
columns they read recomputes nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PURCHASE_COLUMNS = (
    "status, amount_cents, refunded_amount_cents, is_duplicate, purchased_at, currency, organization_id, customer_id"
)
GRANT_COLUMNS = "revoked_at, organization_id, user_id"

CUSTOMER_REVENUE = """
    INSERT INTO dashboard_customer_revenue AS t
        (organization_id, currency, user_id, purchase_count, total_spent_cents, first_purchase_at, last_purchase_at)
    SELECT k.organization_id, k.currency, k.customer_id,
           count(p.id) FILTER (WHERE p.status = 'completed' AND NOT p.is_duplicate),
           coalesce(sum(p.amount_cents - p.refunded_amount_cents) FILTER (WHERE p.status = 'completed'), 0),
           min(p.purchased_at) FILTER (WHERE p.status = 'completed'),
           max(p.purchased_at) FILTER (WHERE p.status = 'completed')
    FROM ({keys}) AS k
    LEFT JOIN purchases AS p
        ON p.customer_id = k.customer_id AND p.organization_id = k.organization_id AND p.currency = k.currency
    GROUP BY k.organization_id, k.currency, k.customer_id
    ORDER BY k.organization_id, k.currency, k.customer_id
    ON CONFLICT (organization_id, currency, user_id) DO UPDATE SET
        purchase_count = EXCLUDED.purchase_count,
        total_spent_cents = EXCLUDED.total_spent_cents,
        first_purchase_at = EXCLUDED.first_purchase_at,
        last_purchase_at = EXCLUDED.last_purchase_at;
"""

ACTIVE_GRANTS = """
    INSERT INTO dashboard_customers AS t (organization_id, user_id, active_grant_count)
    SELECT k.organization_id, k.user_id, count(a.id) FILTER (WHERE a.revoked_at IS NULL)
    FROM ({keys}) AS k
    LEFT JOIN content_access AS a ON a.organization_id = k.organization_id AND a.user_id = k.user_id
    GROUP BY k.organization_id, k.user_id
    ORDER BY k.organization_id, k.user_id
    ON CONFLICT (organization_id, user_id) DO UPDATE SET active_grant_count = EXCLUDED.active_grant_count;
"""


def keys(rows: str, columns: str) -> str:
    return f"SELECT DISTINCT {columns} FROM {rows}"  # noqa: S608 - our own constants, no input


def changed_keys(columns: str, compared: str) -> str:
    """Keys (old and new) of the updated rows whose ``compared`` columns changed."""
    new = ", ".join(f"n.{c.strip()}" for c in compared.split(","))
    old = ", ".join(f"o.{c.strip()}" for c in compared.split(","))
    picked_new = ", ".join(f"n.{c.strip()}" for c in columns.split(","))
    picked_old = ", ".join(f"o.{c.strip()}" for c in columns.split(","))
    join = f"FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id WHERE ({old}) IS DISTINCT FROM ({new})"
    return f"SELECT {picked_new} {join} UNION SELECT {picked_old} {join}"


PURCHASE_KEYS = "organization_id, currency, customer_id"
GRANT_KEYS = "organization_id, user_id"

# Extra statements appended to 0006's purchase trigger functions, and 0007's own grant triggers.
PURCHASE_BODIES = {
    "dashboard_purchases_inserted": CUSTOMER_REVENUE.format(keys=keys("new_rows", PURCHASE_KEYS)),
    "dashboard_purchases_updated": CUSTOMER_REVENUE.format(keys=changed_keys(PURCHASE_KEYS, PURCHASE_COLUMNS)),
    "dashboard_purchases_deleted": CUSTOMER_REVENUE.format(keys=keys("old_rows", PURCHASE_KEYS)),
}
GRANT_TRIGGERS = {
    "dashboard_grants_changed": (
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        changed_keys(GRANT_KEYS, GRANT_COLUMNS),
    ),
    "dashboard_grants_deleted": ("DELETE", "OLD TABLE AS old_rows", keys("old_rows", GRANT_KEYS)),
}


def _function_body(name: str) -> str:
    """The current body of a trigger function (0006's), between ``BEGIN`` and ``RETURN NULL; END``."""
    bind = op.get_bind()
    source = bind.execute(sa.text("SELECT prosrc FROM pg_proc WHERE proname = :n"), {"n": name}).scalar_one()
    return source.strip().removeprefix("BEGIN").removesuffix("END").strip().removesuffix("RETURN NULL;").strip()


def _replace_function(name: str, body: str) -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
    )


def upgrade() -> None:
    op.create_table(
        "dashboard_customer_revenue",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("currency", postgresql.CHAR(length=3), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("purchase_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_spent_cents", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("first_purchase_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_purchase_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id", "user_id"],
            ["dashboard_customers.organization_id", "dashboard_customers.user_id"],
            name=op.f("fk_dashboard_customer_revenue_organization_id_dashboard_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "currency", "user_id", name=op.f("pk_dashboard_customer_revenue")),
    )
    op.add_column(
        "dashboard_customers",
        sa.Column("active_grant_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    # The customer row must exist before its revenue row (FK): 0006's statements insert it first.
    for name, extra in PURCHASE_BODIES.items():
        _replace_function(name, _function_body(name) + "\n" + extra)
    inserted = _function_body("dashboard_grants_inserted")
    _replace_function(
        "dashboard_grants_inserted", inserted + "\n" + ACTIVE_GRANTS.format(keys=keys("new_rows", GRANT_KEYS))
    )
    for name, (event, transition, picked) in GRANT_TRIGGERS.items():
        _replace_function(name, ACTIVE_GRANTS.format(keys=picked))
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON content_access REFERENCING {transition} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    # Backfill.
    op.execute(CUSTOMER_REVENUE.format(keys=keys("purchases", PURCHASE_KEYS)))
    op.execute(ACTIVE_GRANTS.format(keys=keys("content_access", GRANT_KEYS)))


def downgrade() -> None:
    for name in GRANT_TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON content_access")
        op.execute(f"DROP FUNCTION {name}()")
    inserted = _function_body("dashboard_grants_inserted")
    _replace_function("dashboard_grants_inserted", inserted.split("INSERT INTO dashboard_customers AS t")[0].strip())
    for name in PURCHASE_BODIES:
        body = _function_body(name)
        _replace_function(name, body.split("INSERT INTO dashboard_customer_revenue AS t")[0].strip())
    op.drop_column("dashboard_customers", "active_grant_count")
    op.drop_table("dashboard_customer_revenue")
