"""A hand-checked dataset for the dashboard tests: two orgs, two currencies, every purchase state.

Org A ("Acme") sells C1 "Alpha" (19.99 usd), C2 "Beta" (49.99 usd), C3 "Gamma" (15.00 eur) and has
C4 "Delta" (never sold). Org B ("Bolt") sells D1 (9.99 usd) — to Ana too, so a leak would show.
Times are UTC. ``M`` is the start of the current UTC month (the "this month" rows sit just after it).

| id  | org | who | content | amount | state                                           | purchased_at        |
|-----|-----|-----|---------|--------|-------------------------------------------------|---------------------|
| P1  | A   | Ana | C1      | 1999   | completed                                       | 2025-03-01 10:00    |
| P2  | A   | Bob | C1      | 1999   | refunded (1999)                                 | 2025-03-01 23:30    |
| P6  | A   | Ana | C1      | 1999   | completed, duplicate, refund requested          | 2025-03-02 09:00    |
| P3  | A   | Bob | C2      | 4999   | completed, partially refunded (1000)            | 2025-03-03 00:10    |
| P4  | A   | Cid | C2      | 4999   | charged_back (dispute lost)                     | 2025-03-03 12:00    |
| P5  | A   | Cid | C1      | 1999   | completed, dispute open                         | 2025-03-03 15:00    |
| P7  | A   | Ana | C2      | 4999   | completed, refund requested (pending)           | M + 1 min           |
| P9  | A   | Eve | C3      | 1500   | completed (eur)                                 | 2025-03-02 12:00    |
| P10 | A   | Ana | C3      | 1500   | completed, partially refunded 500 (eur)         | M + 2 min           |
| Q1  | B   | Ana | D1      | 999    | completed                                       | 2025-03-02 08:00    |
| Q2  | B   | Fay | D1      | 999    | completed                                       | M + 3 min           |

Plus: an open (unpaid) checkout session of Dee for C2 (a pending payment: counts nowhere), a
complimentary grant of C1 to Dee (a customer without purchases), purchase grants as fulfilment
leaves them (revoked for the refund and the disputes), and watch-time rows.

Viewers (``playback_progress``, all reporting a 600 s duration for C1, 100 s for D1): on C1 Ana
(furthest 600, completed), Bob (150 = 25 %), Cid (310 = 51.7 %) and Dee (0); on D1 Fay (90).
So C1's retention is 1.0 at 0 %, 0.75 up to 25 %, 0.5 up to 50 %, 0.25 from 55 % to 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.access.models import ContentAccess, ContentDailyStats, PlaybackProgress
from app.commerce.models import Purchase
from app.content.models import Content
from app.identity.models import User
from app.orgs.models import Organization
from tests import factories
from tests.identity.helpers import make_org


def month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def at(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}:00+00:00")


@dataclass
class World:
    owner_a: User
    owner_b: User
    org_a: Organization
    org_b: Organization
    users: dict[str, User]
    content: dict[str, Content]
    purchases: dict[str, Purchase]
    grants: dict[str, ContentAccess] = field(default_factory=dict)

    def u(self, name: str) -> User:
        return self.users[name]


def _purchase(content: Content, customer: User, when: datetime, **kwargs: Any) -> Purchase:
    kwargs.setdefault("amount_cents", content.price_cents)
    kwargs.setdefault("currency", content.currency)
    purchase: Purchase = factories.PurchaseFactory(
        customer_id=customer.id, content=content, purchased_at=when, **kwargs
    )
    return purchase


def _grant(user: User, content: Content, **kwargs: Any) -> ContentAccess:
    grant: ContentAccess = factories.GrantFactory(
        user_id=user.id, content_id=content.id, organization_id=content.organization_id, **kwargs
    )
    return grant


def seed() -> World:
    m = month_start()
    owner_a = factories.UserFactory(name="Olga Owner", email="olga@acme.test")
    owner_b = factories.UserFactory(name="Otto Owner", email="otto@bolt.test")
    org_a = make_org(owner_a, name="Acme")
    org_b = make_org(owner_b, name="Bolt")
    users = {
        name: factories.UserFactory(name=name, email=f"{name.lower()}@example.com")
        for name in ("Ana", "Bob", "Cid", "Dee", "Eve", "Fay")
    }

    def content(org: Organization, owner: User, title: str, price: int, currency: str = "usd") -> Content:
        item: Content = factories.PaidContentFactory(
            organization_id=org.id,
            created_by=owner.id,
            title=title,
            slug=title.lower(),
            price_cents=price,
            currency=currency,
        )
        return item

    c = {
        "C1": content(org_a, owner_a, "Alpha", 1999),
        "C2": content(org_a, owner_a, "Beta", 4999),
        "C3": content(org_a, owner_a, "Gamma", 1500, "eur"),
        "C4": content(org_a, owner_a, "Delta", 2500),
        "D1": content(org_b, owner_b, "Drill", 999),
    }
    ana, bob, cid, dee, eve, fay = (users[n] for n in ("Ana", "Bob", "Cid", "Dee", "Eve", "Fay"))
    p = {
        "P1": _purchase(c["C1"], ana, at("2025-03-01", "10:00")),
        "P2": _purchase(
            c["C1"],
            bob,
            at("2025-03-01", "23:30"),
            status="refunded",
            refunded_amount_cents=1999,
            refunded_at=at("2025-03-05", "10:00"),
            refund_status="succeeded",
        ),
        "P6": _purchase(
            c["C1"],
            ana,
            at("2025-03-02", "09:00"),
            is_duplicate=True,
            refund_status="requested",
            refund_reason="duplicate_purchase",
        ),
        "P3": _purchase(c["C2"], bob, at("2025-03-03", "00:10"), refunded_amount_cents=1000, refund_status="succeeded"),
        "P4": _purchase(
            c["C2"],
            cid,
            at("2025-03-03", "12:00"),
            status="charged_back",
            disputed_at=at("2025-03-10", "10:00"),
            dispute_status="lost",
        ),
        "P5": _purchase(
            c["C1"],
            cid,
            at("2025-03-03", "15:00"),
            disputed_at=at("2025-03-11", "10:00"),
            dispute_status="needs_response",
        ),
        "P7": _purchase(c["C2"], ana, m + timedelta(minutes=1), refund_status="requested", refund_requested_at=m),
        "P9": _purchase(c["C3"], eve, at("2025-03-02", "12:00")),
        "P10": _purchase(c["C3"], ana, m + timedelta(minutes=2), refunded_amount_cents=500),
        "Q1": _purchase(c["D1"], ana, at("2025-03-02", "08:00")),
        "Q2": _purchase(c["D1"], fay, m + timedelta(minutes=3)),
    }
    # A pending payment: an open, unpaid checkout session (no purchase row).
    factories.CheckoutSessionFactory(
        customer_id=dee.id, content_id=c["C2"].id, organization_id=org_a.id, amount_cents=4999
    )
    world = World(owner_a, owner_b, org_a, org_b, users, c, p)
    revoked = {"refund": at("2025-03-05", "10:00"), "dispute": at("2025-03-10", "10:00")}
    for key, (user, item, purchase, reason) in {
        "ana-C1": (ana, "C1", "P1", None),
        "bob-C1": (bob, "C1", "P2", "refund"),
        "bob-C2": (bob, "C2", "P3", None),
        "cid-C2": (cid, "C2", "P4", "dispute"),
        "cid-C1": (cid, "C1", "P5", "dispute"),
        "ana-C2": (ana, "C2", "P7", None),
        "eve-C3": (eve, "C3", "P9", None),
        "ana-C3": (ana, "C3", "P10", None),
        "ana-D1": (ana, "D1", "Q1", None),
        "fay-D1": (fay, "D1", "Q2", None),
    }.items():
        world.grants[key] = _grant(
            user,
            c[item],
            source="purchase",
            purchase_id=p[purchase].id,
            granted_at=p[purchase].purchased_at,
            revoked_at=revoked[reason] if reason else None,
            revoke_reason=reason,
        )
    world.grants["dee-C1"] = _grant(dee, c["C1"], granted_by=owner_a.id, granted_at=at("2025-03-04", "09:00"))
    for item, day, seconds in (
        ("C1", date(2025, 3, 2), 600),
        ("C2", date(2025, 3, 2), 1200),
        ("C2", date(2025, 2, 1), 999),
        ("C4", date(2025, 3, 3), 0),
        ("D1", date(2025, 3, 2), 5000),
    ):
        factories.current_session().add(
            ContentDailyStats(
                content_id=c[item].id,
                organization_id=c[item].organization_id,
                day=day,
                views_started=1,
                seconds_watched=seconds,
            )
        )
    for user, item, furthest, duration, done in (
        (ana, "C1", 600, 600, True),
        (bob, "C1", 150, 600, False),
        (cid, "C1", 310, 600, False),
        (dee, "C1", 0, 600, False),
        (fay, "D1", 90, 100, False),
    ):
        viewed(user, c[item], furthest, duration, completed=done)
    factories.current_session().flush()
    return world


def viewed(user: User, content: Content, furthest: int, duration: int, *, position: int | None = None,
           completed: bool = False) -> PlaybackProgress:  # fmt: skip
    """A progress row as the flush leaves it (the position defaults to the furthest one)."""
    now = datetime.now(UTC)
    row = PlaybackProgress(
        user_id=user.id,
        content_id=content.id,
        position_seconds=furthest if position is None else position,
        max_position_seconds=furthest,
        duration_seconds=duration,
        completed=completed,
        completed_at=now if completed else None,
        client_ts=now,
    )
    factories.current_session().add(row)
    return row
