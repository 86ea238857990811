"""Every identity/orgs operation is documented with a summary and its non-2xx responses."""

from __future__ import annotations

import pytest

SIGNED_IN = {"401"}
JSON_BODY = {"400", "413", "415"}
COMMON = {"429", "500", "503"}

EXPECTED = {
    ("post", "/api/v1/auth/register"): JSON_BODY | {"403", "404", "409"},
    ("post", "/api/v1/auth/login"): JSON_BODY | {"401"},
    ("post", "/api/v1/auth/logout"): {"403"},
    ("get", "/api/v1/auth/me"): SIGNED_IN,
    ("post", "/api/v1/auth/verify-email"): JSON_BODY,
    ("post", "/api/v1/auth/resend-verification"): JSON_BODY,
    ("post", "/api/v1/auth/password-reset"): JSON_BODY,
    ("post", "/api/v1/auth/password-reset/confirm"): JSON_BODY,
    ("post", "/api/v1/auth/password"): JSON_BODY | SIGNED_IN | {"403"},
    ("get", "/api/v1/auth/sessions"): SIGNED_IN | {"400"},
    ("delete", "/api/v1/auth/sessions/{session_id}"): SIGNED_IN | {"403", "404"},
    ("get", "/api/v1/orgs"): SIGNED_IN | {"400", "403"},
    ("post", "/api/v1/orgs"): JSON_BODY | SIGNED_IN | {"403", "409"},
    ("get", "/api/v1/orgs/{org_id}"): SIGNED_IN | {"404"},
    ("patch", "/api/v1/orgs/{org_id}"): JSON_BODY | SIGNED_IN | {"403", "404", "409"},
    ("get", "/api/v1/orgs/{org_id}/members"): SIGNED_IN | {"400", "404"},
    ("post", "/api/v1/orgs/{org_id}/invitations"): JSON_BODY | SIGNED_IN | {"403", "404", "409"},
    ("get", "/api/v1/orgs/{org_id}/invitations"): SIGNED_IN | {"400", "403", "404"},
    ("delete", "/api/v1/orgs/{org_id}/invitations/{invitation_id}"): SIGNED_IN | {"403", "404", "409"},
    ("get", "/api/v1/invitations/{token}"): {"404"},
    ("post", "/api/v1/invitations/accept"): JSON_BODY | SIGNED_IN | {"403", "404", "409"},
    ("patch", "/api/v1/orgs/{org_id}/members/{user_id}"): JSON_BODY | SIGNED_IN | {"403", "404", "422"},
    ("delete", "/api/v1/orgs/{org_id}/members/{user_id}"): SIGNED_IN | {"403", "404", "422"},
    ("get", "/api/v1/orgs/{org_id}/settings"): {"404"},
    ("put", "/api/v1/orgs/{org_id}/settings"): JSON_BODY | SIGNED_IN | {"403", "404"},
    ("put", "/api/v1/orgs/{org_id}/settings/logo"): JSON_BODY | SIGNED_IN | {"403", "404"},
    ("delete", "/api/v1/orgs/{org_id}/settings/logo"): SIGNED_IN | {"403", "404"},
}


@pytest.fixture(scope="module")
def spec(app) -> dict:
    return app.test_client().get("/api/v1/openapi.json").json


@pytest.mark.parametrize(("method", "path"), list(EXPECTED))
def test_operation_is_documented(spec, method, path) -> None:
    operation = spec["paths"][path][method]
    assert operation["summary"]
    assert EXPECTED[(method, path)] | COMMON <= set(operation["responses"])


def test_logo_upload_is_documented_as_multipart(spec) -> None:
    body = spec["paths"]["/api/v1/orgs/{org_id}/settings/logo"]["put"]["requestBody"]
    assert list(body["content"]) == ["multipart/form-data"]
