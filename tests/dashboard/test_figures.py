"""Every dashboard figure against values computed by hand from tests/dashboard/seed.py.

usd, org A, all time: gross = 4 x 1999 + 3 x 4999 = 22993; refunded = 1999 (P2) + 1000 (P3) +
4999 (P4 charged back) = 7998; net = 14995; purchase_count = P1, P3, P5, P7 = 4 (P2 refunded,
P4 charged back, P6 duplicate). This month: P7 only. eur: P9 + P10 = 3000, refunded 500.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from app.dashboard import service
from tests.dashboard.seed import World, month_start
from tests.identity.helpers import auth, signed_in


def money(gross: int, refunded: int, count: int) -> dict[str, int]:
    return {"gross_cents": gross, "refunded_cents": refunded, "net_cents": gross - refunded, "purchase_count": count}


def url(world: World, path: str, org: str = "a") -> str:
    org_id = world.org_a.id if org == "a" else world.org_b.id
    return f"/api/v1/orgs/{org_id}/{path}"


# ---- summary --------------------------------------------------------------------------------------------


def test_summary_usd(client, world, owner_a) -> None:
    r = client.get(url(world, "dashboard/summary"), headers=owner_a)
    assert r.status_code == 200, r.json
    body = r.json
    assert body["currency"] == "usd"
    assert body["all_time"] == money(22993, 7998, 4)
    assert body["this_month"] == money(4999, 0, 1)
    assert body["customer_count"] == 5  # Ana, Bob, Cid, Dee (grant only), Eve (eur only); not Fay (org B)
    c = world.content
    assert body["top_content"] == [
        {"content_id": str(c["C2"].id), "title": "Beta", "net_cents": 3999 + 0 + 4999, "purchase_count": 2},
        {"content_id": str(c["C1"].id), "title": "Alpha", "net_cents": 1999 + 0 + 1999 + 1999, "purchase_count": 2},
    ]
    p = world.purchases
    recent = body["recent_purchases"]
    assert [item["purchase_id"] for item in recent] == [
        str(p[k].id) for k in ("P7", "P5", "P4", "P3", "P6", "P2", "P1")
    ]  # usd only, newest first, nothing of org B (Q1 is Ana's too)
    assert recent[0] == {
        "purchase_id": str(p["P7"].id),
        "content_id": str(c["C2"].id),
        "content_title": "Beta",
        "customer_id": str(world.u("Ana").id),
        "customer_name": "Ana",
        "customer_email": "ana@example.com",
        "amount_cents": 4999,
        "currency": "usd",
        "status": "completed",
        "purchased_at": (month_start() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }
    assert recent[2]["status"] == "charged_back" and recent[5]["status"] == "refunded"


def test_summary_eur_and_uppercase_currency(client, world, owner_a) -> None:
    body = client.get(url(world, "dashboard/summary?currency=EUR"), headers=owner_a).json
    assert body["currency"] == "eur"
    assert body["all_time"] == money(3000, 500, 2)
    assert body["this_month"] == money(1500, 500, 1)
    assert body["customer_count"] == 5  # customers are counted across currencies
    assert [(t["title"], t["net_cents"], t["purchase_count"]) for t in body["top_content"]] == [("Gamma", 2500, 2)]
    assert [r["purchase_id"] for r in body["recent_purchases"]] == [
        str(world.purchases["P10"].id),
        str(world.purchases["P9"].id),
    ]


def test_summary_of_the_other_org_shows_only_its_own(client, world) -> None:
    body = client.get(url(world, "dashboard/summary", "b"), headers=auth(signed_in(world.owner_b))).json
    assert body["all_time"] == money(1998, 0, 2)
    assert body["this_month"] == money(999, 0, 1)
    assert body["customer_count"] == 2
    assert [t["title"] for t in body["top_content"]] == ["Drill"]
    assert {r["customer_name"] for r in body["recent_purchases"]} == {"Ana", "Fay"}


def test_summary_of_an_empty_org(client, world, owner_a) -> None:
    body = client.get(url(world, "dashboard/summary?currency=gbp"), headers=owner_a).json
    assert body["all_time"] == money(0, 0, 0) and body["this_month"] == money(0, 0, 0)
    assert body["top_content"] == [] and body["recent_purchases"] == []


def test_summary_top_five_and_recent_ten(client, db_session, world, owner_a) -> None:
    from tests import factories

    buyer = world.u("Fay")
    now = datetime.now(UTC)
    for i in range(12):
        item = factories.PaidContentFactory(
            organization_id=world.org_a.id, created_by=world.owner_a.id, title=f"Extra {i:02d}", price_cents=100 + i
        )
        factories.PurchaseFactory(customer_id=buyer.id, content=item, purchased_at=now - timedelta(minutes=30 - i))
    body = client.get(url(world, "dashboard/summary"), headers=owner_a).json
    assert [t["title"] for t in body["top_content"]] == ["Beta", "Alpha", "Extra 11", "Extra 10", "Extra 09"]
    assert len(body["recent_purchases"]) == 10
    assert body["recent_purchases"][0]["content_title"] == "Extra 11"


def test_this_month_follows_the_utc_month(db_session, world) -> None:
    """The service takes ``now``: on 2025-03-03 the March rows are "this month"."""
    body = service.summary(db_session, world.org_a.id, "usd", now=datetime(2025, 3, 20, tzinfo=UTC))
    # P1, P2 (03-01 23:30 UTC), P6, P3, P4, P5: March 2025. P7 is in the future, and counted too.
    assert body["this_month"] == money(22993, 7998, 4)
    body = service.summary(db_session, world.org_a.id, "usd", now=datetime(2025, 4, 2, tzinfo=UTC))
    assert body["this_month"] == money(4999, 0, 1)


# ---- revenue --------------------------------------------------------------------------------------------


def test_revenue_daily_series(client, world, owner_a) -> None:
    r = client.get(url(world, "dashboard/revenue?start=2025-02-28&end=2025-03-04"), headers=owner_a)
    assert r.status_code == 200, r.json
    assert r.json["currency"] == "usd" and r.json["start"] == "2025-02-28" and r.json["end"] == "2025-03-04"
    assert r.json["daily"] == [
        {"date": "2025-02-28", **money(0, 0, 0)},
        {"date": "2025-03-01", **money(1999 + 1999, 1999, 1)},  # P1, P2 (23:30 UTC stays on the 1st)
        {"date": "2025-03-02", **money(1999, 0, 0)},  # P6: a duplicate is money, not a purchase
        {"date": "2025-03-03", **money(4999 + 4999 + 1999, 1000 + 4999, 2)},  # P3 (00:10), P4, P5
        {"date": "2025-03-04", **money(0, 0, 0)},
    ]
    assert r.json["totals"] == money(17994, 7998, 3)


def test_revenue_matches_the_spec_example_shape_for_eur_and_other_org(client, world, owner_a) -> None:
    body = client.get(
        url(world, "dashboard/revenue?start=2025-03-02&end=2025-03-02&currency=eur"), headers=owner_a
    ).json
    assert body["daily"] == [{"date": "2025-03-02", **money(1500, 0, 1)}]
    body = client.get(
        url(world, "dashboard/revenue?start=2025-03-02&end=2025-03-02", "b"), headers=auth(signed_in(world.owner_b))
    ).json
    assert body["totals"] == money(999, 0, 1)


def test_revenue_defaults_to_the_last_30_days(client, world, owner_a) -> None:
    today = datetime.now(UTC).date()
    body = client.get(url(world, "dashboard/revenue"), headers=owner_a).json
    assert body["end"] == today.isoformat()
    assert body["start"] == (today - timedelta(days=29)).isoformat()
    assert len(body["daily"]) == 30
    assert body["totals"] == money(4999, 0, 1)  # P7, at the start of this month
    only_end = client.get(url(world, "dashboard/revenue?end=2025-03-03"), headers=owner_a).json
    assert only_end["start"] == "2025-02-02" and len(only_end["daily"]) == 30


def test_revenue_accepts_366_days(client, world, owner_a) -> None:
    r = client.get(url(world, "dashboard/revenue?start=2024-03-03&end=2025-03-03"), headers=owner_a)
    assert r.status_code == 200, r.json
    days = r.json["daily"]
    assert len(days) == 366 and days[0]["date"] == "2024-03-03" and days[-1]["date"] == "2025-03-03"
    assert [d["date"] for d in days] == [(date(2024, 3, 3) + timedelta(days=i)).isoformat() for i in range(366)]
    assert r.json["totals"] == money(17994, 7998, 3)


# ---- top content ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("revenue", [("Alpha", 5997, 2, 600), ("Beta", 3999, 1, 1200)]),
        ("purchases", [("Alpha", 5997, 2, 600), ("Beta", 3999, 1, 1200)]),
        ("watch_time", [("Beta", 3999, 1, 1200), ("Alpha", 5997, 2, 600)]),
    ],
)
def test_top_content(client, world, owner_a, metric, expected) -> None:
    r = client.get(
        url(world, f"dashboard/top-content?metric={metric}&start=2025-03-01&end=2025-03-03"), headers=owner_a
    )
    assert r.status_code == 200, r.json
    assert r.json["metric"] == metric and r.json["currency"] == "usd"
    got = [(i["title"], i["net_cents"], i["purchase_count"], i["seconds_watched"]) for i in r.json["items"]]
    assert got == expected  # Delta (no sales, 0 s watched) and org B's Drill are absent
    assert r.json["items"][0]["slug"] == expected[0][0].lower()


def test_top_content_limit_ties_and_zero(client, world, owner_a) -> None:
    body = client.get(url(world, "dashboard/top-content?limit=1&start=2025-03-01&end=2025-03-03"), headers=owner_a).json
    assert [i["title"] for i in body["items"]] == ["Alpha"]
    # 2025-03-01 alone: Alpha has P1 (net 1999) and P2 (net 0); purchases: 1 each way.
    body = client.get(
        url(world, "dashboard/top-content?metric=purchases&start=2025-03-02&end=2025-03-02"), headers=owner_a
    ).json
    assert body["items"] == []  # only the duplicate P6 that day: zero purchases
    body = client.get(
        url(world, "dashboard/top-content?metric=revenue&start=2025-03-02&end=2025-03-02"), headers=owner_a
    ).json
    assert [(i["title"], i["net_cents"], i["purchase_count"]) for i in body["items"]] == [("Alpha", 1999, 0)]


def test_top_content_in_eur(client, world, owner_a) -> None:
    body = client.get(
        url(world, "dashboard/top-content?currency=eur&start=2025-03-01&end=2025-03-31"), headers=owner_a
    ).json
    assert [(i["title"], i["net_cents"], i["purchase_count"], i["seconds_watched"]) for i in body["items"]] == [
        ("Gamma", 1500, 1, 0)
    ]


# ---- customers -----------------------------------------------------------------------------------------


def rows(body: dict) -> list[tuple]:
    return [(i["name"], i["purchase_count"], i["total_spent_cents"], i["active_grant_count"]) for i in body["items"]]


def test_customers_list(client, world, owner_a) -> None:
    r = client.get(url(world, "dashboard/customers"), headers=owner_a)
    assert r.status_code == 200, r.json
    assert r.json["total"] == 5 and r.json["pages"] == 1
    # last_purchase_at desc (completed purchases in usd), customers without one last, by name.
    assert rows(r.json) == [
        ("Ana", 2, 1999 + 1999 + 4999, 3),  # P1, P7 (+ the duplicate P6's money until it is refunded)
        ("Cid", 1, 1999, 0),  # P5; P4 charged back; both grants revoked for the disputes
        ("Bob", 1, 3999, 1),  # P3 minus its partial refund; P2 refunded
        ("Dee", 0, 0, 1),  # complimentary grant only; the open checkout session counts for nothing
        ("Eve", 0, 0, 1),  # eur only
    ]
    ana = r.json["items"][0]
    assert ana["email"] == "ana@example.com" and ana["first_purchase_at"] == "2025-03-01T10:00:00.000Z"
    dee = r.json["items"][3]
    assert dee["first_purchase_at"] is None and dee["last_purchase_at"] is None
    # Customer totals add up to the org's net revenue.
    assert sum(i["total_spent_cents"] for i in r.json["items"]) == 14995


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("sort=total_spent_cents", ["Ana", "Bob", "Cid", "Dee", "Eve"]),
        ("sort=total_spent_cents&order=asc", ["Dee", "Eve", "Cid", "Bob", "Ana"]),
        ("sort=name&order=asc", ["Ana", "Bob", "Cid", "Dee", "Eve"]),
        ("sort=name", ["Eve", "Dee", "Cid", "Bob", "Ana"]),
        ("sort=last_purchase_at&order=asc", ["Bob", "Cid", "Ana", "Dee", "Eve"]),
        ("currency=eur&sort=total_spent_cents", ["Eve", "Ana", "Bob", "Cid", "Dee"]),
        ("q=BO", ["Bob"]),
        ("q=ee%40exam", ["Dee"]),
        ("q=%25", []),
        ("q=_", []),
        ("q=example.com&per_page=2&page=2", ["Bob", "Dee"]),
    ],
)
def test_customers_sort_search_and_pages(client, world, owner_a, query, names) -> None:
    body = client.get(url(world, f"dashboard/customers?{query}"), headers=owner_a).json
    assert [i["name"] for i in body["items"]] == names


def test_customers_eur_figures(client, world, owner_a) -> None:
    body = client.get(url(world, "dashboard/customers?currency=eur&sort=name&order=asc"), headers=owner_a).json
    assert rows(body)[0] == ("Ana", 1, 1000, 3) and rows(body)[4] == ("Eve", 1, 1500, 1)


def test_customers_of_the_other_org(client, world) -> None:
    body = client.get(
        url(world, "dashboard/customers?sort=name&order=asc", "b"), headers=auth(signed_in(world.owner_b))
    ).json
    assert rows(body) == [("Ana", 1, 999, 1), ("Fay", 1, 999, 1)]


def test_customer_detail(client, world, owner_a) -> None:
    ana = world.u("Ana")
    r = client.get(url(world, f"dashboard/customers/{ana.id}"), headers=owner_a)
    assert r.status_code == 200, r.json
    body = r.json
    assert body["customer"] == {
        "user_id": str(ana.id),
        "name": "Ana",
        "email": "ana@example.com",
        "created_at": body["customer"]["created_at"],
    }
    p = world.purchases
    # Every purchase of the org, any status and currency, newest first; nothing of org B (Q1).
    assert [x["id"] for x in body["purchases"]] == [str(p[k].id) for k in ("P10", "P7", "P6", "P1")]
    assert body["purchases"][2]["is_duplicate"] is True and body["purchases"][2]["content_title"] == "Alpha"
    assert body["purchases"][0]["currency"] == "eur" and body["purchases"][0]["refunded_amount_cents"] == 500
    assert sorted(g["content_title"] for g in body["grants"]) == ["Alpha", "Beta", "Gamma"]
    assert all(g["source"] == "purchase" and g["revoked_at"] is None for g in body["grants"])
    assert body["stats"] == {
        "purchase_count": 2,
        "total_spent_cents": 8997,
        "first_purchase_at": "2025-03-01T10:00:00.000Z",
        "last_purchase_at": (month_start() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


def test_customer_detail_counts_completed_only(client, world, owner_a) -> None:
    body = client.get(url(world, f"dashboard/customers/{world.u('Cid').id}"), headers=owner_a).json
    assert [x["status"] for x in body["purchases"]] == ["completed", "charged_back"]  # all shown
    assert {(g["content_title"], g["revoke_reason"]) for g in body["grants"]} == {
        ("Alpha", "dispute"),
        ("Beta", "dispute"),
    }
    assert body["stats"] == {
        "purchase_count": 1,
        "total_spent_cents": 1999,
        "first_purchase_at": "2025-03-03T15:00:00.000Z",
        "last_purchase_at": "2025-03-03T15:00:00.000Z",
    }
    bob = client.get(url(world, f"dashboard/customers/{world.u('Bob').id}"), headers=owner_a).json
    assert bob["stats"]["purchase_count"] == 1 and bob["stats"]["total_spent_cents"] == 3999
    assert len(bob["purchases"]) == 2


def test_customer_detail_grant_only_and_eur(client, world, owner_a) -> None:
    dee = client.get(url(world, f"dashboard/customers/{world.u('Dee').id}"), headers=owner_a).json
    assert dee["purchases"] == [] and dee["stats"] == {
        "purchase_count": 0,
        "total_spent_cents": 0,
        "first_purchase_at": None,
        "last_purchase_at": None,
    }
    assert dee["grants"][0]["source"] == "complimentary" and dee["grants"][0]["granted_by"] == str(world.owner_a.id)
    eve = client.get(url(world, f"dashboard/customers/{world.u('Eve').id}?currency=eur"), headers=owner_a).json
    assert eve["stats"]["purchase_count"] == 1 and eve["stats"]["total_spent_cents"] == 1500


@pytest.mark.parametrize("who", ["Fay", "unknown", "owner"])
def test_customer_detail_not_a_customer(client, world, owner_a, who) -> None:
    """Org B's customer, an unknown id, a user without purchases or grants here: 404."""
    import uuid

    user_id = {"Fay": world.u("Fay").id, "unknown": uuid.uuid4(), "owner": world.owner_a.id}[who]
    r = client.get(url(world, f"dashboard/customers/{user_id}"), headers=owner_a)
    assert r.status_code == 404 and r.json["error"]["code"] == "CUSTOMER_NOT_FOUND"
