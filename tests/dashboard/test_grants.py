"""Complimentary grants: create (409 when access exists), reactivate, revoke; audit, email, cache."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.access.cache import access_cache_key
from app.access.models import ContentAccess
from app.audit import AdminAuditEvent
from app.commerce.models import Purchase
from app.identity import access_entries
from app.notifications.models import EmailOutbox
from tests import factories
from tests.dashboard.seed import World
from tests.identity.helpers import add_member, auth, signed_in

TOMBSTONE = access_entries.TOMBSTONE.encode()  # what a writer leaves in an access entry's place


def grants_url(world: World, user_id: object, content_id: object = None) -> str:
    base = f"/api/v1/orgs/{world.org_a.id}/customers/{user_id}/grants"
    return base if content_id is None else f"{base}/{content_id}"


def audit_rows(session, action: str) -> list[AdminAuditEvent]:
    return list(session.scalars(select(AdminAuditEvent).where(AdminAuditEvent.action == action)))


def outbox(session, template: str = "access-granted") -> list[EmailOutbox]:
    return list(session.scalars(select(EmailOutbox).where(EmailOutbox.template == template)))


def test_create_grant(client, db_session, world, owner_a, redis, sent_tasks) -> None:
    bob, delta = world.u("Bob"), world.content["C4"]
    redis.set(access_cache_key(bob.id, delta.id), "none")
    r = client.post(grants_url(world, bob.id), json={"content_id": str(delta.id)}, headers=owner_a)
    assert r.status_code == 201, r.json
    body = r.json
    assert body == {
        "id": body["id"],
        "user_id": str(bob.id),
        "content_id": str(delta.id),
        "organization_id": str(world.org_a.id),
        "source": "complimentary",
        "purchase_id": None,
        "granted_by": str(world.owner_a.id),
        "granted_at": body["granted_at"],
        "revoked_at": None,
        "revoke_reason": None,
    }
    db_session.expire_all()
    grant = db_session.get(ContentAccess, uuid.UUID(body["id"]))
    assert grant is not None and grant.revoked_at is None
    [event] = audit_rows(db_session, "grant.create")
    assert (event.organization_id, event.actor_user_id, event.actor_role) == (world.org_a.id, world.owner_a.id, "owner")
    assert (event.target_type, event.target_id) == ("grant", body["id"])
    assert event.metadata_ == {"user_id": str(bob.id), "content_id": str(delta.id), "source": "complimentary"}
    assert event.request_id == r.headers["X-Request-ID"]
    [email] = outbox(db_session)
    assert (email.recipient, email.user_id, email.organization_id) == ("bob@example.com", bob.id, world.org_a.id)
    assert email.context["content_title"] == "Delta" and email.context["granted_by_name"] == "Olga Owner"
    assert email.context["content_url"].endswith(f"/{world.org_a.slug}/content/delta")
    assert email.dedupe_key == f"access-granted:{grant.id}:{int(grant.granted_at.timestamp())}"
    assert ("email.send", (str(email.id),), None) in sent_tasks
    assert redis.get(access_cache_key(bob.id, delta.id)) == TOMBSTONE  # buried after the commit


def test_grant_to_any_user_of_unpublished_content(client, db_session, world, owner_a) -> None:
    """Any existing user, any content status (draft here): the user becomes a customer."""
    newcomer = factories.UserFactory(name="Nia")
    draft = factories.PaidContentFactory(
        organization_id=world.org_a.id, created_by=world.owner_a.id, status="draft", published_at=None
    )
    r = client.post(grants_url(world, newcomer.id), json={"content_id": str(draft.id)}, headers=owner_a)
    assert r.status_code == 201, r.json
    summary = client.get(f"/api/v1/orgs/{world.org_a.id}/dashboard/summary", headers=owner_a).json
    assert summary["customer_count"] == 6


def test_active_grant_is_409_and_writes_nothing(client, db_session, world, owner_a, sent_tasks) -> None:
    r = client.post(
        grants_url(world, world.u("Ana").id), json={"content_id": str(world.content["C1"].id)}, headers=owner_a
    )
    assert r.status_code == 409 and r.json["error"]["code"] == "ALREADY_HAS_ACCESS"
    db_session.expire_all()
    assert audit_rows(db_session, "grant.create") == [] and outbox(db_session) == [] and sent_tasks == []
    grant = world.grants["ana-C1"]
    db_session.refresh(grant)
    assert grant.source == "purchase" and grant.purchase_id == world.purchases["P1"].id


@pytest.mark.parametrize("role", ["creator", "admin", "owner", "platform_owner"])
def test_staff_target_is_409(client, world, owner_a, role) -> None:
    if role == "owner":
        target = world.owner_a
    elif role == "platform_owner":
        target = factories.UserFactory(role="platform_owner")
    else:
        target = add_member(world.org_a, role=role)
    r = client.post(grants_url(world, target.id), json={"content_id": str(world.content["C4"].id)}, headers=owner_a)
    assert r.status_code == 409 and r.json["error"]["code"] == "ALREADY_HAS_ACCESS"


def test_revoked_grant_is_reactivated(client, db_session, world, owner_a) -> None:
    """Bob's grant of Alpha was revoked by his refund: the same row becomes complimentary again."""
    old = world.grants["bob-C1"]
    r = client.post(
        grants_url(world, world.u("Bob").id), json={"content_id": str(world.content["C1"].id)}, headers=owner_a
    )
    assert r.status_code == 201, r.json
    assert r.json["id"] == str(old.id)
    assert r.json["source"] == "complimentary" and r.json["purchase_id"] is None and r.json["revoked_at"] is None
    assert r.json["granted_by"] == str(world.owner_a.id)
    db_session.expire_all()
    assert db_session.get(Purchase, world.purchases["P2"].id).status == "refunded"  # purchase untouched


@pytest.mark.parametrize(
    ("user", "content", "code"),
    [
        ("unknown", "C4", "USER_NOT_FOUND"),
        ("malformed", "C4", "USER_NOT_FOUND"),
        ("Bob", "D1", "CONTENT_NOT_FOUND"),  # org B's content
        ("Bob", "unknown", "CONTENT_NOT_FOUND"),
        ("Bob", "deleted", "CONTENT_NOT_FOUND"),
    ],
)
def test_create_lookups_are_404(client, world, owner_a, user, content, code) -> None:
    user_id = {"unknown": uuid.uuid4(), "malformed": "nope"}.get(user) or world.u(user).id
    if content == "deleted":
        content_id = factories.PaidContentFactory(
            organization_id=world.org_a.id, created_by=world.owner_a.id, deleted_at=datetime.now(UTC)
        ).id
    else:
        content_id = uuid.uuid4() if content == "unknown" else world.content[content].id
    r = client.post(grants_url(world, user_id), json={"content_id": str(content_id)}, headers=owner_a)
    assert r.status_code == 404 and r.json["error"]["code"] == code


@pytest.mark.parametrize(
    "body",
    [{}, {"content_id": "nope"}, {"content_id": None}, {"content_id": "5a9e0000-0000-4000-8000-000000000002", "x": 1}],
)
def test_create_body_is_validated(client, world, owner_a, body) -> None:
    r = client.post(grants_url(world, world.u("Bob").id), json=body, headers=owner_a)
    assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("who", "status"), [("creator", 403), ("admin", 201), ("platform_owner", 201), ("stranger", 404)]
)
def test_create_roles(client, db_session, world, who, status) -> None:
    if who == "platform_owner":
        user = factories.UserFactory(role="platform_owner")
    elif who == "stranger":
        user = world.owner_b
    else:
        user = add_member(world.org_a, role=who)
    r = client.post(
        grants_url(world, world.u("Bob").id),
        json={"content_id": str(world.content["C4"].id)},
        headers=auth(signed_in(user)),
    )
    assert r.status_code == status, r.json
    if status == 201:
        [event] = audit_rows(db_session, "grant.create")
        assert event.actor_role == who and event.actor_user_id == user.id
    else:
        assert audit_rows(db_session, "grant.create") == []


def test_revoke_grant(client, db_session, world, owner_a, redis) -> None:
    ana, alpha = world.u("Ana"), world.content["C1"]
    redis.set(access_cache_key(ana.id, alpha.id), "purchased")
    r = client.delete(grants_url(world, ana.id, alpha.id), headers=owner_a)
    assert r.status_code == 204 and r.data == b""
    db_session.expire_all()
    grant = db_session.get(ContentAccess, world.grants["ana-C1"].id)
    assert grant.revoked_at is not None and grant.revoke_reason == "admin" and grant.revoked_by == world.owner_a.id
    assert grant.source == "purchase" and grant.purchase_id == world.purchases["P1"].id
    assert db_session.get(Purchase, world.purchases["P1"].id).status == "completed"  # purchase rows untouched
    [event] = audit_rows(db_session, "grant.revoke")
    assert (event.target_type, event.target_id, event.actor_role) == ("grant", str(grant.id), "owner")
    assert event.metadata_["purchase_id"] == str(world.purchases["P1"].id)
    assert redis.get(access_cache_key(ana.id, alpha.id)) == TOMBSTONE
    again = client.delete(grants_url(world, ana.id, alpha.id), headers=owner_a)
    assert again.status_code == 404 and again.json["error"]["code"] == "GRANT_NOT_FOUND"
    # Granting after the revoke reactivates the row as complimentary.
    r = client.post(grants_url(world, ana.id), json={"content_id": str(alpha.id)}, headers=owner_a)
    assert r.status_code == 201 and r.json["id"] == str(grant.id)


@pytest.mark.parametrize(
    ("user", "content"),
    [
        ("Bob", "C1"),  # revoked already (refund)
        ("Dee", "C2"),  # never granted (only an open checkout session)
        ("Fay", "D1"),  # org B's grant
        ("Ana", "malformed"),
        ("malformed", "C1"),
    ],
)
def test_revoke_missing_is_404(client, world, owner_a, user, content) -> None:
    user_id = "nope" if user == "malformed" else world.u(user).id
    content_id = "nope" if content == "malformed" else world.content[content].id
    r = client.delete(grants_url(world, user_id, content_id), headers=owner_a)
    assert r.status_code == 404 and r.json["error"]["code"] == "GRANT_NOT_FOUND"


def test_revoke_by_creator_is_403(client, db_session, world) -> None:
    creator = auth(signed_in(add_member(world.org_a, role="creator")))
    r = client.delete(grants_url(world, world.u("Ana").id, world.content["C1"].id), headers=creator)
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    db_session.expire_all()
    assert db_session.get(ContentAccess, world.grants["ana-C1"].id).revoked_at is None


def test_revoke_by_platform_owner_is_audited_as_such(client, db_session, world) -> None:
    boss = factories.UserFactory(role="platform_owner")
    r = client.delete(grants_url(world, world.u("Dee").id, world.content["C1"].id), headers=auth(signed_in(boss)))
    assert r.status_code == 204
    [event] = audit_rows(db_session, "grant.revoke")
    assert event.actor_role == "platform_owner" and event.actor_user_id == boss.id
