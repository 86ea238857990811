"""Dashboard figures (api.md §11) over one org and one currency, computed in SQL. Never commits.

Definitions (api.md §11): gross = Σ amount; refunded = Σ refunded_amount + the unrefunded rest of
``charged_back`` rows; net = gross - refunded; purchase_count = ``completed`` and not duplicate;
customer = a user with at least one purchase or grant of the org's content (any currency).
Money is attributed to the UTC day of ``purchased_at``, refunds included (they reduce the day
of the sale, so a past day can change).

Where the figures come from: the summary and the daily series read the rollups that Postgres
triggers keep in the purchase's own transaction (``dashboard_daily_revenue``,
``dashboard_content_revenue``, ``dashboard_customers``; migration 0006), so they cost a few
hundred rows whatever the org's size. So do the customer list and the customer page's stats
(``dashboard_customer_revenue``, ``dashboard_customers.active_grant_count``; migration 0007).
Ranged top content aggregates ``purchases`` directly: its filter on ``(organization_id,
currency, purchased_at)`` is answered by the covering index ``ix_purchases_org_currency_purchased``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from app.access.models import ContentAccess, ContentDailyStats
from app.audit import AdminAuditEvent
from app.commerce.models import Purchase
from app.commerce.service import purchase_view
from app.content.models import Content
from app.dashboard.models import ContentRevenue, CustomerRevenue, DailyRevenue, DashboardCustomer
from app.http import not_found
from app.identity.models import User
from app.schemas import page_envelope, paginate

TOP_SUMMARY = 5
RECENT = 10

# ---- the money expressions (one place) -------------------------------------------------------------

_refunded = Purchase.refunded_amount_cents + case(
    (Purchase.status == "charged_back", Purchase.amount_cents - Purchase.refunded_amount_cents), else_=0
)
_counted = and_(Purchase.status == "completed", Purchase.is_duplicate.is_(False))


def _gross(where: Any = None) -> Any:
    total = func.sum(Purchase.amount_cents)
    return func.coalesce(total.filter(where) if where is not None else total, 0)


def _refunded_sum(where: Any = None) -> Any:
    total = func.sum(_refunded)
    return func.coalesce(total.filter(where) if where is not None else total, 0)


def _count(where: Any = None) -> Any:
    condition = _counted if where is None else and_(_counted, where)
    return func.count().filter(condition)


def totals(gross: int, refunded: int, count: int) -> dict[str, int]:
    return {
        "gross_cents": int(gross),
        "refunded_cents": int(refunded),
        "net_cents": int(gross) - int(refunded),
        "purchase_count": int(count),
    }


def _org_currency(organization_id: uuid.UUID, currency: str) -> Any:
    return and_(Purchase.organization_id == organization_id, Purchase.currency == currency)


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00 UTC, end + 1 day 00:00 UTC)``: a range the purchased_at index can seek."""
    return datetime.combine(start, time.min, UTC), datetime.combine(end + timedelta(days=1), time.min, UTC)


def month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


# ---- summary -----------------------------------------------------------------------------------------


def summary(session: Session, organization_id: uuid.UUID, currency: str, now: datetime | None = None) -> dict[str, Any]:
    """Totals from the daily rollup, top content from the per-content rollup (migration 0006)."""
    now = now or datetime.now(UTC)
    in_month = DailyRevenue.day >= month_start(now).date()
    where = and_(DailyRevenue.organization_id == organization_id, DailyRevenue.currency == currency)

    def total(column: Any, condition: Any = None) -> Any:
        summed = func.sum(column)
        return func.coalesce(summed.filter(condition) if condition is not None else summed, 0)

    sums = session.execute(
        select(
            total(DailyRevenue.gross_cents),
            total(DailyRevenue.refunded_cents),
            total(DailyRevenue.purchase_count),
            total(DailyRevenue.gross_cents, in_month),
            total(DailyRevenue.refunded_cents, in_month),
            total(DailyRevenue.purchase_count, in_month),
        ).where(where)
    ).one()
    net = (ContentRevenue.gross_cents - ContentRevenue.refunded_cents).label("net")
    top_rows = session.execute(
        select(ContentRevenue.content_id, Content.title, net, ContentRevenue.purchase_count)
        .join(Content, Content.id == ContentRevenue.content_id)
        .where(
            ContentRevenue.organization_id == organization_id,
            ContentRevenue.currency == currency,
            net != 0,
        )
        .order_by(net.desc(), Content.title, ContentRevenue.content_id)
        .limit(TOP_SUMMARY)
    ).all()
    return {
        "currency": currency,
        "all_time": totals(sums[0], sums[1], sums[2]),
        "this_month": totals(sums[3], sums[4], sums[5]),
        "customer_count": customer_count(session, organization_id),
        "top_content": [
            {"content_id": row[0], "title": row[1], "net_cents": int(row[2]), "purchase_count": int(row[3])}
            for row in top_rows
        ],
        "recent_purchases": recent_purchases(session, organization_id, currency),
    }


def customer_count(session: Session, organization_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(DashboardCustomer.organization_id == organization_id)
    return int(session.scalar(stmt) or 0)


def recent_purchases(session: Session, organization_id: uuid.UUID, currency: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Purchase, Content.title, User.name, User.email)
        .join(Content, Content.id == Purchase.content_id)
        .join(User, User.id == Purchase.customer_id)
        .where(_org_currency(organization_id, currency))
        .order_by(Purchase.purchased_at.desc(), Purchase.id.desc())
        .limit(RECENT)
    ).all()
    return [
        {
            "purchase_id": p.id,
            "content_id": p.content_id,
            "content_title": title,
            "customer_id": p.customer_id,
            "customer_name": name,
            "customer_email": email,
            "amount_cents": p.amount_cents,
            "currency": p.currency,
            "status": p.status,
            "purchased_at": p.purchased_at,
        }
        for p, title, name, email in rows
    ]


# ---- revenue over a range ----------------------------------------------------------------------------


def day_series(start: date, end: date) -> Subquery:
    """Every UTC day of ``[start, end]`` as a subquery with one column ``day``: the left side of the
    zero-filled daily series (revenue here, engagement's watch figures)."""
    return select(
        cast(
            func.generate_series(
                cast(literal(start), Date), cast(literal(end), Date), literal_column("interval '1 day'")
            ),
            Date,
        ).label("day")
    ).subquery("days")


def daily_revenue(
    session: Session, organization_id: uuid.UUID, currency: str, start: date, end: date
) -> list[dict[str, Any]]:
    """One row per UTC day of ``[start, end]``: the daily rollup, zero-filled by ``generate_series``."""
    days = day_series(start, end)
    rollup = and_(
        DailyRevenue.organization_id == organization_id,
        DailyRevenue.currency == currency,
        DailyRevenue.day == days.c.day,
    )
    rows = session.execute(
        select(
            days.c.day,
            func.coalesce(DailyRevenue.gross_cents, 0),
            func.coalesce(DailyRevenue.refunded_cents, 0),
            func.coalesce(DailyRevenue.purchase_count, 0),
        )
        .select_from(days.outerjoin(DailyRevenue, rollup))
        .order_by(days.c.day)
    ).all()
    return [{"date": row[0], **totals(row[1], row[2], row[3])} for row in rows]


def revenue(session: Session, organization_id: uuid.UUID, currency: str, start: date, end: date) -> dict[str, Any]:
    daily = daily_revenue(session, organization_id, currency, start, end)
    gross = sum(d["gross_cents"] for d in daily)
    refunded = sum(d["refunded_cents"] for d in daily)
    count = sum(d["purchase_count"] for d in daily)
    return {"currency": currency, "start": start, "end": end, "totals": totals(gross, refunded, count), "daily": daily}


# ---- top content ---------------------------------------------------------------------------------------


def top_content(
    session: Session,
    organization_id: uuid.UUID,
    *,
    metric: str,
    currency: str,
    start: date,
    end: date,
    limit: int,
) -> dict[str, Any]:
    """Content ranked by ``metric`` over the range (net revenue, purchase count or seconds watched)."""
    lower, upper = day_bounds(start, end)
    sales = (
        select(
            Purchase.content_id.label("content_id"),
            (_gross() - _refunded_sum()).label("net"),
            _count().label("count"),
        )
        .where(_org_currency(organization_id, currency), Purchase.purchased_at >= lower, Purchase.purchased_at < upper)
        .group_by(Purchase.content_id)
        .subquery("sales")
    )
    watched = (
        select(
            ContentDailyStats.content_id.label("content_id"),
            func.sum(ContentDailyStats.seconds_watched).label("seconds"),
        )
        .where(
            ContentDailyStats.organization_id == organization_id,
            ContentDailyStats.day >= start,
            ContentDailyStats.day <= end,
        )
        .group_by(ContentDailyStats.content_id)
        .subquery("watched")
    )
    net = func.coalesce(sales.c.net, 0)
    count = func.coalesce(sales.c.count, 0)
    seconds = func.coalesce(watched.c.seconds, 0)
    key = {"revenue": net, "purchases": count, "watch_time": seconds}[metric]
    driver = watched if metric == "watch_time" else sales
    other = sales if metric == "watch_time" else watched
    rows = session.execute(
        select(Content.id, Content.title, Content.slug, net, count, seconds)
        .select_from(driver)
        .join(Content, and_(Content.id == driver.c.content_id, Content.organization_id == organization_id))
        .outerjoin(other, other.c.content_id == driver.c.content_id)
        .where(key != 0)
        .order_by(key.desc(), Content.title, Content.id)
        .limit(limit)
    ).all()
    return {
        "metric": metric,
        "currency": currency,
        "start": start,
        "end": end,
        "items": [
            {
                "content_id": row[0],
                "title": row[1],
                "slug": row[2],
                "net_cents": int(row[3]),
                "purchase_count": int(row[4]),
                "seconds_watched": int(row[5]),
            }
            for row in rows
        ],
    }


# ---- customers -----------------------------------------------------------------------------------------


def _like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_customers(
    session: Session,
    organization_id: uuid.UUID,
    *,
    currency: str,
    q: str | None,
    sort: str,
    order: str,
    page: int,
    per_page: int,
) -> dict[str, Any]:
    """Every customer of the org with its figures in ``currency`` (rollups of migration 0007).

    Figures count ``completed`` purchases, as the customer page does: purchase_count leaves out
    duplicates; total spent is amount - refunded, which is the customer's net (a refunded or
    charged-back purchase nets to zero anyway).
    """
    revenue = and_(
        CustomerRevenue.organization_id == DashboardCustomer.organization_id,
        CustomerRevenue.user_id == DashboardCustomer.user_id,
        CustomerRevenue.currency == currency,
    )
    total_spent = func.coalesce(CustomerRevenue.total_spent_cents, 0)
    where = [DashboardCustomer.organization_id == organization_id]
    if q is not None:
        pattern = _like_pattern(q)
        where.append(or_(User.name.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\")))
    column = {"total_spent_cents": total_spent, "last_purchase_at": CustomerRevenue.last_purchase_at, "name": User.name}
    primary = column[sort].asc() if order == "asc" else column[sort].desc()
    stmt = (
        select(
            User.id,
            User.name,
            User.email,
            func.coalesce(CustomerRevenue.purchase_count, 0),
            total_spent,
            CustomerRevenue.first_purchase_at,
            CustomerRevenue.last_purchase_at,
            DashboardCustomer.active_grant_count,
        )
        .select_from(DashboardCustomer)
        .join(User, User.id == DashboardCustomer.user_id)
        .outerjoin(CustomerRevenue, revenue)
        .where(*where)
        .order_by(primary.nulls_last(), User.name, User.id)
    )
    counted = select(func.count()).select_from(DashboardCustomer)
    if q is not None:
        counted = counted.join(User, User.id == DashboardCustomer.user_id)
    total = int(session.scalar(counted.where(*where)) or 0)
    offset = (page - 1) * per_page
    # A page past the end is empty without asking (a huge page would overflow OFFSET's bigint).
    rows = session.execute(stmt.limit(per_page).offset(offset)).all() if offset < total else []
    items = [
        {
            "user_id": row[0],
            "name": row[1],
            "email": row[2],
            "purchase_count": int(row[3]),
            "total_spent_cents": int(row[4]),
            "first_purchase_at": row[5],
            "last_purchase_at": row[6],
            "active_grant_count": int(row[7]),
        }
        for row in rows
    ]
    return page_envelope(items, page, per_page, total)


def grant_view(grant: ContentAccess, content_title: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": grant.id,
        "user_id": grant.user_id,
        "content_id": grant.content_id,
        "organization_id": grant.organization_id,
        "source": grant.source,
        "purchase_id": grant.purchase_id,
        "granted_by": grant.granted_by,
        "granted_at": grant.granted_at,
        "revoked_at": grant.revoked_at,
        "revoke_reason": grant.revoke_reason,
    }
    if content_title is not None:
        view["content_title"] = content_title
    return view


def is_customer(session: Session, organization_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return session.get(DashboardCustomer, (organization_id, user_id)) is not None


def customer_detail(session: Session, organization_id: uuid.UUID, user_id: uuid.UUID, currency: str) -> dict[str, Any]:
    """Every purchase (any status and currency) and grant of the org; stats over completed ones."""
    user = session.get(User, user_id)
    if user is None or not is_customer(session, organization_id, user_id):
        raise not_found("CUSTOMER_NOT_FOUND")
    purchases = session.execute(
        select(Purchase, Content.title)
        .join(Content, Content.id == Purchase.content_id)
        .where(Purchase.organization_id == organization_id, Purchase.customer_id == user_id)
        .order_by(Purchase.purchased_at.desc(), Purchase.id.desc())
    ).all()
    grants = session.execute(
        select(ContentAccess, Content.title)
        .join(Content, Content.id == ContentAccess.content_id)
        .where(ContentAccess.organization_id == organization_id, ContentAccess.user_id == user_id)
        .order_by(ContentAccess.granted_at.desc(), ContentAccess.id.desc())
    ).all()
    stats = session.get(CustomerRevenue, (organization_id, currency, user_id))
    return {
        "customer": {"user_id": user.id, "name": user.name, "email": user.email, "created_at": user.created_at},
        "purchases": [{**purchase_view(p), "content_title": title} for p, title in purchases],
        "grants": [grant_view(g, title) for g, title in grants],
        "stats": {
            "purchase_count": stats.purchase_count if stats else 0,
            "total_spent_cents": stats.total_spent_cents if stats else 0,
            "first_purchase_at": stats.first_purchase_at if stats else None,
            "last_purchase_at": stats.last_purchase_at if stats else None,
        },
    }


# ---- audit log ------------------------------------------------------------------------------------------


def list_audit(
    session: Session,
    organization_id: uuid.UUID,
    *,
    action: str | None,
    actor_user_id: uuid.UUID | None,
    page: int,
    per_page: int,
) -> dict[str, Any]:
    stmt = select(AdminAuditEvent).where(AdminAuditEvent.organization_id == organization_id)
    if action is not None:
        stmt = stmt.where(AdminAuditEvent.action == action)
    if actor_user_id is not None:
        stmt = stmt.where(AdminAuditEvent.actor_user_id == actor_user_id)
    stmt = stmt.order_by(AdminAuditEvent.created_at.desc(), AdminAuditEvent.id.desc())
    return paginate(session, stmt, page, per_page)
