"""Rebuild the dashboard rollups from the source rows (``codex rebuild-rollups``).

Postgres triggers keep ``dashboard_daily_revenue``, ``dashboard_content_revenue``,
``dashboard_customer_revenue`` and ``dashboard_customers`` in step with ``purchases`` and
``content_access`` (migrations 0006-0008), and ``dashboard_content_retention`` with
``playback_progress`` (0015). This recomputes them from scratch, for one organization
or all, with the triggers' definitions (api.md §11): gross = amount; refunded = refunded amount
plus the unrefunded rest of a ``charged_back`` row; purchase count = ``completed`` and not a
duplicate; revenue on the UTC day of ``purchased_at``; a customer is anyone with a purchase or a
grant, with the count of its active grants.

For repair after a manual fix in SQL with the triggers disabled, or a restore of a partial dump.
The source tables are locked against writes (``SHARE``) for the transaction, so purchases landing
meanwhile wait and then update the rebuilt rows through their triggers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import CursorResult, text
from sqlalchemy.orm import Session

# Each statement reads the source rows of ``:org`` (NULL: every organization). One purchase's
# contribution to the revenue rollups (migration 0006's definition), shared by both of them.
_CONTRIBUTIONS = """
    SELECT r.organization_id, r.content_id, r.currency, (r.purchased_at AT TIME ZONE 'UTC')::date AS day,
           r.amount_cents::bigint AS gross,
           (r.refunded_amount_cents + CASE WHEN r.status = 'charged_back'
                THEN r.amount_cents - r.refunded_amount_cents ELSE 0 END)::bigint AS refunded,
           CASE WHEN r.status = 'completed' AND NOT r.is_duplicate THEN 1 ELSE 0 END AS cnt
    FROM purchases AS r
    WHERE CAST(:org AS uuid) IS NULL OR r.organization_id = CAST(:org AS uuid)
"""

# (table, statement), in the order the foreign keys need (a customer before its revenue rows).
# The concatenations join constants only (no input reaches the SQL text; :org is bound).
_STATEMENTS = (
    (
        "dashboard_daily_revenue",
        "INSERT INTO dashboard_daily_revenue"  # noqa: S608
        " (organization_id, currency, day, gross_cents, refunded_cents, purchase_count)"
        " SELECT organization_id, currency, day, sum(gross), sum(refunded), sum(cnt)::integer"
        f" FROM ({_CONTRIBUTIONS}) AS c GROUP BY organization_id, currency, day"
        " HAVING sum(gross) <> 0 OR sum(refunded) <> 0 OR sum(cnt) <> 0",
    ),
    (
        "dashboard_content_revenue",
        "INSERT INTO dashboard_content_revenue"  # noqa: S608
        " (content_id, currency, organization_id, gross_cents, refunded_cents, purchase_count)"
        " SELECT content_id, currency, organization_id, sum(gross), sum(refunded), sum(cnt)::integer"
        f" FROM ({_CONTRIBUTIONS}) AS c GROUP BY content_id, currency, organization_id"
        " HAVING sum(gross) <> 0 OR sum(refunded) <> 0 OR sum(cnt) <> 0",
    ),
    (
        "dashboard_customers",
        """
        INSERT INTO dashboard_customers (organization_id, user_id, active_grant_count)
        SELECT k.organization_id, k.user_id, count(a.id) FILTER (WHERE a.revoked_at IS NULL)
        FROM (
            SELECT organization_id, customer_id AS user_id FROM purchases
            WHERE CAST(:org AS uuid) IS NULL OR organization_id = CAST(:org AS uuid)
            UNION
            SELECT organization_id, user_id FROM content_access
            WHERE CAST(:org AS uuid) IS NULL OR organization_id = CAST(:org AS uuid)
        ) AS k
        LEFT JOIN content_access AS a ON a.organization_id = k.organization_id AND a.user_id = k.user_id
        GROUP BY k.organization_id, k.user_id
        """,
    ),
    (
        "dashboard_customer_revenue",
        """
        INSERT INTO dashboard_customer_revenue
            (organization_id, currency, user_id, purchase_count, total_spent_cents, first_purchase_at, last_purchase_at)
        SELECT p.organization_id, p.currency, p.customer_id,
               count(p.id) FILTER (WHERE p.status = 'completed' AND NOT p.is_duplicate),
               coalesce(sum(p.amount_cents - p.refunded_amount_cents) FILTER (WHERE p.status = 'completed'), 0),
               min(p.purchased_at) FILTER (WHERE p.status = 'completed'),
               max(p.purchased_at) FILTER (WHERE p.status = 'completed')
        FROM purchases AS p
        WHERE CAST(:org AS uuid) IS NULL OR p.organization_id = CAST(:org AS uuid)
        GROUP BY p.organization_id, p.currency, p.customer_id
        """,
    ),
    (
        # Migration 0015's definition: the viewers per 5 % bucket of their furthest position.
        "dashboard_content_retention",
        """
        INSERT INTO dashboard_content_retention
            (content_id, bucket, organization_id, viewers, completions, fraction_micros)
        SELECT p.content_id,
               (20 * LEAST(p.max_position_seconds, p.duration_seconds) / p.duration_seconds)::smallint AS bucket,
               c.organization_id, count(*), count(*) FILTER (WHERE p.completed),
               sum(1000000::bigint * LEAST(p.max_position_seconds, p.duration_seconds) / p.duration_seconds)
        FROM playback_progress AS p
        JOIN content AS c ON c.id = p.content_id
        WHERE CAST(:org AS uuid) IS NULL OR c.organization_id = CAST(:org AS uuid)
        GROUP BY p.content_id, bucket, c.organization_id
        """,
    ),
)


@dataclass(frozen=True)
class RebuildReport:
    """Rows written per rollup table."""

    rows: dict[str, int]


Progress = Callable[[str], None]
"""Told one line as each step starts or ends (the command prints them: a rebuild of a large
database, or a wait for the lock behind a long transaction, takes a while)."""


def _quiet(line: str) -> None:
    pass


def _rowcount(result: object) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0


def rebuild(session: Session, organization_id: uuid.UUID | None = None, progress: Progress = _quiet) -> RebuildReport:
    """Delete and recompute the rollups of ``organization_id`` (every organization when None).

    Runs in the caller's transaction (the caller commits); nothing else writes the source rows
    meanwhile. ``progress`` gets a line per step: the lock, the delete, each table with its rows.
    """
    params = {"org": str(organization_id) if organization_id else None}
    progress(
        "  locking purchases, content_access and playback_progress against writes (waits for running transactions)"
    )
    started = time.monotonic()
    session.execute(text("LOCK TABLE purchases, content_access, playback_progress IN SHARE MODE"))
    progress(f"  locked after {time.monotonic() - started:.1f} s")
    deleted = 0
    for table, _ in reversed(_STATEMENTS):  # revenue rows before the customers they reference
        deleted += _rowcount(
            session.execute(
                text(f"DELETE FROM {table} WHERE CAST(:org AS uuid) IS NULL OR organization_id = CAST(:org AS uuid)"),  # noqa: S608 - constant table names
                params,
            )
        )
    progress(f"  deleted {deleted} old rollup rows")
    written: dict[str, int] = {}
    for table, statement in _STATEMENTS:
        started = time.monotonic()
        written[table] = _rowcount(session.execute(text(statement), params))
        progress(f"  {table}: {written[table]} rows ({time.monotonic() - started:.1f} s)")
    return RebuildReport(written)
