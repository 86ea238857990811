"""The guard decorators on a probe blueprint: order of checks, verified email, platform owner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask.views import MethodView

from app.api import Blueprint
from app.http import path_uuid
from app.identity.guards import require_auth, require_platform_owner, require_verified_email
from app.orgs.access import OrgAccess, require_org_role, resource_access
from tests.identity.conftest import bound_client
from tests.identity.helpers import ORIGIN, add_member, auth, make_org, make_user, signed_in


class ProbeBody(ma.Schema):
    name = ma.fields.String(required=True)


def build_probe() -> Blueprint:
    blp = Blueprint("guard_probe", __name__, url_prefix="/api/v1/guard-probe")

    @blp.route("/verified")
    class Verified(MethodView):
        @blp.response(200)
        @require_verified_email
        def get(self) -> Any:
            return {"ok": True}

    @blp.route("/owner-only/<thing_id>")
    class OwnerOnly(MethodView):
        @blp.response(200)
        @require_platform_owner
        @path_uuid("thing_id", "THING_NOT_FOUND")
        def get(self, thing_id: uuid.UUID) -> Any:
            return {"thing_id": str(thing_id)}

    @blp.route("/orgs/<org_id>/things/<thing_id>")
    class Things(MethodView):
        @blp.response(200)
        @require_auth
        @blp.arguments(ProbeBody)
        @require_org_role("admin")
        @path_uuid("thing_id", "THING_NOT_FOUND")
        def post(self, data: dict[str, Any], thing_id: uuid.UUID, org: OrgAccess) -> Any:
            return {"org": str(org.organization_id), "thing": str(thing_id), "role": org.role}

    @blp.route("/resources/<org_id>")
    class Resource(MethodView):
        @blp.response(200)
        @require_auth
        def get(self, org_id: str) -> Any:
            from app import db

            access = resource_access(db.session, uuid.UUID(org_id), "MEDIA_NOT_FOUND", "admin")
            return {"actor_role": access.actor_role}

    return blp


@pytest.fixture(scope="module")
def probe_app(app_factory: Any) -> Flask:
    flask_app: Flask = app_factory()
    flask_app.extensions["api"].register_blueprint(build_probe())
    return flask_app


@pytest.fixture()
def probe(probe_app: Flask, db_session: Any) -> Iterator[FlaskClient]:
    with bound_client(probe_app, db_session) as test_client:
        yield test_client


def test_require_verified_email(probe, db_session) -> None:
    unverified = make_user(email_verified_at=None)
    verified = make_user(email_verified_at=datetime.now(UTC))
    assert probe.get("/api/v1/guard-probe/verified").status_code == 401
    r = probe.get("/api/v1/guard-probe/verified", headers=auth(signed_in(unverified)))
    assert r.status_code == 403 and r.json["error"]["code"] == "EMAIL_NOT_VERIFIED"
    assert probe.get("/api/v1/guard-probe/verified", headers=auth(signed_in(verified))).status_code == 200


def test_require_platform_owner(probe, db_session) -> None:
    thing = uuid.uuid4()
    assert probe.get(f"/api/v1/guard-probe/owner-only/{thing}").status_code == 401
    r = probe.get(f"/api/v1/guard-probe/owner-only/{thing}", headers=auth(signed_in(make_user())))
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    owner = signed_in(make_user(role="platform_owner"))
    assert probe.get(f"/api/v1/guard-probe/owner-only/{thing}", headers=auth(owner)).json == {"thing_id": str(thing)}
    r = probe.get("/api/v1/guard-probe/owner-only/nope", headers=auth(owner))
    assert r.status_code == 404 and r.json["error"]["code"] == "THING_NOT_FOUND"


def test_check_order_401_csrf_uuid_schema_lookup_role(probe, db_session) -> None:
    owner = make_user()
    org = make_org(owner)
    creator = add_member(org, role="creator")
    outsider = make_user()
    thing = uuid.uuid4()
    url = f"/api/v1/guard-probe/orgs/{org.id}/things/{thing}"

    def code(r) -> str:
        return r.json["error"]["code"] if r.status_code >= 400 else str(r.status_code)

    # 401 before everything else
    assert code(probe.post("/api/v1/guard-probe/orgs/bad/things/bad", json={})) == "UNAUTHENTICATED"
    # CSRF before path ids and schema (cookie-authenticated, foreign origin)
    probe.set_cookie("codex_session", signed_in(outsider))
    r = probe.post("/api/v1/guard-probe/orgs/bad/things/bad", json={}, headers={"Origin": "https://evil.example"})
    assert code(r) == "CSRF_FAILED"
    probe.delete_cookie("codex_session")
    # malformed path ids, in path order, before the schema
    headers = auth(signed_in(outsider))
    assert code(probe.post("/api/v1/guard-probe/orgs/bad/things/bad", json={}, headers=headers)) == "ORG_NOT_FOUND"
    r = probe.post(f"/api/v1/guard-probe/orgs/{org.id}/things/bad", json={}, headers=headers)
    assert code(r) == "THING_NOT_FOUND"
    # schema before the lookup
    assert code(probe.post(url, json={}, headers=headers)) == "VALIDATION_ERROR"
    # lookup: not a member -> 404, same body as a missing org
    r = probe.post(url, json={"name": "x"}, headers=headers)
    missing = probe.post(f"/api/v1/guard-probe/orgs/{uuid.uuid4()}/things/{thing}", json={"name": "x"}, headers=headers)
    assert r.status_code == missing.status_code == 404 and r.json == missing.json
    # role
    assert code(probe.post(url, json={"name": "x"}, headers=auth(signed_in(creator)))) == "FORBIDDEN"
    r = probe.post(url, json={"name": "x"}, headers=auth(signed_in(owner)))
    assert r.status_code == 200 and r.json == {"org": str(org.id), "thing": str(thing), "role": "owner"}
    # cookie + trusted origin is fine
    probe.set_cookie("codex_session", signed_in(owner))
    assert probe.post(url, json={"name": "x"}, headers={"Origin": ORIGIN}).status_code == 200


def test_resource_access_helper(probe, db_session, caplog) -> None:
    org = make_org()
    admin = add_member(org, role="admin")
    creator = add_member(org, role="creator")
    url = f"/api/v1/guard-probe/resources/{org.id}"
    assert probe.get(url, headers=auth(signed_in(admin))).json == {"actor_role": "admin"}
    r = probe.get(url, headers=auth(signed_in(creator)))
    assert r.status_code == 403
    r = probe.get(url, headers=auth(signed_in(make_user())))
    assert r.status_code == 404 and r.json["error"]["code"] == "MEDIA_NOT_FOUND"
    r = probe.get(url, headers=auth(signed_in(make_user(role="platform_owner"))))
    assert r.json == {"actor_role": "platform_owner"}
