"""Login, logout, /me, transport of the token, CSRF (api.md §3, security.md §1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from app.identity import passwords
from app.identity.models import AuthSession, Credential
from app.identity.sessions import hash_token
from tests.identity.helpers import ORIGIN, TEST_PASSWORD, auth, make_org, make_user, session_row, signed_in

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"
LOGOUT = "/api/v1/auth/logout"


def login(client, email: str, password: str = TEST_PASSWORD, **extra):
    return client.post(LOGIN, json={"email": email, "password": password, **extra}, headers={"User-Agent": "pytest/1"})


def test_login_returns_token_user_and_cookie(client, db_session) -> None:
    user = make_user(email="ana@example.com", name="Ana")
    r = login(client, "ANA@example.com")
    assert r.status_code == 200
    body = r.json
    assert set(body) == {"token", "expires_at", "user"}
    assert len(body["token"]) == 43
    assert body["user"]["id"] == str(user.id) and body["user"]["email_verified"] is False
    row = db_session.scalar(select(AuthSession).where(AuthSession.user_id == user.id))
    assert row.token_hash == hash_token(body["token"])
    assert row.remember_me is False
    assert row.user_agent == "pytest/1" and row.ip_address == "127.0.0.1"
    assert abs((row.expires_at - datetime.now(UTC)) - timedelta(hours=24)) < timedelta(minutes=1)
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"codex_session={body['token']};")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Max-Age" not in cookie and "Secure" not in cookie  # browser-session cookie; test env


def test_remember_me_lasts_30_days_and_sets_max_age(client, db_session) -> None:
    make_user(email="ana@example.com")
    r = login(client, "ana@example.com", remember_me=True)
    assert r.status_code == 200
    assert "Max-Age=2592000" in r.headers["Set-Cookie"]
    expires = datetime.fromisoformat(r.json["expires_at"])
    assert abs((expires - datetime.now(UTC)) - timedelta(days=30)) < timedelta(minutes=1)


def test_cookie_secure_and_domain_in_production_like_config(app_factory, db_session) -> None:
    other = app_factory(SESSION_COOKIE_DOMAIN="example.com")
    other.config["APP_ENV"] = "production"  # only the cookie flags read it here
    from app.identity.sessions import set_session_cookie

    with other.test_request_context():
        from flask import Response

        response = Response()
        set_session_cookie(response, "tok", remember_me=False)
        cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "Domain=example.com" in cookie


def test_wrong_password_and_unknown_email_give_the_same_401(client, db_session) -> None:
    make_user(email="ana@example.com")
    wrong = login(client, "ana@example.com", "Wr0ngpassword")
    unknown = login(client, "nobody@example.com", "Wr0ngpassword")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json
    assert wrong.json["error"]["code"] == "INVALID_CREDENTIALS"
    assert "Set-Cookie" not in wrong.headers
    assert db_session.scalar(select(AuthSession)) is None


def test_unknown_email_still_verifies_a_dummy_hash(client, db_session, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(passwords, "verify_dummy", lambda password: calls.append(password))
    login(client, "nobody@example.com", "Wr0ngpassword")
    assert calls == ["Wr0ngpassword"]


def test_login_accepts_any_1_to_128_chars_but_validates_shape(client, db_session) -> None:
    make_user(email="ana@example.com")
    assert login(client, "ana@example.com", "x").status_code == 401
    assert login(client, "ana@example.com", "").status_code == 400
    assert login(client, "ana@example.com", "x" * 129).status_code == 400
    r = login(client, "ana@example.com", remember_me="yes")
    assert r.status_code == 400 and "remember_me" in r.json["error"]["details"]
    r = login(client, "ana@example.com", remember_me=1)
    assert r.status_code == 400 and "remember_me" in r.json["error"]["details"]
    assert login(client, "not-an-email").status_code == 400


def test_login_before_verification_is_allowed(client, db_session) -> None:
    make_user(email="ana@example.com", email_verified_at=None)
    assert login(client, "ana@example.com").status_code == 200


def test_stale_hash_is_rehashed_on_login(client, db_session) -> None:
    user = make_user(email="ana@example.com")
    old = PasswordHasher(time_cost=2, memory_cost=8, parallelism=1).hash(TEST_PASSWORD)
    db_session.get(Credential, user.id).password_hash = old
    db_session.flush()
    assert login(client, "ana@example.com").status_code == 200
    db_session.expire_all()
    new = db_session.get(Credential, user.id).password_hash
    assert new != old and not passwords.needs_rehash(new)
    assert passwords.verify_password(new, TEST_PASSWORD)


def test_me_with_bearer_and_memberships_sorted_by_org_name(client, db_session) -> None:
    user = make_user()
    make_org(user, name="Zebra")
    org_a = make_org(name="Apple")
    from tests.identity.helpers import add_member

    add_member(org_a, user, "creator")
    r = client.get(ME, headers=auth(signed_in(user)))
    assert r.status_code == 200
    assert [m["organization_name"] for m in r.json["memberships"]] == ["Apple", "Zebra"]
    assert r.json["memberships"][0] == {
        "organization_id": str(org_a.id),
        "organization_name": "Apple",
        "organization_slug": org_a.slug,
        "role": "creator",
    }
    assert r.headers["Cache-Control"] == "no-store"


def test_me_with_cookie(client, db_session) -> None:
    make_user(email="ana@example.com")
    login(client, "ana@example.com")  # the client keeps the cookie
    assert client.get(ME).status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic abc", "Bearer a b", "Token abc", "Bearer abc$", "bearer"],
)
def test_malformed_authorization_is_401_even_with_a_valid_cookie(client, db_session, header) -> None:
    make_user(email="ana@example.com")
    login(client, "ana@example.com")
    r = client.get(ME, headers={"Authorization": header})
    assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHENTICATED"


def test_bearer_wins_over_cookie(client, db_session) -> None:
    make_user(email="ana@example.com")
    login(client, "ana@example.com")
    bob = make_user(name="Bob")
    r = client.get(ME, headers=auth(signed_in(bob)))
    assert r.json["name"] == "Bob"
    r = client.get(ME, headers=auth("unknown-token"))
    assert r.status_code == 401  # an unknown bearer does not fall back to the cookie


@pytest.mark.parametrize("kind", ["none", "unknown", "expired", "revoked"])
def test_me_without_a_valid_session_is_401(client, db_session, kind) -> None:
    user = make_user()
    headers = {}
    if kind == "unknown":
        headers = auth("x" * 43)
    elif kind == "expired":
        headers = auth(signed_in(user, expires_in=timedelta(seconds=-1)))
    elif kind == "revoked":
        headers = auth(signed_in(user, revoked=True))
    r = client.get(ME, headers=headers)
    assert r.status_code == 401
    assert r.json == {"error": {"code": "UNAUTHENTICATED", "message": "Authentication is required.", "details": {}}}


def test_logout_revokes_session_and_clears_cookie(client, db_session) -> None:
    make_user(email="ana@example.com")
    token = login(client, "ana@example.com").json["token"]
    r = client.post(LOGOUT, headers={"Origin": ORIGIN})
    assert r.status_code == 204 and r.data == b""
    assert "codex_session=;" in r.headers["Set-Cookie"] and "Max-Age=0" in r.headers["Set-Cookie"]
    row = db_session.scalar(select(AuthSession).where(AuthSession.token_hash == hash_token(token)))
    db_session.refresh(row)
    assert row.revoked_at is not None
    assert client.get(ME, headers=auth(token)).status_code == 401


def test_logout_with_bearer_and_with_nothing(client, db_session) -> None:
    user = make_user()
    token = signed_in(user)
    assert client.get(ME, headers=auth(token)).status_code == 200  # now cached
    assert client.post(LOGOUT, headers=auth(token)).status_code == 204
    assert client.get(ME, headers=auth(token)).status_code == 401  # cache evicted at once
    assert client.post(LOGOUT).status_code == 204
    assert client.post(LOGOUT, headers={"Authorization": "garbage"}).status_code == 204
    assert client.post(LOGOUT, json={}).status_code == 204
    r = client.post(LOGOUT, json={"x": 1})
    assert r.status_code == 400


def test_cookie_post_with_foreign_origin_is_csrf_failed(client, db_session) -> None:
    make_user(email="ana@example.com")
    login(client, "ana@example.com")
    body = {"name": "Bakery", "slug": "bakery"}
    r = client.post("/api/v1/orgs", json=body, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json["error"]["code"] == "CSRF_FAILED"
    r = client.post("/api/v1/orgs", json=body, headers={"Origin": "null"})
    assert r.status_code == 403
    r = client.post("/api/v1/orgs", json=body)  # neither Origin nor Referer
    assert r.status_code == 403
    r = client.post("/api/v1/orgs", json=body, headers={"Referer": "https://evil.example/page"})
    assert r.status_code == 403
    r = client.post(LOGOUT, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403  # a foreign page cannot end the session either
    r = client.post("/api/v1/orgs", json=body, headers={"Referer": f"{ORIGIN}/studio"})
    assert r.status_code == 201
    r = client.post("/api/v1/orgs", json={"name": "Two", "slug": "two"}, headers={"Origin": "http://localhost:5000"})
    assert r.status_code == 201  # PUBLIC_BASE_URL's origin is trusted too


def test_csrf_does_not_apply_to_bearer_or_safe_methods(client, db_session) -> None:
    user = make_user(email="ana@example.com")
    login(client, "ana@example.com")
    assert client.get(ME, headers={"Origin": "https://evil.example"}).status_code == 200
    r = client.post(
        "/api/v1/orgs",
        json={"name": "Bakery", "slug": "bakery"},
        headers=auth(signed_in(user), Origin="https://evil.example"),
    )
    assert r.status_code == 201


def test_csrf_comes_before_schema_errors(client, db_session) -> None:
    make_user(email="ana@example.com")
    login(client, "ana@example.com")
    r = client.post("/api/v1/orgs", json={"bogus": 1}, headers={"Origin": "https://evil.example"})
    assert r.json["error"]["code"] == "CSRF_FAILED"


def test_session_fields_recorded(client, db_session) -> None:
    make_user(email="ana@example.com")
    r = client.post(
        LOGIN, json={"email": "ana@example.com", "password": TEST_PASSWORD}, headers={"User-Agent": "x" * 400}
    )
    sessions = client.get("/api/v1/auth/sessions", headers=auth(r.json["token"])).json["items"]
    assert len(sessions[0]["user_agent"]) == 255
    assert session_row(db_session, sessions[0]["id"]).ip_address == "127.0.0.1"


def test_logout_of_a_session_revoked_meanwhile_is_still_204(client, db_session, redis) -> None:
    user = make_user()
    token = signed_in(user)
    client.get(ME, headers=auth(token))  # cached
    row = db_session.scalar(select(AuthSession).where(AuthSession.token_hash == hash_token(token)))
    row.revoked_at = datetime.now(UTC)  # revoked elsewhere; the cache still says active
    db_session.flush()
    r = client.post(LOGOUT, headers=auth(token))
    assert r.status_code == 204
