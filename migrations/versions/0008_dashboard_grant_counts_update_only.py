"""dashboard grant counts: update only

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 09:05:00

0007's grant UPDATE/DELETE triggers upserted ``dashboard_customers``; when a user is deleted (the
database cascades to its grants and to its customer rows, in no fixed order) the upsert could
re-insert the customer row of a user that is gone and fail on its foreign key. A changed or
deleted grant only ever updates a customer row that exists (grant inserts still create it).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNT_UPDATE = """
    UPDATE dashboard_customers AS t SET active_grant_count = c.active
    FROM (
        SELECT k.organization_id, k.user_id, count(a.id) FILTER (WHERE a.revoked_at IS NULL) AS active
        FROM ({keys}) AS k
        LEFT JOIN content_access AS a ON a.organization_id = k.organization_id AND a.user_id = k.user_id
        GROUP BY k.organization_id, k.user_id
    ) AS c
    WHERE t.organization_id = c.organization_id AND t.user_id = c.user_id AND t.active_grant_count <> c.active;
"""

CHANGED = (
    "SELECT n.organization_id, n.user_id FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id "
    "WHERE (o.revoked_at, o.organization_id, o.user_id) IS DISTINCT FROM (n.revoked_at, n.organization_id, n.user_id) "
    "UNION SELECT o.organization_id, o.user_id FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id "
    "WHERE (o.revoked_at, o.organization_id, o.user_id) IS DISTINCT FROM (n.revoked_at, n.organization_id, n.user_id)"
)
DELETED = "SELECT DISTINCT organization_id, user_id FROM old_rows"

UPSERT = """
    INSERT INTO dashboard_customers AS t (organization_id, user_id, active_grant_count)
    SELECT k.organization_id, k.user_id, count(a.id) FILTER (WHERE a.revoked_at IS NULL)
    FROM ({keys}) AS k
    LEFT JOIN content_access AS a ON a.organization_id = k.organization_id AND a.user_id = k.user_id
    GROUP BY k.organization_id, k.user_id
    ORDER BY k.organization_id, k.user_id
    ON CONFLICT (organization_id, user_id) DO UPDATE SET active_grant_count = EXCLUDED.active_grant_count;
"""


def _replace(name: str, body: str) -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
    )


def upgrade() -> None:
    _replace("dashboard_grants_changed", COUNT_UPDATE.format(keys=CHANGED))
    _replace("dashboard_grants_deleted", COUNT_UPDATE.format(keys=DELETED))


def downgrade() -> None:
    _replace("dashboard_grants_changed", UPSERT.format(keys=CHANGED))
    _replace("dashboard_grants_deleted", UPSERT.format(keys=DELETED))
