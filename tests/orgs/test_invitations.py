"""Staff join by invitation only (api.md §4, security.md §1 "staff membership", §3).

The hole this closes: ``POST /orgs/{id}/members`` added any existing account by email, so
someone who registered a victim's address first (unverified) became staff when the victim was
added, and the endpoint told anyone whether an address had an account.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from app.audit import AdminAuditEvent
from app.identity.sessions import hash_token
from app.logging import mask_path
from app.notifications.models import EmailOutbox
from app.orgs.models import Invitation, Membership
from app.schemas import format_timestamp
from tasks.email import send_outbox_email
from tests.identity.helpers import add_member, auth, count, make_org, make_user, membership_role, signed_in
from tests.orgs.helpers import make_invitation

INVITATION_FIELDS = {
    "id",
    "organization_id",
    "email",
    "role",
    "status",
    "invited_by",
    "expires_at",
    "accepted_at",
    "created_at",
}
VERIFIED = {"email_verified_at": datetime(2025, 1, 1, tzinfo=UTC)}


def invitations_url(org: Any) -> str:
    return f"/api/v1/orgs/{org.id}/invitations"


def invite(client: Any, org: Any, caller: Any, email: str, role: str = "creator") -> Any:
    return client.post(invitations_url(org), json={"email": email, "role": role}, headers=auth(signed_in(caller)))


def accept(client: Any, user: Any, token: str) -> Any:
    return client.post("/api/v1/invitations/accept", json={"token": token}, headers=auth(signed_in(user)))


def outbox(db_session: Any) -> list[EmailOutbox]:
    db_session.expire_all()
    return list(
        db_session.scalars(
            select(EmailOutbox).where(EmailOutbox.template == "org-invitation").order_by(EmailOutbox.created_at)
        )
    )


def token_of(email: EmailOutbox) -> str:
    return parse_qs(urlsplit(email.context["accept_url"]).query)["token"][0]


def invitation_row(db_session: Any, invitation_id: Any) -> Invitation:
    db_session.expire_all()
    row = db_session.get(Invitation, uuid.UUID(str(invitation_id)))
    assert row is not None
    return row


def actions(db_session: Any) -> list[str]:
    db_session.expire_all()
    return list(db_session.scalars(select(AdminAuditEvent.action).order_by(AdminAuditEvent.created_at)))


def expire(db_session: Any, invitation_id: Any) -> None:
    db_session.execute(
        update(Invitation)
        .where(Invitation.id == uuid.UUID(str(invitation_id)))
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db_session.flush()


@pytest.fixture()
def team(db_session):
    owner = make_user(name="Olga Owner", email="olga@example.com", **VERIFIED)
    org = make_org(owner, name="Olga's Kitchen", slug="olgas-kitchen")
    admin = add_member(org, make_user(name="Adam", **VERIFIED), "admin")
    creator = add_member(org, make_user(name="Cris", **VERIFIED), "creator")
    return org, owner, admin, creator


# ---- the hole -----------------------------------------------------------------------------------


def test_an_attacker_who_pre_registered_the_address_cannot_join(client, db_session, team) -> None:
    org, owner, *_ = team
    # The attacker registers the victim's address first; it stays unverified (no mailbox access).
    r = client.post(
        "/api/v1/auth/register", json={"email": "cleo@example.com", "password": "Att4cker-pass", "name": "Mallory"}
    )
    assert r.status_code == 201
    login = client.post("/api/v1/auth/login", json={"email": "cleo@example.com", "password": "Att4cker-pass"})
    attacker_token = login.json["token"]
    attacker_id = uuid.UUID(login.json["user"]["id"])

    # The old way in is gone...
    r = client.post(
        f"/api/v1/orgs/{org.id}/members",
        json={"email": "cleo@example.com", "role": "admin"},
        headers=auth(signed_in(owner)),
    )
    assert r.status_code == 405
    # ...and the invitation to the victim's address does not let the attacker in, even with the link.
    assert invite(client, org, owner, "cleo@example.com", "admin").status_code == 201
    (email,) = outbox(db_session)
    r = client.post("/api/v1/invitations/accept", json={"token": token_of(email)}, headers=auth(attacker_token))
    assert r.status_code == 403 and r.json["error"]["code"] == "EMAIL_NOT_VERIFIED"
    db_session.expire_all()
    assert db_session.scalar(select(Membership).where(Membership.user_id == attacker_id)) is None
    assert invitation_row(db_session, email.dedupe_key.split(":")[1]).status == "pending"
    assert "member.add" not in actions(db_session)


def test_a_verified_account_with_another_address_cannot_accept(client, db_session, team) -> None:
    org, owner, *_ = team
    other = make_user(email="someone@example.com", **VERIFIED)
    invitation, token = make_invitation(org, owner, email="cleo@example.com")
    r = accept(client, other, token)
    assert r.status_code == 403 and r.json["error"]["code"] == "INVITATION_EMAIL_MISMATCH"
    assert membership_role(db_session, org, other) is None
    assert invitation_row(db_session, invitation.id).status == "pending"


def test_the_answer_is_the_same_whether_or_not_an_account_exists(client, db_session, team) -> None:
    org, owner, *_ = team
    make_user(email="verified@example.com", **VERIFIED)
    make_user(email="unverified@example.com")
    answers = [invite(client, org, owner, email) for email in ("verified@example.com", "unverified@example.com")]
    answers.append(invite(client, org, owner, "nobody@example.com"))
    for r in answers:
        assert r.status_code == 201
        assert set(r.json) == INVITATION_FIELDS
        assert (r.json["status"], r.json["role"], r.json["accepted_at"]) == ("pending", "creator", None)
    # Nothing about the account leaks through the org's email log either.
    assert [email.user_id for email in outbox(db_session)] == [None, None, None]
    log = client.get(f"/api/v1/orgs/{org.id}/emails?template=org-invitation", headers=auth(signed_in(owner)))
    assert [item["user_id"] for item in log.json["items"]] == [None, None, None]


# ---- invite ---------------------------------------------------------------------------------------


def test_invite_stores_only_the_token_hash_queues_the_email_and_audits(
    client, db_session, team, recorded_tasks
) -> None:
    org, owner, *_ = team
    r = invite(client, org, owner, "Cleo@Example.com")
    assert r.status_code == 201
    body = r.json
    assert (body["organization_id"], body["email"], body["invited_by"]) == (
        str(org.id),
        "cleo@example.com",
        str(owner.id),
    )
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["expires_at"]) - created == timedelta(days=7)

    (email,) = outbox(db_session)
    token = token_of(email)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 random bytes, URL-safe
    row = invitation_row(db_session, body["id"])
    assert row.token_hash == hash_token(token) and token not in row.token_hash
    assert (email.recipient, email.organization_id, email.dedupe_key) == (
        "cleo@example.com",
        org.id,
        f"org-invitation:{row.id}",
    )
    assert email.context["accept_url"] == f"http://localhost:3000/invitations/accept?token={token}"
    assert email.context["organization_name"] == "Olga's Kitchen"
    assert (email.context["role"], email.context["invited_by_name"]) == ("creator", "Olga Owner")
    assert datetime.fromisoformat(email.context["expires_at"]) == row.expires_at
    assert ("email.send", (str(email.id),), None) in recorded_tasks

    (event,) = db_session.scalars(select(AdminAuditEvent)).all()
    assert (event.action, event.actor_user_id, event.actor_role, event.target_type, event.target_id) == (
        "invitation.create",
        owner.id,
        "owner",
        "invitation",
        str(row.id),
    )
    assert event.metadata_ == {"email": "cleo@example.com", "role": "creator", "replaced_invitation_id": None}


def test_the_invitation_email_is_sent_with_the_accept_link(app, client, db_session, team) -> None:
    org, owner, *_ = team
    assert invite(client, org, owner, "cleo@example.com", "admin").status_code == 201
    (email,) = outbox(db_session)
    accept_url = email.context["accept_url"]
    app.extensions.setdefault("mail_memory", []).clear()
    with app.app_context():
        assert send_outbox_email(db_session, email.id) == "sent"
    (message,) = app.extensions["mail_memory"]
    assert message["To"] == "cleo@example.com" and message["X-Codex-Template"] == "org-invitation"
    assert "Olga Owner invited you to join Olga's Kitchen as admin" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert accept_url in text and accept_url.replace("&", "&amp;") in html
    # Once sent, the outbox keeps no usable link (the token is stored only as its hash).
    sent = outbox(db_session)[0]
    assert sent.status == "sent" and "accept_url" not in sent.context


def test_invite_rejects_bad_input_and_writes_nothing(client, db_session, team) -> None:
    org, owner, *_ = team
    headers = auth(signed_in(owner))
    for body in (
        {"email": "x@example.com", "role": "owner"},
        {"email": "x@example.com"},
        {"email": "bad", "role": "admin"},
        {"email": "x@example.com", "role": "admin", "user_id": str(owner.id)},
    ):
        r = client.post(invitations_url(org), json=body, headers=headers)
        assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", body
    assert (count(db_session, Invitation), count(db_session, EmailOutbox), count(db_session, AdminAuditEvent)) == (
        0,
        0,
        0,
    )


def test_inviting_a_member_is_409_already_member(client, db_session, team) -> None:
    org, _owner, admin, creator = team
    for email in ("OLGA@example.com", admin.email, creator.email):
        r = invite(client, org, admin, email)
        assert r.status_code == 409 and r.json["error"]["code"] == "ALREADY_MEMBER"
    assert (count(db_session, Invitation), count(db_session, EmailOutbox), count(db_session, AdminAuditEvent)) == (
        0,
        0,
        0,
    )


def test_a_new_invitation_replaces_the_pending_one(client, db_session, team) -> None:
    org, owner, admin, _ = team
    cleo = make_user(email="cleo@example.com", **VERIFIED)
    first = invite(client, org, owner, "cleo@example.com", "admin").json
    second = invite(client, org, admin, "cleo@example.com", "creator").json
    old_email, new_email = outbox(db_session)
    old, new = token_of(old_email), token_of(new_email)
    assert invitation_row(db_session, first["id"]).status == "revoked"
    assert invitation_row(db_session, first["id"]).revoked_at is not None
    assert invitation_row(db_session, second["id"]).status == "pending"
    # The first link is dead everywhere; the second one works.
    assert client.get(f"/api/v1/invitations/{old}").status_code == 404
    r = accept(client, cleo, old)
    assert r.status_code == 404 and r.json["error"]["code"] == "INVITATION_NOT_FOUND"
    assert accept(client, cleo, new).json["role"] == "creator"
    assert membership_role(db_session, org, cleo) == "creator"
    event = db_session.scalars(select(AdminAuditEvent).where(AdminAuditEvent.target_id == second["id"])).one()
    assert event.metadata_["replaced_invitation_id"] == first["id"]


def test_the_31st_invitation_in_an_hour_is_rate_limited(limited_client, db_session, team) -> None:
    org, owner, admin, _ = team
    headers = auth(signed_in(owner))
    for n in range(30):
        body = {"email": f"person{n}@example.com", "role": "creator"}
        assert limited_client.post(invitations_url(org), json=body, headers=headers).status_code == 201
    r = limited_client.post(
        invitations_url(org), json={"email": "one-more@example.com", "role": "creator"}, headers=headers
    )
    assert r.status_code == 429 and r.json["error"]["code"] == "RATE_LIMITED"
    assert int(r.headers["Retry-After"]) > 3000
    assert count(db_session, Invitation) == 30
    # Per user: another manager of the same org still has its own budget.
    body = {"email": "one-more@example.com", "role": "creator"}
    assert limited_client.post(invitations_url(org), json=body, headers=auth(signed_in(admin))).status_code == 201


# ---- lookup and accept ------------------------------------------------------------------------------


def test_the_public_lookup_shows_the_org_role_and_a_hint_of_the_address(client, db_session, team) -> None:
    org, owner, *_ = team
    invitation, token = make_invitation(org, owner, email="cleo@example.com", role="admin")
    r = client.get(f"/api/v1/invitations/{token}")
    assert r.status_code == 200
    assert r.json == {
        "organization_name": "Olga's Kitchen",
        "organization_slug": "olgas-kitchen",
        "role": "admin",
        "email_hint": "c***@example.com",
        "expires_at": format_timestamp(invitation.expires_at),
    }
    for unknown in ("nope", "x" * 300, token[:-1]):
        r = client.get(f"/api/v1/invitations/{unknown}")
        assert r.status_code == 404 and r.json["error"]["code"] == "INVITATION_NOT_FOUND"


def test_the_token_never_reaches_the_request_log() -> None:
    assert mask_path("/api/v1/invitations/Qm9vX-abc") == "/api/v1/invitations/[token]"
    assert mask_path("/api/v1/invitations/accept") == "/api/v1/invitations/accept"


def test_accepting_makes_a_member_once(client, db_session, team) -> None:
    org, owner, *_ = team
    cleo = make_user(name="Cleo", email="cleo@example.com", **VERIFIED)
    invitation, token = make_invitation(org, owner, email="Cleo@example.com".lower(), role="admin")
    r = accept(client, cleo, token)
    assert r.status_code == 200
    assert set(r.json) == {"user_id", "organization_id", "email", "name", "role", "joined_at"}
    assert (r.json["user_id"], r.json["organization_id"], r.json["role"], r.json["name"]) == (
        str(cleo.id),
        str(org.id),
        "admin",
        "Cleo",
    )
    assert membership_role(db_session, org, cleo) == "admin"
    row = invitation_row(db_session, invitation.id)
    assert (row.status, row.accepted_by) == ("accepted", cleo.id) and row.accepted_at is not None
    (event,) = db_session.scalars(select(AdminAuditEvent)).all()
    assert (event.action, event.actor_user_id, event.actor_role, event.target_id) == (
        "member.add",
        cleo.id,
        "admin",
        str(cleo.id),
    )
    assert event.metadata_ == {
        "user_id": str(cleo.id),
        "role": "admin",
        "invited_by": str(owner.id),
        "invitation_id": str(invitation.id),
    }
    # Single use: the link is spent.
    assert accept(client, cleo, token).json["error"]["code"] == "INVITATION_NOT_FOUND"
    assert client.get(f"/api/v1/invitations/{token}").status_code == 404
    r = client.get(invitations_url(org) + "?status=accepted", headers=auth(signed_in(owner)))
    assert [(i["id"], i["status"], i["accepted_at"] is not None) for i in r.json["items"]] == [
        (str(invitation.id), "accepted", True)
    ]


def test_the_email_match_ignores_case(client, db_session, team) -> None:
    org, owner, *_ = team
    cleo = make_user(email="cleo@example.com", **VERIFIED)
    assert invite(client, org, owner, "CLEO@EXAMPLE.COM").status_code == 201
    (email,) = outbox(db_session)
    assert accept(client, cleo, token_of(email)).status_code == 200


def test_accept_errors(client, db_session, team) -> None:
    org, owner, admin, _ = team
    _invitation, token = make_invitation(org, owner, email=admin.email)
    r = accept(client, admin, token)  # became a member some other way meanwhile
    assert r.status_code == 409 and r.json["error"]["code"] == "ALREADY_MEMBER"
    r = client.post("/api/v1/invitations/accept", json={"token": token})
    assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHENTICATED"
    r = accept(client, admin, "not-a-token")
    assert r.status_code == 404 and r.json["error"]["code"] == "INVITATION_NOT_FOUND"
    for body in ({}, {"token": ""}, {"token": token, "role": "owner"}):
        r = client.post("/api/v1/invitations/accept", json=body, headers=auth(signed_in(admin)))
        assert r.status_code == 400, body
    assert count(db_session, AdminAuditEvent) == 0


def test_an_expired_invitation_cannot_be_used(client, db_session, team) -> None:
    org, owner, *_ = team
    cleo = make_user(email="cleo@example.com", **VERIFIED)
    invitation, token = make_invitation(org, owner, email="cleo@example.com")
    expire(db_session, invitation.id)
    assert client.get(f"/api/v1/invitations/{token}").status_code == 404
    r = accept(client, cleo, token)
    assert r.status_code == 404 and r.json["error"]["code"] == "INVITATION_NOT_FOUND"
    assert membership_role(db_session, org, cleo) is None
    headers = auth(signed_in(owner))
    listed = client.get(invitations_url(org) + "?status=expired", headers=headers).json["items"]
    assert [(i["id"], i["status"]) for i in listed] == [(str(invitation.id), "expired")]
    assert client.get(invitations_url(org) + "?status=pending", headers=headers).json["items"] == []
    r = client.delete(f"{invitations_url(org)}/{invitation.id}", headers=headers)
    assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT"
    # A new invitation to the address replaces the expired one.
    assert invite(client, org, owner, "cleo@example.com").status_code == 201
    assert invitation_row(db_session, invitation.id).status == "revoked"


# ---- list and revoke --------------------------------------------------------------------------------


def test_list_newest_first_with_paging_and_status_filter(client, db_session, team) -> None:
    org, owner, *_ = team
    headers = auth(signed_in(owner))
    ids = [invite(client, org, owner, f"p{n}@example.com").json["id"] for n in range(3)]
    client.delete(f"{invitations_url(org)}/{ids[0]}", headers=headers)
    r = client.get(invitations_url(org) + "?per_page=2", headers=headers)
    assert r.status_code == 200
    assert (r.json["total"], r.json["pages"], r.json["page"], r.json["per_page"]) == (3, 2, 1, 2)
    assert [i["id"] for i in r.json["items"]] == [ids[2], ids[1]]
    assert set(r.json["items"][0]) == INVITATION_FIELDS
    r = client.get(invitations_url(org) + "?page=2&per_page=2", headers=headers)
    assert [(i["id"], i["status"]) for i in r.json["items"]] == [(ids[0], "revoked")]
    r = client.get(invitations_url(org) + "?status=pending", headers=headers)
    assert [i["id"] for i in r.json["items"]] == [ids[2], ids[1]]
    for bad in ("?status=gone", "?per_page=0", "?email=x"):
        assert client.get(invitations_url(org) + bad, headers=headers).status_code == 400


def test_revoke(client, db_session, team) -> None:
    org, owner, admin, _ = team
    cleo = make_user(email="cleo@example.com", **VERIFIED)
    invitation, token = make_invitation(org, owner, email="cleo@example.com")
    url = f"{invitations_url(org)}/{invitation.id}"
    r = client.delete(url, headers=auth(signed_in(admin)))
    assert r.status_code == 204 and r.data == b""
    row = invitation_row(db_session, invitation.id)
    assert row.status == "revoked" and row.revoked_at is not None
    (event,) = db_session.scalars(select(AdminAuditEvent)).all()
    assert (event.action, event.actor_user_id, event.target_type, event.target_id) == (
        "invitation.revoke",
        admin.id,
        "invitation",
        str(invitation.id),
    )
    assert event.metadata_ == {"email": "cleo@example.com", "role": "creator"}
    assert client.get(f"/api/v1/invitations/{token}").status_code == 404
    assert accept(client, cleo, token).json["error"]["code"] == "INVITATION_NOT_FOUND"
    r = client.delete(url, headers=auth(signed_in(admin)))
    assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT"
    accepted, _ = make_invitation(org, owner, email="done@example.com", status="accepted")
    r = client.delete(f"{invitations_url(org)}/{accepted.id}", headers=auth(signed_in(admin)))
    assert r.status_code == 409
    for missing in (uuid.uuid4(), "not-a-uuid"):
        r = client.delete(f"{invitations_url(org)}/{missing}", headers=auth(signed_in(admin)))
        assert r.status_code == 404 and r.json["error"]["code"] == "INVITATION_NOT_FOUND"
    assert count(db_session, AdminAuditEvent) == 1


# ---- who may -------------------------------------------------------------------------------------------


def test_another_orgs_manager_gets_404(client, db_session, team) -> None:
    org, owner, *_ = team
    invitation, _token = make_invitation(org, owner, email="cleo@example.com")
    other_owner = make_user()
    other = make_org(other_owner)
    headers = auth(signed_in(other_owner))
    for r in (
        client.post(invitations_url(org), json={"email": "x@example.com", "role": "creator"}, headers=headers),
        client.get(invitations_url(org), headers=headers),
        client.delete(f"{invitations_url(org)}/{invitation.id}", headers=headers),
    ):
        assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"
    # Through its own org's path, another org's invitation does not exist.
    r = client.delete(f"{invitations_url(other)}/{invitation.id}", headers=headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "INVITATION_NOT_FOUND"
    assert client.get(invitations_url(other), headers=headers).json["items"] == []
    assert invitation_row(db_session, invitation.id).status == "pending"
    assert count(db_session, AdminAuditEvent) == 0


def test_a_creator_may_not_invite_list_or_revoke(client, db_session, team) -> None:
    org, owner, _admin, creator = team
    invitation, _token = make_invitation(org, owner, email="cleo@example.com")
    headers = auth(signed_in(creator))
    for r in (
        client.post(invitations_url(org), json={"email": "x@example.com", "role": "creator"}, headers=headers),
        client.get(invitations_url(org), headers=headers),
        client.delete(f"{invitations_url(org)}/{invitation.id}", headers=headers),
    ):
        assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    assert count(db_session, Invitation) == 1 and count(db_session, AdminAuditEvent) == 0


# ---- the document -----------------------------------------------------------------------------------------

DOCUMENTED = {
    ("post", "/api/v1/orgs/{org_id}/invitations"): {"400", "401", "403", "404", "409", "413", "415"},
    ("get", "/api/v1/orgs/{org_id}/invitations"): {"400", "401", "403", "404"},
    ("delete", "/api/v1/orgs/{org_id}/invitations/{invitation_id}"): {"401", "403", "404", "409"},
    ("get", "/api/v1/invitations/{token}"): {"404"},
    ("post", "/api/v1/invitations/accept"): {"400", "401", "403", "404", "409", "413", "415"},
}


def test_every_invitation_operation_is_documented(app) -> None:
    spec = app.test_client().get("/api/v1/openapi.json").json
    for (method, path), statuses in DOCUMENTED.items():
        operation = spec["paths"][path][method]
        assert operation["summary"], path
        assert statuses | {"429", "500", "503"} <= set(operation["responses"]), (method, path)
    assert "post" not in spec["paths"]["/api/v1/orgs/{org_id}/members"]
    invitation = spec["components"]["schemas"]["Invitation"]
    assert set(invitation["properties"]) == INVITATION_FIELDS
