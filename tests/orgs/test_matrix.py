"""Authorization matrix (README §5) over every org-scoped endpoint of identity/orgs.

Each case builds a fresh org (owner, admin, creator, a creator target) and calls one endpoint as
one caller: anonymous, a signed-in customer (no membership), the org's creator/admin/owner, a
platform_owner (not a member), and an admin of *another* org, who must get the same 404 as a
stranger. A platform_owner's writes are audited as ``platform_owner``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from app.audit import AdminAuditEvent
from tests.identity.helpers import add_member, auth, make_org, make_user, signed_in
from tests.orgs.helpers import make_invitation

CALLERS = ("anonymous", "customer", "creator", "admin", "owner", "platform_owner", "other_org_admin")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

SETTINGS = {
    "platform_name": "Renamed",
    "primary_color": "#112233",
    "support_email": "help@example.com",
    "timezone": "UTC",
}


@dataclass
class World:
    org: Any
    owner: Any
    admin: Any
    creator: Any
    target: Any  # another creator, the object of member operations
    outsider: Any
    invitation: Any  # a pending invitation, the object of the revoke


def build_world() -> World:
    owner = make_user()
    org = make_org(owner)
    admin = add_member(org, role="admin")
    creator = add_member(org, role="creator")
    target = add_member(org, role="creator")
    outsider = make_user(email="newcomer@example.com")
    invitation, _token = make_invitation(org, owner, email="pending@example.com")
    return World(org, owner, admin, creator, target, outsider, invitation)


def caller_headers(world: World, caller: str) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    user = {
        "customer": lambda: make_user(),
        "creator": lambda: world.creator,
        "admin": lambda: world.admin,
        "owner": lambda: world.owner,
        "platform_owner": lambda: make_user(role="platform_owner"),
        "other_org_admin": lambda: add_member(make_org(), role="admin"),
    }[caller]()
    return auth(signed_in(user))


def logo_body() -> tuple[bytes, str]:
    boundary, body = encode_multipart(MultiDict({"file": FileStorage(io.BytesIO(PNG), filename="l.png")}))
    return body, f"multipart/form-data; boundary={boundary}"


def call(client, world: World, endpoint: str, headers: dict[str, str]):
    org = f"/api/v1/orgs/{world.org.id}"
    if endpoint == "get_org":
        return client.get(org, headers=headers)
    if endpoint == "patch_org":
        return client.patch(org, json={"description": "changed"}, headers=headers)
    if endpoint == "list_members":
        return client.get(f"{org}/members", headers=headers)
    if endpoint == "invite":
        body = {"email": world.outsider.email, "role": "creator"}
        return client.post(f"{org}/invitations", json=body, headers=headers)
    if endpoint == "list_invitations":
        return client.get(f"{org}/invitations", headers=headers)
    if endpoint == "revoke_invitation":
        return client.delete(f"{org}/invitations/{world.invitation.id}", headers=headers)
    if endpoint == "change_role":
        return client.patch(f"{org}/members/{world.target.id}", json={"role": "admin"}, headers=headers)
    if endpoint == "transfer_ownership":
        return client.patch(f"{org}/members/{world.target.id}", json={"role": "owner"}, headers=headers)
    if endpoint == "remove_member":
        return client.delete(f"{org}/members/{world.target.id}", headers=headers)
    if endpoint == "get_settings":
        return client.get(f"{org}/settings", headers=headers)
    if endpoint == "put_settings":
        return client.put(f"{org}/settings", json=SETTINGS, headers=headers)
    if endpoint == "put_logo":
        body, content_type = logo_body()
        return client.put(f"{org}/settings/logo", data=body, content_type=content_type, headers=headers)
    if endpoint == "delete_logo":
        return client.delete(f"{org}/settings/logo", headers=headers)
    raise AssertionError(endpoint)


#                       anonymous customer creator admin owner platform other-org
MATRIX: dict[str, tuple[int, ...]] = {
    "get_org":            (401, 404, 200, 200, 200, 200, 404),
    "patch_org":          (401, 404, 403, 200, 200, 200, 404),
    "list_members":       (401, 404, 200, 200, 200, 200, 404),
    "invite":             (401, 404, 403, 201, 201, 201, 404),
    "list_invitations":   (401, 404, 403, 200, 200, 200, 404),
    "revoke_invitation":  (401, 404, 403, 204, 204, 204, 404),
    "change_role":        (401, 404, 403, 200, 200, 200, 404),
    "transfer_ownership": (401, 404, 403, 403, 200, 200, 404),
    "remove_member":      (401, 404, 403, 204, 204, 204, 404),
    "get_settings":       (200, 200, 200, 200, 200, 200, 200),
    "put_settings":       (401, 404, 403, 200, 200, 200, 404),
    "put_logo":           (401, 404, 403, 200, 200, 200, 404),
    "delete_logo":        (401, 404, 403, 204, 204, 204, 404),
}  # fmt: skip

WRITES = {
    "patch_org",
    "invite",
    "revoke_invitation",
    "change_role",
    "transfer_ownership",
    "remove_member",
    "put_settings",
    "put_logo",
}
CASES = [
    pytest.param(endpoint, caller, expected[i], id=f"{endpoint}-{caller}")
    for endpoint, expected in MATRIX.items()
    for i, caller in enumerate(CALLERS)
]


@pytest.mark.parametrize(("endpoint", "caller", "expected"), CASES)
def test_matrix(client, app, db_session, endpoint: str, caller: str, expected: int) -> None:
    world = build_world()
    response = call(client, world, endpoint, caller_headers(world, caller))
    assert response.status_code == expected, response.json
    if expected == 404:
        # a stranger, another tenant and a missing org are indistinguishable
        assert response.json == {
            "error": {"code": "ORG_NOT_FOUND", "message": "The organization was not found.", "details": {}}
        }
    if expected == 401:
        assert response.json["error"]["code"] == "UNAUTHENTICATED"
    if expected == 403:
        assert response.json["error"]["code"] == "FORBIDDEN"
    events = db_session.scalars(select(AdminAuditEvent)).all()
    if expected >= 400:
        assert events == []
    elif endpoint in WRITES:
        assert len(events) == 1
        if caller == "platform_owner":
            assert events[0].actor_role == "platform_owner"
    if endpoint == "put_logo" and expected == 200:
        app.extensions["storage"].delete(response.json["logo_url"].split("/storage/public/", 1)[1])


@pytest.mark.parametrize(
    ("caller", "expected"),
    [("anonymous", 401), ("customer", 200), ("creator", 200), ("platform_owner", 200)],
)
def test_list_and_create_orgs(client, db_session, caller, expected) -> None:
    world = build_world()
    headers = caller_headers(world, caller)
    assert client.get("/api/v1/orgs", headers=headers).status_code == expected
    created = client.post("/api/v1/orgs", json={"name": "New", "slug": "new-org"}, headers=headers)
    assert created.status_code == (401 if caller == "anonymous" else 201)
    listing_all = client.get("/api/v1/orgs?all=true", headers=headers)
    assert listing_all.status_code == {"anonymous": 401, "platform_owner": 200}.get(caller, 403)


@pytest.mark.parametrize("caller", ["creator", "admin"])
def test_members_may_remove_themselves(client, db_session, caller) -> None:
    world = build_world()
    me = getattr(world, caller)
    r = client.delete(f"/api/v1/orgs/{world.org.id}/members/{me.id}", headers=auth(signed_in(me)))
    assert r.status_code == 204
