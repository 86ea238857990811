"""Organizations: create, list, get, update (api.md §4)."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import select

from app.audit import AdminAuditEvent
from app.orgs.models import Membership, Organization, OrgSettings
from tests.identity.helpers import add_member, auth, count, make_org, make_user, signed_in

ORGS = "/api/v1/orgs"


def test_create_org_makes_caller_the_owner_with_default_settings(client, db_session) -> None:
    user = make_user(email="ana@example.com")
    r = client.post(
        ORGS,
        json={"name": " Bakery ", "slug": "bakery", "description": "Bread\nand cakes"},
        headers=auth(signed_in(user)),
    )
    assert r.status_code == 201
    body = r.json
    assert set(body) == {"id", "name", "slug", "description", "my_role", "created_at", "updated_at"}
    assert body["name"] == "Bakery" and body["my_role"] == "owner" and body["description"] == "Bread\nand cakes"
    org_id = uuid.UUID(body["id"])
    memberships = db_session.scalars(select(Membership).where(Membership.organization_id == org_id)).all()
    assert [(m.user_id, m.role) for m in memberships] == [(user.id, "owner")]
    settings = db_session.get(OrgSettings, org_id)
    assert settings.platform_name == "Bakery" and settings.support_email == "ana@example.com"
    assert settings.primary_color == "#3B82F6" and settings.timezone == "UTC"
    assert db_session.get(Organization, org_id).created_by == user.id


def test_create_org_defaults_description_to_null(client, db_session) -> None:
    r = client.post(
        ORGS, json={"name": "Bakery", "slug": "bakery", "description": "   "}, headers=auth(signed_in(make_user()))
    )
    assert r.status_code == 201 and r.json["description"] is None


def test_slug_taken_is_409(client, db_session) -> None:
    make_org(slug="bakery")
    r = client.post(ORGS, json={"name": "Bakery", "slug": "bakery"}, headers=auth(signed_in(make_user())))
    assert r.status_code == 409 and r.json["error"]["code"] == "SLUG_TAKEN"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "B", "slug": "ab"}, "slug"),
        ({"name": "B", "slug": "a" * 51}, "slug"),
        ({"name": "B", "slug": "Bakery"}, "slug"),
        ({"name": "B", "slug": "-bakery"}, "slug"),
        ({"name": "B", "slug": "bak--ery"}, "slug"),
        ({"name": "B", "slug": "bak ery"}, "slug"),
        ({"name": "B", "slug": "admin"}, "slug"),
        ({"name": "B", "slug": "catalog"}, "slug"),
        ({"name": "B", "slug": "3b0e4a5c-1111-4222-8333-944455556666"}, "slug"),
        ({"name": "", "slug": "bakery"}, "name"),
        ({"name": "x" * 101, "slug": "bakery"}, "name"),
        ({"name": "B", "slug": "bakery", "description": "x" * 1001}, "description"),
        ({"name": "B", "slug": "bakery", "description": "bad\x00"}, "description"),
        ({"name": "B", "slug": "bakery", "owner": "me"}, "owner"),
        ({"slug": "bakery"}, "name"),
    ],
)
def test_create_org_bad_input_is_400_and_writes_nothing(client, db_session, body, field) -> None:
    user = make_user()
    r = client.post(ORGS, json=body, headers=auth(signed_in(user)))
    assert r.status_code == 400 and field in r.json["error"]["details"]
    assert count(db_session, Organization) == 0 and count(db_session, OrgSettings) == 0


def test_create_org_needs_a_session(client, db_session) -> None:
    assert client.post(ORGS, json={"name": "B", "slug": "bakery"}).status_code == 401


def test_list_my_orgs_sorted_by_name_with_my_role(client, db_session) -> None:
    user = make_user()
    make_org(user, name="Zebra")
    other = make_org(name="Apple")
    add_member(other, user, "admin")
    make_org(name="Not mine")
    r = client.get(ORGS, headers=auth(signed_in(user)))
    assert r.status_code == 200
    assert [(o["name"], o["my_role"]) for o in r.json["items"]] == [("Apple", "admin"), ("Zebra", "owner")]
    assert r.json["total"] == 2


def test_list_all_orgs_is_platform_owner_only(client, db_session) -> None:
    user = make_user()
    make_org(user, name="Mine")
    make_org(name="Theirs")
    r = client.get(f"{ORGS}?all=true", headers=auth(signed_in(user)))
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    owner = make_user(role="platform_owner")
    r = client.get(f"{ORGS}?all=true&per_page=1", headers=auth(signed_in(owner)))
    assert r.status_code == 200 and r.json["total"] == 2 and r.json["pages"] == 2
    assert r.json["items"][0]["my_role"] is None
    r = client.get(f"{ORGS}?all=false", headers=auth(signed_in(owner)))
    assert r.json["total"] == 0


@pytest.mark.parametrize("query", ["all=yes", "all=1", "all=true&all=false", "foo=1", "per_page=200"])
def test_list_orgs_bad_query(client, db_session, query) -> None:
    r = client.get(f"{ORGS}?{query}", headers=auth(signed_in(make_user())))
    assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR"


def test_get_org(client, db_session) -> None:
    user = make_user()
    org = make_org(user, name="Bakery", description="Bread")
    r = client.get(f"{ORGS}/{org.id}", headers=auth(signed_in(user)))
    assert r.status_code == 200
    assert r.json["id"] == str(org.id) and r.json["my_role"] == "owner" and r.json["description"] == "Bread"


def test_get_org_not_found_variants_are_identical(client, db_session) -> None:
    user = make_user()
    theirs = make_org()
    headers = auth(signed_in(user))
    responses = [
        client.get(f"{ORGS}/{theirs.id}", headers=headers),
        client.get(f"{ORGS}/{uuid.uuid4()}", headers=headers),
        client.get(f"{ORGS}/not-a-uuid", headers=headers),
        client.get(f"{ORGS}/{theirs.slug}", headers=headers),
    ]
    assert {r.status_code for r in responses} == {404}
    assert all(r.json == responses[0].json for r in responses)
    assert responses[0].json["error"]["code"] == "ORG_NOT_FOUND"


def test_platform_owner_sees_any_org_and_is_logged(client, db_session, caplog) -> None:
    org = make_org()
    owner = make_user(role="platform_owner")
    caplog.set_level(logging.INFO, logger="app.orgs.access")
    r = client.get(f"{ORGS}/{org.id}", headers=auth(signed_in(owner)))
    assert r.status_code == 200 and r.json["my_role"] is None
    events = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    access = [e for e in events if e.get("event") == "platform_owner.org_access"]
    assert len(access) == 1
    assert access[0]["organization_id"] == str(org.id) and access[0]["request_id"]
    assert access[0]["endpoint"] == "orgs.OrganizationItem"
    # a member platform_owner is not "acting on an org it is not a member of"
    caplog.clear()
    make_org(owner)
    client.get(ORGS, headers=auth(signed_in(owner)))
    assert not [
        r for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "platform_owner.org_access"
    ]


def test_update_org_with_audit(client, db_session, redis) -> None:
    user = make_user()
    org = make_org(user, name="Bakery", slug="bakery")
    client.get(f"{ORGS}/bakery/settings")  # warm the branding cache
    assert redis.exists(f"org_settings:{org.id}")
    r = client.patch(
        f"{ORGS}/{org.id}", json={"name": "Best Bakery", "slug": "best-bakery"}, headers=auth(signed_in(user))
    )
    assert r.status_code == 200
    assert r.json["name"] == "Best Bakery" and r.json["slug"] == "best-bakery" and r.json["my_role"] == "owner"
    assert not redis.exists(f"org_settings:{org.id}")
    event = db_session.scalar(select(AdminAuditEvent))
    assert event.action == "org.update" and event.actor_role == "owner" and event.actor_user_id == user.id
    assert event.target_type == "organization" and event.target_id == str(org.id)
    assert event.metadata_ == {
        "name": {"before": "Bakery", "after": "Best Bakery"},
        "slug": {"before": "bakery", "after": "best-bakery"},
    }
    assert client.get(f"{ORGS}/best-bakery/settings").json["organization_slug"] == "best-bakery"


def test_update_org_nothing_changed_writes_no_audit(client, db_session) -> None:
    user = make_user()
    org = make_org(user, name="Bakery")
    for body in ({}, {"name": "Bakery"}):
        r = client.patch(f"{ORGS}/{org.id}", json=body, headers=auth(signed_in(user)))
        assert r.status_code == 200 and r.json["name"] == "Bakery"
    assert count(db_session, AdminAuditEvent) == 0


def test_update_org_description_to_null_and_errors(client, db_session) -> None:
    user = make_user()
    org = make_org(user, description="Old")
    make_org(slug="taken")
    headers = auth(signed_in(user))
    assert client.patch(f"{ORGS}/{org.id}", json={"description": None}, headers=headers).json["description"] is None
    r = client.patch(f"{ORGS}/{org.id}", json={"slug": "taken"}, headers=headers)
    assert r.status_code == 409 and r.json["error"]["code"] == "SLUG_TAKEN"
    for body in ({"name": None}, {"slug": "api"}, {"name": ""}, {"created_by": str(user.id)}):
        r = client.patch(f"{ORGS}/{org.id}", json=body, headers=headers)
        assert r.status_code == 400, body
    r = client.patch(f"{ORGS}/not-a-uuid", json={"name": None}, headers=headers)
    assert r.status_code == 404  # path id before schema


def test_platform_owner_update_is_audited_as_platform_owner(client, db_session) -> None:
    org = make_org(name="Bakery")
    owner = make_user(role="platform_owner")
    r = client.patch(f"{ORGS}/{org.id}", json={"name": "Renamed"}, headers=auth(signed_in(owner)))
    assert r.status_code == 200 and r.json["my_role"] is None
    event = db_session.scalar(select(AdminAuditEvent))
    assert event.actor_role == "platform_owner" and event.actor_user_id == owner.id
