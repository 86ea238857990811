"""Who may call the dashboard routes (README §5) and what bad input gets (api.md §11, README §3.4)."""

from __future__ import annotations

import uuid

import pytest

from tests import factories
from tests.dashboard.seed import World
from tests.identity.helpers import ORIGIN, add_member, auth, signed_in

READS = [
    "dashboard/summary",
    "dashboard/revenue",
    "dashboard/revenue.svg",
    "dashboard/top-content",
    "dashboard/customers",
    "audit",
    "emails",
]


def url(world: World, path: str) -> str:
    return f"/api/v1/orgs/{world.org_a.id}/{path}"


def caller(world: World, who: str) -> dict[str, str]:
    if who == "owner":
        user = world.owner_a
    elif who == "platform_owner":
        user = factories.UserFactory(role="platform_owner")
    elif who == "other_owner":
        user = world.owner_b
    elif who == "customer":
        user = world.u("Ana")
    else:
        user = add_member(world.org_a, role=who)
    return auth(signed_in(user))


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("owner", 200, None),
        ("admin", 200, None),
        ("platform_owner", 200, None),
        ("creator", 403, "FORBIDDEN"),
        ("customer", 404, "ORG_NOT_FOUND"),
        ("other_owner", 404, "ORG_NOT_FOUND"),
    ],
)
def test_read_matrix(client, world, path, who, status, code) -> None:
    r = client.get(url(world, path), headers=caller(world, who))
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    if code:
        assert r.json["error"]["code"] == code


@pytest.mark.parametrize("path", [*READS, "dashboard/customers/5a9e0000-0000-4000-8000-000000000001"])
def test_signed_out_is_401(client, world, path) -> None:
    r = client.get(url(world, path))
    assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHENTICATED"


def test_unknown_or_malformed_org_is_404(client, world, owner_a) -> None:
    for org_id in (uuid.uuid4(), "not-a-uuid"):
        r = client.get(f"/api/v1/orgs/{org_id}/dashboard/summary", headers=owner_a)
        assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("dashboard/revenue?start=2025-03-04&end=2025-03-03", "start"),  # end before start
        ("dashboard/revenue?start=2024-03-02&end=2025-03-03", "end"),  # 367 days
        ("dashboard/revenue?start=2025-02-30", "start"),  # no such day
        ("dashboard/revenue?start=2025-3-1", "start"),
        ("dashboard/revenue?start=2025-03-01T00:00:00", "start"),
        ("dashboard/revenue?currency=us", "currency"),
        ("dashboard/revenue?currency=u%24d", "currency"),
        ("dashboard/revenue?days=7", "days"),  # unknown parameter
        ("dashboard/revenue?start=2025-03-01&start=2025-03-02", "start"),  # repeated
        ("dashboard/revenue.svg?metric=refunds", "metric"),
        ("dashboard/revenue.svg?start=2025-03-04&end=2025-03-03", "start"),
        ("dashboard/top-content?metric=views", "metric"),  # unknown metric
        ("dashboard/top-content?limit=0", "limit"),
        ("dashboard/top-content?limit=51", "limit"),
        ("dashboard/top-content?limit=ten", "limit"),
        ("dashboard/top-content?start=2023-01-01&end=2025-01-01", "end"),
        ("dashboard/summary?currency=", "currency"),
        ("dashboard/customers?sort=email", "sort"),
        ("dashboard/customers?order=up", "order"),
        ("dashboard/customers?q=", "q"),
        ("dashboard/customers?q=" + "x" * 101, "q"),
        ("dashboard/customers?per_page=101", "per_page"),
        ("dashboard/customers?page=0", "page"),
        ("audit?action=grant.delete", "action"),
        ("audit?actor_user_id=nope", "actor_user_id"),
        ("emails?status=lost", "status"),
        ("emails?template=nope", "template"),
    ],
)
def test_bad_query_is_400(client, world, owner_a, path, field) -> None:
    r = client.get(url(world, path), headers=owner_a)
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.json["error"]["code"] == "VALIDATION_ERROR"
    assert field in r.json["error"]["details"], r.json


def test_schema_errors_come_before_the_role_check(client, world) -> None:
    """README §3.4: query schema (400) before role (403)."""
    r = client.get(url(world, "dashboard/top-content?limit=0"), headers=caller(world, "creator"))
    assert r.status_code == 400


def test_customer_and_grant_lookups_come_before_the_role_check(client, world) -> None:
    """A creator gets 404 for what does not exist and 403 for what does (README §3.4)."""
    creator = caller(world, "creator")
    missing = client.get(url(world, f"dashboard/customers/{uuid.uuid4()}"), headers=creator)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "CUSTOMER_NOT_FOUND"
    exists = client.get(url(world, f"dashboard/customers/{world.u('Ana').id}"), headers=creator)
    assert exists.status_code == 403 and exists.json["error"]["code"] == "FORBIDDEN"
    malformed = client.get(url(world, "dashboard/customers/nope"), headers=creator)
    assert malformed.status_code == 404 and malformed.json["error"]["code"] == "CUSTOMER_NOT_FOUND"


def test_cookie_writes_need_a_trusted_origin(client, world) -> None:
    token = signed_in(world.owner_a)
    client.set_cookie("codex_session", token)
    path = url(world, f"customers/{world.u('Bob').id}/grants")
    r = client.post(path, json={"content_id": str(world.content["C4"].id)})
    assert r.status_code == 403 and r.json["error"]["code"] == "CSRF_FAILED"
    r = client.post(path, json={"content_id": str(world.content["C4"].id)}, headers={"Origin": ORIGIN})
    assert r.status_code == 201, r.json


def test_every_operation_is_documented(app, world) -> None:
    spec = app.test_client().get("/api/v1/openapi.json").json
    base = "/api/v1/orgs/{org_id}"
    expected = {
        ("get", f"{base}/dashboard/summary"),
        ("get", f"{base}/dashboard/revenue"),
        ("get", f"{base}/dashboard/revenue.svg"),
        ("get", f"{base}/dashboard/top-content"),
        ("get", f"{base}/dashboard/customers"),
        ("get", f"{base}/dashboard/customers/{{user_id}}"),
        ("post", f"{base}/customers/{{user_id}}/grants"),
        ("delete", f"{base}/customers/{{user_id}}/grants/{{content_id}}"),
        ("get", f"{base}/audit"),
        ("get", f"{base}/emails"),
    }
    for method, path in expected:
        operation = spec["paths"][path][method]
        assert operation["summary"]
        assert {"401", "403", "404", "429", "500", "503"} <= set(operation["responses"]), (method, path)
    svg = spec["paths"][f"{base}/dashboard/revenue.svg"]["get"]["responses"]["200"]
    assert list(svg["content"]) == ["image/svg+xml"]
    grants = spec["paths"][f"{base}/customers/{{user_id}}/grants"]["post"]["responses"]
    assert {"201", "400", "409", "413", "415"} <= set(grants)
