"""GET …/audit and GET …/emails: the org's own rows, newest first, filtered and paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from app import audit
from app.notifications.models import EmailOutbox
from tests import factories
from tests.dashboard.seed import World
from tests.identity.helpers import add_member, auth, make_user, signed_in


def url(world: World, path: str, org: str = "a") -> str:
    return f"/api/v1/orgs/{(world.org_a if org == 'a' else world.org_b).id}/{path}"


def test_audit_lists_the_changes_made_through_the_api(client, db_session, world, owner_a, sent_tasks) -> None:
    """Invitation, member, org, grant and refund actions all land in the log, with who and when."""
    newcomer = make_user(name="Nia", email="nia@example.com", email_verified_at=datetime.now(UTC))
    r = client.post(url(world, "invitations"), json={"email": "nia@example.com", "role": "creator"}, headers=owner_a)
    assert r.status_code == 201, r.json
    invitation_id = r.json["id"]
    (invitation_email,) = db_session.scalars(select(EmailOutbox).where(EmailOutbox.template == "org-invitation"))
    token = parse_qs(urlsplit(invitation_email.context["accept_url"]).query)["token"][0]
    r = client.post("/api/v1/invitations/accept", json={"token": token}, headers=auth(signed_in(newcomer)))
    assert r.status_code == 200, r.json
    r = client.patch(f"/api/v1/orgs/{world.org_a.id}", json={"description": "We sell lessons."}, headers=owner_a)
    assert r.status_code == 200, r.json
    r = client.post(
        url(world, f"customers/{world.u('Bob').id}/grants"),
        json={"content_id": str(world.content["C4"].id)},
        headers=owner_a,
    )
    assert r.status_code == 201, r.json
    grant_id = r.json["id"]
    r = client.delete(url(world, f"customers/{world.u('Bob').id}/grants/{world.content['C4'].id}"), headers=owner_a)
    assert r.status_code == 204
    r = client.post(url(world, f"purchases/{world.purchases['P1'].id}/refund"), json={}, headers=owner_a)
    assert r.status_code == 202, r.json

    body = client.get(url(world, "audit"), headers=owner_a).json
    actions = [e["action"] for e in body["items"]]
    assert sorted(actions) == sorted(
        ["invitation.create", "member.add", "org.update", "grant.create", "grant.revoke", "refund.request"]
    )
    assert body["total"] == 6
    event = next(e for e in body["items"] if e["action"] == "grant.revoke")
    assert set(event) == {
        "id", "organization_id", "actor_user_id", "actor_role", "action", "target_type", "target_id",
        "metadata", "request_id", "created_at",
    }  # fmt: skip
    assert event["target_id"] == grant_id and event["actor_role"] == "owner"
    assert event["actor_user_id"] == str(world.owner_a.id) and event["organization_id"] == str(world.org_a.id)
    member = next(e for e in body["items"] if e["action"] == "member.add")
    assert (member["target_type"], member["target_id"]) == ("membership", str(newcomer.id))
    assert member["actor_user_id"] == str(newcomer.id)  # the new member accepted
    assert member["metadata"] == {
        "user_id": str(newcomer.id),
        "role": "creator",
        "invited_by": str(world.owner_a.id),
        "invitation_id": invitation_id,
    }
    assert client.get(url(world, "audit", "b"), headers=auth(signed_in(world.owner_b))).json["items"] == []


def test_audit_filters_order_and_pages(client, db_session, world, owner_a) -> None:
    admin = add_member(world.org_a, role="admin")
    base = datetime(2025, 3, 1, tzinfo=UTC)
    for i, (actor, action) in enumerate(
        [
            (world.owner_a, "grant.create"),
            (admin, "grant.revoke"),
            (admin, "grant.create"),
            (None, "refund.auto_duplicate"),
        ]
    ):
        event = audit.record(
            db_session,
            organization_id=world.org_a.id,
            actor_user_id=actor.id if actor else None,
            actor_role="system" if actor is None else ("owner" if actor is world.owner_a else "admin"),
            action=action,
            target_type="grant",
            target_id=f"t{i}",
        )
        event.created_at = base + timedelta(minutes=i)
    audit.record(
        db_session,
        organization_id=world.org_b.id,
        actor_user_id=world.owner_b.id,
        actor_role="owner",
        action="grant.create",
        target_type="grant",
        target_id="b",
    )
    db_session.flush()
    items = client.get(url(world, "audit"), headers=owner_a).json["items"]
    assert [e["target_id"] for e in items] == ["t3", "t2", "t1", "t0"]  # created_at desc; org B's absent
    assert items[0]["actor_user_id"] is None and items[0]["actor_role"] == "system"
    assert items[0]["created_at"] == "2025-03-01T00:03:00.000Z"
    got = client.get(url(world, "audit?action=grant.create"), headers=owner_a).json["items"]
    assert [e["target_id"] for e in got] == ["t2", "t0"]
    got = client.get(url(world, f"audit?actor_user_id={admin.id}"), headers=owner_a).json["items"]
    assert [e["target_id"] for e in got] == ["t2", "t1"]
    got = client.get(url(world, f"audit?actor_user_id={admin.id}&action=grant.revoke"), headers=owner_a).json
    assert [e["target_id"] for e in got["items"]] == ["t1"]
    page = client.get(url(world, "audit?per_page=3&page=2"), headers=owner_a).json
    assert [e["target_id"] for e in page["items"]] == ["t0"] and page["total"] == 4 and page["pages"] == 2


def test_emails_list(client, db_session, world, owner_a) -> None:
    base = datetime(2025, 3, 1, tzinfo=UTC)
    rows = [
        factories.OutboxFactory(organization_id=world.org_a.id, template="welcome", created_at=base),
        factories.OutboxFactory(
            organization_id=world.org_a.id,
            template="new-sale",
            status="sent",
            attempts=1,
            subject="New sale",
            sent_at=base + timedelta(minutes=2),
            created_at=base + timedelta(minutes=1),
        ),
        factories.OutboxFactory(
            organization_id=world.org_a.id,
            template="welcome",
            status="failed",
            attempts=2,
            last_error="421 try later",
            created_at=base + timedelta(minutes=2),
        ),
    ]
    factories.OutboxFactory(organization_id=world.org_b.id, created_at=base)
    factories.OutboxFactory(organization_id=None, created_at=base)
    body = client.get(url(world, "emails"), headers=owner_a).json
    assert [e["id"] for e in body["items"]] == [str(rows[2].id), str(rows[1].id), str(rows[0].id)]
    sent = body["items"][1]
    assert sent == {
        "id": str(rows[1].id),
        "template": "new-sale",
        "recipient": rows[1].recipient,
        "user_id": None,
        "status": "sent",
        "attempts": 1,
        "last_error": None,
        "subject": "New sale",
        "created_at": "2025-03-01T00:01:00.000Z",
        "sent_at": "2025-03-01T00:02:00.000Z",
    }
    assert "context" not in sent  # links meant for the recipient stay out of the log
    got = client.get(url(world, "emails?template=welcome"), headers=owner_a).json["items"]
    assert [e["id"] for e in got] == [str(rows[2].id), str(rows[0].id)]
    got = client.get(url(world, "emails?status=failed&template=welcome"), headers=owner_a).json["items"]
    assert [(e["id"], e["last_error"]) for e in got] == [(str(rows[2].id), "421 try later")]
    page = client.get(url(world, "emails?per_page=2&page=2"), headers=owner_a).json
    assert page["total"] == 3 and [e["id"] for e in page["items"]] == [str(rows[0].id)]


def test_grant_email_shows_in_the_email_log(client, world, owner_a) -> None:
    r = client.post(
        url(world, f"customers/{world.u('Eve').id}/grants"),
        json={"content_id": str(world.content["C1"].id)},
        headers=owner_a,
    )
    assert r.status_code == 201
    items = client.get(url(world, "emails?template=access-granted"), headers=owner_a).json["items"]
    assert [(e["recipient"], e["user_id"], e["status"]) for e in items] == [
        ("eve@example.com", str(world.u("Eve").id), "queued")
    ]
