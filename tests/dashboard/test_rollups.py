"""The trigger-kept rollups (migration 0006) always equal the same sums taken over ``purchases``.

Each step below changes purchases the way the payment code does (insert, partial and full refund,
dispute lost, a duplicate refunded, an update that moves no money, a delete), then every rollup row
is compared with a direct aggregate of the table.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, text, update

from app.access.models import ContentAccess
from app.commerce.models import Purchase
from app.dashboard.models import ContentRetention, ContentRevenue, CustomerRevenue, DailyRevenue, DashboardCustomer
from tests import factories
from tests.dashboard.seed import World

DIRECT_DAILY = """
    SELECT organization_id, currency, (purchased_at AT TIME ZONE 'UTC')::date,
           sum(amount_cents),
           sum(refunded_amount_cents
               + CASE WHEN status = 'charged_back' THEN amount_cents - refunded_amount_cents ELSE 0 END),
           count(*) FILTER (WHERE status = 'completed' AND NOT is_duplicate)
    FROM purchases GROUP BY 1, 2, 3
"""
DIRECT_CONTENT = """
    SELECT content_id, currency,
           sum(amount_cents),
           sum(refunded_amount_cents
               + CASE WHEN status = 'charged_back' THEN amount_cents - refunded_amount_cents ELSE 0 END),
           count(*) FILTER (WHERE status = 'completed' AND NOT is_duplicate)
    FROM purchases GROUP BY 1, 2
"""
DIRECT_CUSTOMERS = """
    SELECT k.organization_id, k.user_id, count(a.id) FILTER (WHERE a.revoked_at IS NULL)
    FROM (SELECT organization_id, customer_id AS user_id FROM purchases
          UNION SELECT organization_id, user_id FROM content_access) AS k
    LEFT JOIN content_access AS a ON a.organization_id = k.organization_id AND a.user_id = k.user_id
    GROUP BY 1, 2
"""
DIRECT_CUSTOMER_REVENUE = """
    SELECT organization_id, currency, customer_id,
           count(*) FILTER (WHERE status = 'completed' AND NOT is_duplicate),
           coalesce(sum(amount_cents - refunded_amount_cents) FILTER (WHERE status = 'completed'), 0),
           min(purchased_at) FILTER (WHERE status = 'completed'),
           max(purchased_at) FILTER (WHERE status = 'completed')
    FROM purchases GROUP BY 1, 2, 3
"""


def nonzero(rows: list[tuple]) -> set[tuple]:
    return {tuple(r) for r in rows if any(r[-3:])}


def assert_consistent(session) -> None:
    session.flush()
    daily = session.execute(
        select(
            DailyRevenue.organization_id,
            DailyRevenue.currency,
            DailyRevenue.day,
            DailyRevenue.gross_cents,
            DailyRevenue.refunded_cents,
            DailyRevenue.purchase_count,
        )
    ).all()
    assert nonzero(daily) == nonzero(session.execute(text(DIRECT_DAILY)).all())
    content = session.execute(
        select(
            ContentRevenue.content_id,
            ContentRevenue.currency,
            ContentRevenue.gross_cents,
            ContentRevenue.refunded_cents,
            ContentRevenue.purchase_count,
        )
    ).all()
    assert nonzero(content) == nonzero(session.execute(text(DIRECT_CONTENT)).all())
    customers = session.execute(
        select(DashboardCustomer.organization_id, DashboardCustomer.user_id, DashboardCustomer.active_grant_count)
    ).all()
    assert {tuple(r) for r in customers} == {tuple(r) for r in session.execute(text(DIRECT_CUSTOMERS)).all()}
    per_customer = session.execute(
        select(
            CustomerRevenue.organization_id,
            CustomerRevenue.currency,
            CustomerRevenue.user_id,
            CustomerRevenue.purchase_count,
            CustomerRevenue.total_spent_cents,
            CustomerRevenue.first_purchase_at,
            CustomerRevenue.last_purchase_at,
        )
    ).all()
    direct = session.execute(text(DIRECT_CUSTOMER_REVENUE)).all()
    assert {tuple(r) for r in per_customer} == {tuple(r) for r in direct}


def test_rollups_follow_every_change(db_session, world: World) -> None:
    assert_consistent(db_session)  # the seed: inserts of every state
    p = world.purchases
    now = datetime.now(UTC)

    def change(key: str, **values: object) -> None:
        db_session.execute(update(Purchase).where(Purchase.id == p[key].id).values(**values))
        assert_consistent(db_session)

    change("P1", refunded_amount_cents=500)  # partial refund
    change("P1", refunded_amount_cents=1999, status="refunded", refunded_at=now, refund_status="succeeded")
    change("P5", status="charged_back", dispute_status="lost")  # dispute lost
    change("P6", refunded_amount_cents=1999, status="refunded", refunded_at=now, refund_status="succeeded")
    change("P7", refund_status="submitted", refund_attempts=1)  # no money moves
    change("P9", dispute_status="won", disputed_at=now)
    # Several rows in one statement (mixed orgs and currencies).
    db_session.execute(
        update(Purchase)
        .where(Purchase.id.in_([p["P3"].id, p["P10"].id, p["Q1"].id]))
        .values(refunded_amount_cents=Purchase.refunded_amount_cents + 1)
    )
    assert_consistent(db_session)
    db_session.execute(delete(Purchase).where(Purchase.id == p["P6"].id))  # the duplicate has no grant
    assert_consistent(db_session)
    # Grants: revoke, reactivate (ON CONFLICT DO UPDATE), a new one, revoke several at once.
    grant = world.grants["ana-C1"]
    db_session.execute(
        update(ContentAccess).where(ContentAccess.id == grant.id).values(revoked_at=now, revoke_reason="admin")
    )
    assert_consistent(db_session)
    db_session.execute(
        update(ContentAccess).where(ContentAccess.id == grant.id).values(revoked_at=None, revoke_reason=None)
    )
    assert_consistent(db_session)
    factories.GrantFactory(user_id=world.u("Fay").id, content_id=world.content["C2"].id, organization_id=world.org_a.id)
    assert_consistent(db_session)
    db_session.execute(
        update(ContentAccess)
        .where(ContentAccess.organization_id == world.org_a.id, ContentAccess.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason="admin")
    )
    assert_consistent(db_session)
    db_session.execute(update(ContentAccess).values(updated_at=now))  # touches no counted column
    assert_consistent(db_session)
    extra = factories.PurchaseFactory(customer_id=world.u("Dee").id, content=world.content["C4"])
    assert_consistent(db_session)
    assert db_session.get(DashboardCustomer, (world.org_a.id, world.u("Dee").id)) is not None
    assert db_session.get(ContentRevenue, (extra.content_id, "usd")).purchase_count == 1


def test_dashboard_reads_follow_a_refund(client, db_session, world: World, owner_a) -> None:
    """A refund landing on a purchase of 2025-03-03 changes that day and the all-time totals."""
    db_session.execute(
        update(Purchase)
        .where(Purchase.id == world.purchases["P5"].id)
        .values(refunded_amount_cents=1999, status="refunded", refunded_at=datetime.now(UTC))
    )
    base = f"/api/v1/orgs/{world.org_a.id}/dashboard"
    day = client.get(f"{base}/revenue?start=2025-03-03&end=2025-03-03", headers=owner_a).json["daily"][0]
    assert day == {
        "date": "2025-03-03",
        "gross_cents": 11997,
        "refunded_cents": 1000 + 4999 + 1999,
        "net_cents": 11997 - 7998,
        "purchase_count": 1,
    }
    summary = client.get(f"{base}/summary", headers=owner_a).json
    assert summary["all_time"] == {
        "gross_cents": 22993,
        "refunded_cents": 7998 + 1999,
        "net_cents": 14995 - 1999,
        "purchase_count": 3,
    }
    assert [(t["title"], t["net_cents"], t["purchase_count"]) for t in summary["top_content"]] == [
        ("Beta", 8998, 2),
        ("Alpha", 3998, 1),
    ]


def test_deleting_a_grant_only_user_cascades(db_session, world: World) -> None:
    """Users are never deleted by the API, but the database's CASCADE must still work."""
    from app.identity.models import User

    newcomer = factories.UserFactory()
    factories.GrantFactory(user_id=newcomer.id, content_id=world.content["C4"].id, organization_id=world.org_a.id)
    db_session.flush()
    assert db_session.get(DashboardCustomer, (world.org_a.id, newcomer.id)).active_grant_count == 1
    db_session.execute(delete(User).where(User.id == newcomer.id))
    db_session.expire_all()
    assert db_session.get(DashboardCustomer, (world.org_a.id, newcomer.id)) is None
    assert_consistent(db_session)


def test_rebuild_recomputes_damaged_rollups_of_one_org_or_all(app, db_session, world: World) -> None:
    """``codex rebuild-rollups``: the rows the triggers would have, from purchases and grants alone."""
    from app.dashboard.rollups import rebuild

    p1 = world.purchases["P1"].id
    db_session.execute(update(Purchase).where(Purchase.id == p1).values(refunded_amount_cents=500))
    assert_consistent(db_session)
    org_b = world.purchases["Q1"].organization_id
    before_b = db_session.execute(
        text("SELECT * FROM dashboard_daily_revenue WHERE organization_id = :o ORDER BY 1, 2, 3"), {"o": org_b}
    ).all()
    # Damage what a manual repair with the triggers off could leave behind, in both orgs.
    db_session.execute(text("UPDATE dashboard_daily_revenue SET gross_cents = gross_cents + 7"))
    db_session.execute(text("DELETE FROM dashboard_customer_revenue WHERE organization_id = :o"), {"o": world.org_a.id})
    db_session.execute(text("UPDATE dashboard_customers SET active_grant_count = 99"))
    db_session.execute(text("DELETE FROM dashboard_content_revenue"))

    report = rebuild(db_session, world.org_a.id)
    assert report.rows["dashboard_customer_revenue"] > 0 and report.rows["dashboard_customers"] > 0
    damaged_b = db_session.execute(
        text("SELECT * FROM dashboard_daily_revenue WHERE organization_id = :o ORDER BY 1, 2, 3"), {"o": org_b}
    ).all()
    assert damaged_b != before_b  # the other org was left alone...

    rebuild(db_session)  # ...until every organization is rebuilt
    assert_consistent(db_session)
    after_b = db_session.execute(
        text("SELECT * FROM dashboard_daily_revenue WHERE organization_id = :o ORDER BY 1, 2, 3"), {"o": org_b}
    ).all()
    assert after_b == before_b

    # The triggers keep working on rebuilt rows.
    db_session.execute(update(Purchase).where(Purchase.id == p1).values(refunded_amount_cents=0))
    assert_consistent(db_session)


def test_rebuild_rollups_command(app, db_session, world: World) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["codex", "rebuild-rollups", "--org", str(world.org_a.id)])
    assert result.exit_code == 0, result.output
    assert f"rebuilt the dashboard rollups of organization {world.org_a.id}" in result.output
    assert "dashboard_daily_revenue:" in result.output
    assert runner.invoke(args=["codex", "rebuild-rollups", "--org", "nope"]).exit_code == 2  # not a UUID


def rollup_rows(session) -> dict[str, int]:
    tables = {
        "dashboard_daily_revenue": DailyRevenue,
        "dashboard_content_revenue": ContentRevenue,
        "dashboard_customers": DashboardCustomer,
        "dashboard_customer_revenue": CustomerRevenue,
        "dashboard_content_retention": ContentRetention,
    }
    return {table: session.scalar(select(func.count()).select_from(model)) or 0 for table, model in tables.items()}


def test_rebuild_rollups_prints_each_step_with_its_rows(app, db_session, world: World) -> None:
    before = rollup_rows(db_session)
    result = app.test_cli_runner().invoke(args=["codex", "rebuild-rollups"])
    assert result.exit_code == 0, result.output
    after = rollup_rows(db_session)
    assert all(after.values())
    lines = result.output.splitlines()
    assert lines[0] == "rebuilding the dashboard rollups of every organization"
    assert lines[1].startswith("  locking purchases, content_access and playback_progress against writes")
    assert re.fullmatch(r"  locked after \d+\.\d s", lines[2])
    assert lines[3] == f"  deleted {sum(before.values())} old rollup rows"
    for line, (table, count) in zip(lines[4:9], after.items(), strict=True):
        assert re.fullmatch(rf"  {table}: {count} rows \(\d+\.\d s\)", line), line
    assert lines[9:] == [f"rebuilt the dashboard rollups of every organization: {sum(after.values())} rows, committed"]
