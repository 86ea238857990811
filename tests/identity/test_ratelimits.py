"""Rate limits of the auth endpoints (security.md §3), on an app with limiting switched on."""

from __future__ import annotations

import pytest

from tests.identity.helpers import TEST_PASSWORD, auth, make_user, signed_in


def assert_limited(r) -> None:
    assert r.status_code == 429
    assert r.json["error"]["code"] == "RATE_LIMITED"
    retry_after = int(r.headers["Retry-After"])
    assert retry_after >= 1
    assert r.json["error"]["details"]["retry_after"] == retry_after


def test_sixth_login_from_one_ip_in_15_minutes_is_429(limited_client, db_session) -> None:
    make_user(email="ana@example.com")
    for attempt in range(5):
        password = TEST_PASSWORD if attempt == 2 else "Wr0ngpass"  # every attempt counts
        r = limited_client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": password})
        assert r.status_code in {200, 401}
        assert r.headers["X-RateLimit-Limit"] == "5"
    r = limited_client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": TEST_PASSWORD})
    assert_limited(r)
    assert 800 <= int(r.headers["Retry-After"]) <= 900
    # another IP is not affected
    r = limited_client.post(
        "/api/v1/auth/login",
        json={"email": "ana@example.com", "password": TEST_PASSWORD},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert r.status_code == 200


def test_login_limit_is_per_ip_and_normalised_email(limited_client, limited_app, db_session) -> None:
    make_user(email="ana@example.com")
    for email in ("ana@example.com", " ANA@example.com", "Ana@Example.COM ", "ana@example.com", "ana@EXAMPLE.com"):
        r = limited_client.post("/api/v1/auth/login", json={"email": email, "password": "Wr0ngpass"})
        assert r.status_code == 401
    r = limited_client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": TEST_PASSWORD})
    assert_limited(r)
    assert r.headers["X-RateLimit-Limit"] == "5" and r.headers["X-RateLimit-Remaining"] == "0"
    # the same IP with another email has its own budget (and the IP's wider one)
    r = limited_client.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": "Wr0ngpass"})
    assert r.status_code == 401 and r.json["error"]["code"] == "INVALID_CREDENTIALS"
    assert r.headers["X-RateLimit-Limit"] == "5" and r.headers["X-RateLimit-Remaining"] == "4"
    assert int(r.headers["X-RateLimit-Reset"]) > 0
    # the keys hold the IP, never the address
    keys = b" ".join(limited_app.extensions["redis"].keys("*"))
    assert b"127.0.0.1" in keys
    assert b"ana" not in keys.lower() and b"bob" not in keys.lower() and b"example" not in keys.lower()


def test_login_limit_per_ip_across_many_emails(limited_client, db_session) -> None:
    for i in range(100):
        r = limited_client.post("/api/v1/auth/login", json={"email": f"u{i}@example.com", "password": "Wr0ngpass"})
        assert r.status_code == 401, i
    r = limited_client.post("/api/v1/auth/login", json={"email": "fresh@example.com", "password": "Wr0ngpass"})
    assert_limited(r)
    assert r.headers["X-RateLimit-Limit"] == "100" and r.headers["X-RateLimit-Remaining"] == "0"
    assert 800 <= int(r.headers["Retry-After"]) <= 900
    # another IP is not affected
    r = limited_client.post(
        "/api/v1/auth/login",
        json={"email": "fresh@example.com", "password": "Wr0ngpass"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert r.status_code == 401


def test_rate_limit_comes_before_body_checks(limited_client, db_session) -> None:
    for _ in range(5):
        limited_client.post("/api/v1/auth/login", data="{", content_type="application/json")
    assert_limited(limited_client.post("/api/v1/auth/login", data="x", content_type="text/plain"))


@pytest.mark.parametrize(
    ("url", "limit", "body"),
    [
        ("/api/v1/auth/register", 3, {"email": "x@example.com", "password": "weak", "name": "X"}),
        ("/api/v1/auth/password-reset", 3, {"email": "x@example.com"}),
        ("/api/v1/auth/resend-verification", 5, {"email": "x@example.com"}),
        ("/api/v1/auth/verify-email", 10, {"token": "nope"}),
        ("/api/v1/auth/password-reset/confirm", 10, {"token": "nope", "password": "N3wpassword"}),
    ],
)
def test_ip_limits(limited_client, db_session, url, limit, body) -> None:
    for _ in range(limit):
        assert limited_client.post(url, json=body).status_code != 429
    assert_limited(limited_client.post(url, json=body))


def test_password_change_is_limited_per_user(limited_client, db_session) -> None:
    ana, bob = make_user(), make_user()
    ana_token, bob_token = signed_in(ana), signed_in(bob)
    body = {"current_password": "Wr0ngpass", "new_password": "N3wpassword"}
    for _ in range(5):
        assert limited_client.post("/api/v1/auth/password", json=body, headers=auth(ana_token)).status_code == 400
    assert_limited(limited_client.post("/api/v1/auth/password", json=body, headers=auth(ana_token)))
    # same IP, other user: its own budget
    assert limited_client.post("/api/v1/auth/password", json=body, headers=auth(bob_token)).status_code == 400


def test_org_creation_is_limited_per_user(limited_client, db_session) -> None:
    token = signed_in(make_user())
    for i in range(10):
        r = limited_client.post("/api/v1/orgs", json={"name": f"Org {i}", "slug": f"org-x{i}"}, headers=auth(token))
        assert r.status_code == 201
    assert_limited(limited_client.post("/api/v1/orgs", json={"name": "Org", "slug": "org-y"}, headers=auth(token)))


def test_limits_are_off_in_the_default_test_app(client, db_session) -> None:
    for _ in range(7):
        r = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "x"})
        assert r.status_code == 401


def test_with_limits_off_nothing_is_counted(app, client, db_session, redis) -> None:
    make_user(email="ana@example.com")
    for _ in range(7):  # route limits are off too
        r = client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": "Wr0ngpass"})
        assert r.status_code == 401 and "X-RateLimit-Limit" not in r.headers
    assert app.extensions["redis"].keys("rl:*") == []
