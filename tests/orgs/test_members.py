"""Members: list, change role, transfer ownership, remove (api.md §4); joining is in test_invitations."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.audit import AdminAuditEvent
from app.orgs.models import Membership
from tests.identity.helpers import add_member, auth, count, make_org, make_user, membership_role, signed_in


def members_url(org) -> str:
    return f"/api/v1/orgs/{org.id}/members"


def member_url(org, user) -> str:
    return f"/api/v1/orgs/{org.id}/members/{getattr(user, 'id', user)}"


def audit_events(db_session) -> list[AdminAuditEvent]:
    db_session.expire_all()
    return list(db_session.scalars(select(AdminAuditEvent).order_by(AdminAuditEvent.created_at)))


@pytest.fixture()
def team(db_session):
    owner = make_user(name="Olga", email="olga@example.com")
    org = make_org(owner)
    admin = add_member(org, make_user(name="Adam"), "admin")
    creator = add_member(org, make_user(name="Cleo", email="cleo@example.com"), "creator")
    creator2 = add_member(org, make_user(name="Bea"), "creator")
    return org, owner, admin, creator, creator2


def test_list_members_order_and_filter(client, db_session, team) -> None:
    org, _owner, _admin, creator, _creator2 = team
    r = client.get(members_url(org), headers=auth(signed_in(creator)))
    assert r.status_code == 200
    assert [(m["name"], m["role"]) for m in r.json["items"]] == [
        ("Olga", "owner"),
        ("Adam", "admin"),
        ("Bea", "creator"),
        ("Cleo", "creator"),
    ]
    assert set(r.json["items"][0]) == {"user_id", "email", "name", "role", "joined_at"}
    r = client.get(f"{members_url(org)}?role=creator&per_page=1", headers=auth(signed_in(creator)))
    assert r.json["total"] == 2 and [m["name"] for m in r.json["items"]] == ["Bea"]
    assert client.get(f"{members_url(org)}?role=boss", headers=auth(signed_in(creator))).status_code == 400


def test_there_is_no_way_to_add_an_existing_account_directly(client, db_session, team) -> None:
    # Staff join only by invitation (api.md §4): the old route answers 405 and changes nothing.
    org, owner, *_ = team
    make_user(name="Nina", email="nina@example.com")
    r = client.post(
        members_url(org), json={"email": "nina@example.com", "role": "creator"}, headers=auth(signed_in(owner))
    )
    assert r.status_code == 405 and r.json["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" not in r.headers["Allow"] and "GET" in r.headers["Allow"]
    assert count(db_session, Membership) == 4
    assert count(db_session, AdminAuditEvent) == 0


def test_change_role_admin_creator(client, db_session, team) -> None:
    org, _owner, admin, creator, _creator2 = team
    r = client.patch(member_url(org, creator), json={"role": "admin"}, headers=auth(signed_in(admin)))
    assert r.status_code == 200 and r.json["role"] == "admin"
    (event,) = audit_events(db_session)
    assert event.action == "member.role_change"
    assert event.metadata_ == {"user_id": str(creator.id), "role": {"before": "creator", "after": "admin"}}
    # unchanged role: 200, no audit
    r = client.patch(member_url(org, creator), json={"role": "admin"}, headers=auth(signed_in(admin)))
    assert r.status_code == 200 and len(audit_events(db_session)) == 1


def test_change_role_rules(client, db_session, team) -> None:
    org, owner, admin, creator, creator2 = team
    # creators cannot change roles
    r = client.patch(member_url(org, creator2), json={"role": "admin"}, headers=auth(signed_in(creator)))
    assert r.status_code == 403
    # admins cannot transfer ownership
    r = client.patch(member_url(org, creator), json={"role": "owner"}, headers=auth(signed_in(admin)))
    assert r.status_code == 403
    # nobody changes the owner's role (transfer instead)
    for actor in (owner, admin):
        r = client.patch(member_url(org, owner), json={"role": "admin"}, headers=auth(signed_in(actor)))
        assert r.status_code == 422 and r.json["error"]["code"] == "OWNER_REQUIRED"
    # unknown / non-member / malformed
    outsider = make_user()
    for target in (outsider.id, uuid.uuid4(), "nope"):
        r = client.patch(member_url(org, target), json={"role": "admin"}, headers=auth(signed_in(owner)))
        assert r.status_code == 404 and r.json["error"]["code"] == "MEMBER_NOT_FOUND"
    assert (
        client.patch(member_url(org, creator), json={"role": "boss"}, headers=auth(signed_in(owner))).status_code == 400
    )
    assert membership_role(db_session, org, owner) == "owner"
    assert count(db_session, AdminAuditEvent) == 0


def test_transfer_ownership(client, db_session, team) -> None:
    org, owner, admin, creator, _ = team
    r = client.patch(member_url(org, creator), json={"role": "owner"}, headers=auth(signed_in(owner)))
    assert r.status_code == 200 and r.json["role"] == "owner"
    assert membership_role(db_session, org, owner) == "admin"
    assert membership_role(db_session, org, creator) == "owner"
    owners = db_session.scalars(
        select(Membership).where(Membership.organization_id == org.id, Membership.role == "owner")
    ).all()
    assert len(owners) == 1
    (event,) = audit_events(db_session)
    assert event.action == "ownership.transfer" and event.actor_role == "owner"
    assert event.metadata_["previous_owner_id"] == str(owner.id)
    assert event.metadata_["role"] == {"before": "creator", "after": "owner"}
    # the old owner (now admin) can no longer transfer
    r = client.patch(member_url(org, admin), json={"role": "owner"}, headers=auth(signed_in(owner)))
    assert r.status_code == 403


def test_platform_owner_transfers_ownership(client, db_session, team) -> None:
    org, owner, admin, *_ = team
    root = make_user(role="platform_owner")
    r = client.patch(member_url(org, admin), json={"role": "owner"}, headers=auth(signed_in(root)))
    assert r.status_code == 200
    assert membership_role(db_session, org, owner) == "admin"
    (event,) = audit_events(db_session)
    assert event.actor_role == "platform_owner"


def test_remove_member(client, db_session, team) -> None:
    org, _owner, admin, creator, _creator2 = team
    r = client.delete(member_url(org, creator), headers=auth(signed_in(admin)))
    assert r.status_code == 204 and r.data == b""
    assert membership_role(db_session, org, creator) is None
    (event,) = audit_events(db_session)
    assert event.action == "member.remove" and event.metadata_ == {"user_id": str(creator.id), "role": "creator"}
    # the removed member loses access at once
    assert client.get(f"/api/v1/orgs/{org.id}", headers=auth(signed_in(creator))).status_code == 404


def test_any_member_may_remove_itself_but_not_others(client, db_session, team) -> None:
    org, _owner, _admin, creator, creator2 = team
    r = client.delete(member_url(org, creator2), headers=auth(signed_in(creator)))
    assert r.status_code == 403
    r = client.delete(member_url(org, creator), headers=auth(signed_in(creator)))
    assert r.status_code == 204
    (event,) = audit_events(db_session)
    assert event.actor_role == "creator" and event.actor_user_id == creator.id


def test_remove_owner_is_422_and_missing_is_404(client, db_session, team) -> None:
    org, owner, admin, *_ = team
    for actor in (owner, admin):
        r = client.delete(member_url(org, owner), headers=auth(signed_in(actor)))
        assert r.status_code == 422 and r.json["error"]["code"] == "OWNER_REQUIRED"
    for target in (make_user().id, "nope"):
        r = client.delete(member_url(org, target), headers=auth(signed_in(owner)))
        assert r.status_code == 404 and r.json["error"]["code"] == "MEMBER_NOT_FOUND"
    assert client.delete(member_url(org, admin), json={"x": 1}, headers=auth(signed_in(owner))).status_code == 400
    assert count(db_session, AdminAuditEvent) == 0


def test_other_org_members_are_invisible(client, db_session, team) -> None:
    org, owner, *_ = team
    other_org = make_org()
    stranger = add_member(other_org, role="admin")
    headers = auth(signed_in(owner))
    r = client.patch(member_url(org, stranger), json={"role": "creator"}, headers=headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "MEMBER_NOT_FOUND"
    r = client.get(members_url(other_org), headers=headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"
