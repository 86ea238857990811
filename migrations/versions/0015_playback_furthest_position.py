"""playback furthest position and the retention rollup

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 09:10:00

``playback_progress.max_position_seconds`` (data-model.md): the furthest position a viewer ever
reported, never lowered, clamped to the duration; backfilled from ``position_seconds`` (the only
position older rows know).

``dashboard_content_retention``: per content and 5 % bucket of the furthest position
(``bucket = floor(20 x furthest / duration)``, 0..20), the viewers in it, how many of them
completed and the sum of their furthest fraction in millionths. The engagement endpoint (api.md
§11) then reads 21 rows instead of every viewer of the item: retention[k] is the viewers of
buckets >= k over all viewers. Kept exactly like the revenue rollups (0006): statement-level
triggers on ``playback_progress`` add the new rows' contribution and subtract the old rows' in the
transaction that changes them (the flush's one upsert per batch, the library's own flush, the
write-through when Redis is down), rows written in key order so two batches cannot deadlock on
them, deltas of zero skipped (a heartbeat that stays inside its bucket touches one row).
A deleted progress row (its user deleted) only decrements rows that exist; content that is gone
takes its rollup rows with it (CASCADE) and contributes nothing (the join on ``content``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One progress row ``r`` -> its contribution, times ``{sign}``. The furthest position is clamped to
# the row's duration here too (a duration reported shorter later must not push a bucket past 20).
CONTRIBUTION = """
    SELECT r.content_id,
           (20 * LEAST(r.max_position_seconds, r.duration_seconds) / r.duration_seconds)::smallint AS bucket,
           {sign} AS viewers,
           {sign} * (CASE WHEN r.completed THEN 1 ELSE 0 END) AS completions,
           {sign} * (1000000::bigint * LEAST(r.max_position_seconds, r.duration_seconds) / r.duration_seconds)
               AS fraction
    FROM {rows} AS r
"""

UPSERT = """
    INSERT INTO dashboard_content_retention AS t
        (content_id, bucket, organization_id, viewers, completions, fraction_micros)
    SELECT c.content_id, c.bucket, k.organization_id, sum(c.viewers)::integer, sum(c.completions)::integer,
           sum(c.fraction)::bigint
    FROM ({changes}) AS c
    JOIN content AS k ON k.id = c.content_id
    GROUP BY c.content_id, c.bucket, k.organization_id
    HAVING sum(c.viewers) <> 0 OR sum(c.completions) <> 0 OR sum(c.fraction) <> 0
    ORDER BY c.content_id, c.bucket
    ON CONFLICT (content_id, bucket) DO UPDATE SET
        viewers = t.viewers + EXCLUDED.viewers,
        completions = t.completions + EXCLUDED.completions,
        fraction_micros = t.fraction_micros + EXCLUDED.fraction_micros;
"""

# Deletes only subtract from rows that exist (0008's lesson: in a cascade the rollup row may already
# be gone, and re-inserting it would break its foreign key). Locked in key order first.
DECREMENT = """
    PERFORM 1 FROM dashboard_content_retention AS t
    JOIN (SELECT DISTINCT content_id, bucket FROM ({changes}) AS d) AS c
      ON t.content_id = c.content_id AND t.bucket = c.bucket
    ORDER BY t.content_id, t.bucket FOR UPDATE OF t;
    UPDATE dashboard_content_retention AS t SET
        viewers = t.viewers + c.viewers,
        completions = t.completions + c.completions,
        fraction_micros = t.fraction_micros + c.fraction
    FROM (
        SELECT content_id, bucket, sum(viewers)::integer AS viewers, sum(completions)::integer AS completions,
               sum(fraction)::bigint AS fraction
        FROM ({changes}) AS d GROUP BY content_id, bucket
    ) AS c
    WHERE t.content_id = c.content_id AND t.bucket = c.bucket;
"""

TRIGGERS = {
    # name: (event, transition tables, body)
    "dashboard_progress_inserted": (
        "INSERT",
        "NEW TABLE AS new_rows",
        UPSERT.format(changes=CONTRIBUTION.format(sign=1, rows="new_rows")),
    ),
    "dashboard_progress_updated": (
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        UPSERT.format(
            changes=CONTRIBUTION.format(sign=1, rows="new_rows")
            + " UNION ALL "
            + CONTRIBUTION.format(sign=-1, rows="old_rows")
        ),
    ),
    "dashboard_progress_deleted": (
        "DELETE",
        "OLD TABLE AS old_rows",
        DECREMENT.format(changes=CONTRIBUTION.format(sign=-1, rows="old_rows")),
    ),
}


def upgrade() -> None:
    op.add_column(
        "playback_progress",
        sa.Column("max_position_seconds", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.execute("UPDATE playback_progress SET max_position_seconds = LEAST(position_seconds, duration_seconds)")
    op.create_check_constraint(
        op.f("ck_playback_progress_max_position"), "playback_progress", "max_position_seconds >= 0"
    )
    op.create_table(
        "dashboard_content_retention",
        sa.Column("content_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("viewers", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("completions", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("fraction_micros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("bucket BETWEEN 0 AND 20", name=op.f("ck_dashboard_content_retention_bucket")),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["content.id"],
            name=op.f("fk_dashboard_content_retention_content_id_content"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_dashboard_content_retention_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("content_id", "bucket", name=op.f("pk_dashboard_content_retention")),
    )
    # Backfill before the triggers exist; ADD COLUMN holds playback_progress exclusively until the
    # commit, so no write can fall between the two.
    op.execute(UPSERT.format(changes=CONTRIBUTION.format(sign=1, rows="playback_progress")))
    for name, (event, transition, body) in TRIGGERS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$")
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON playback_progress REFERENCING {transition} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON playback_progress")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("dashboard_content_retention")
    op.drop_constraint(op.f("ck_playback_progress_max_position"), "playback_progress", type_="check")
    op.drop_column("playback_progress", "max_position_seconds")
