"""Email verification, password reset and password change (api.md §3, security.md §1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from app.identity import passwords, service
from app.identity.models import AuthSession, Credential, User, VerificationToken
from app.identity.sessions import hash_token, new_token
from app.notifications.models import EmailOutbox
from tests.identity.helpers import TEST_PASSWORD, auth, count, make_org, make_user, signed_in

VERIFY = "/api/v1/auth/verify-email"
RESEND = "/api/v1/auth/resend-verification"
RESET = "/api/v1/auth/password-reset"
CONFIRM = "/api/v1/auth/password-reset/confirm"
CHANGE = "/api/v1/auth/password"
ME = "/api/v1/auth/me"


def outbox(db_session, template: str) -> list[EmailOutbox]:
    db_session.expire_all()
    return list(
        db_session.scalars(select(EmailOutbox).where(EmailOutbox.template == template).order_by(EmailOutbox.created_at))
    )


def token_from(email: EmailOutbox, key: str) -> str:
    return parse_qs(urlsplit(email.context[key]).query)["token"][0]


def register(client, email: str = "ana@example.com") -> str:
    r = client.post("/api/v1/auth/register", json={"email": email, "password": "Str0ngpass", "name": "Ana"})
    assert r.status_code == 201
    return r.json["id"]


# ---- verification ---------------------------------------------------------------------------


def test_verify_email_once_and_welcome_once(client, db_session) -> None:
    user_id = register(client)
    token = token_from(outbox(db_session, "email-verification")[0], "verification_url")
    r = client.post(VERIFY, json={"token": token})
    assert r.status_code == 200
    assert r.json["email_verified"] is True and r.json["email_verified_at"].endswith("Z")
    welcome = outbox(db_session, "welcome")
    assert len(welcome) == 1
    assert welcome[0].dedupe_key == f"welcome:{user_id}"
    assert welcome[0].context["login_url"] == "http://localhost:3000/login"
    assert welcome[0].recipient == "ana@example.com"
    # the same token again: used
    r = client.post(VERIFY, json={"token": token})
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_TOKEN"


def test_verified_user_with_a_fresh_valid_token_gets_200_and_no_second_welcome(client, db_session) -> None:
    register(client)
    first = token_from(outbox(db_session, "email-verification")[0], "verification_url")
    client.post(VERIFY, json={"token": first})
    user = db_session.scalar(select(User))

    _, second = service.issue_token(db_session, user.id, "email_verification")
    r = client.post(VERIFY, json={"token": second})
    assert r.status_code == 200
    assert len(outbox(db_session, "welcome")) == 1


@pytest.mark.parametrize("token", ["nope", "x" * 200])
def test_unknown_token_is_invalid(client, db_session, token) -> None:
    r = client.post(VERIFY, json={"token": token})
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_TOKEN"


def test_token_shape_errors_are_validation_errors(client, db_session) -> None:
    for body in ({"token": ""}, {"token": "x" * 201}, {}, {"token": 5}, {"token": "a", "x": 1}):
        r = client.post(VERIFY, json=body)
        assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", body


def test_expired_verification_token(client, db_session) -> None:
    register(client)
    token = token_from(outbox(db_session, "email-verification")[0], "verification_url")
    row = db_session.scalar(select(VerificationToken))
    row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db_session.flush()
    r = client.post(VERIFY, json={"token": token})
    assert r.json["error"]["code"] == "INVALID_TOKEN"
    assert db_session.scalar(select(User)).email_verified_at is None


def test_reset_token_is_not_a_verification_token(client, db_session) -> None:
    register(client)
    client.post(RESET, json={"email": "ana@example.com"})
    reset = token_from(outbox(db_session, "password-reset")[0], "reset_url")
    assert client.post(VERIFY, json={"token": reset}).json["error"]["code"] == "INVALID_TOKEN"


def test_resend_issues_new_token_and_supersedes_the_old(client, db_session) -> None:
    register(client, "ana@example.com")
    old = token_from(outbox(db_session, "email-verification")[0], "verification_url")
    r = client.post(RESEND, json={"email": "ANA@example.com"})
    assert r.status_code == 202 and r.data == b""
    emails = outbox(db_session, "email-verification")
    assert len(emails) == 2
    new = token_from(emails[1], "verification_url")
    assert count(db_session, VerificationToken) == 1  # the old unconsumed one was deleted
    assert client.post(VERIFY, json={"token": old}).json["error"]["code"] == "INVALID_TOKEN"
    assert client.post(VERIFY, json={"token": new}).status_code == 200


def test_resend_for_unknown_or_verified_sends_nothing(client, db_session) -> None:
    make_user(email="done@example.com", email_verified_at=datetime.now(UTC))
    for email in ("nobody@example.com", "done@example.com"):
        r = client.post(RESEND, json={"email": email})
        assert r.status_code == 202 and r.data == b""
    assert count(db_session, EmailOutbox) == 0
    assert client.post(RESEND, json={"email": "bad"}).status_code == 400


# ---- password reset -------------------------------------------------------------------------


def test_password_reset_request(client, db_session) -> None:
    org = make_org()
    user = make_user(email="ana@example.com", name="Ana", signup_organization_id=org.id)
    r = client.post(RESET, json={"email": "ana@example.com"})
    assert r.status_code == 202 and r.data == b""
    (email,) = outbox(db_session, "password-reset")
    token_row = db_session.scalar(select(VerificationToken).where(VerificationToken.purpose == "password_reset"))
    assert email.dedupe_key == f"password-reset:{token_row.id}"
    assert email.organization_id == org.id and email.user_id == user.id
    assert email.context["expires_in_minutes"] == 60
    assert email.context["reset_url"].startswith("http://localhost:3000/reset-password?token=")
    minutes = (token_row.expires_at - token_row.created_at).total_seconds() / 60
    assert 59 < minutes < 61
    assert token_row.token_hash == hash_token(token_from(email, "reset_url"))


def test_password_reset_unknown_email_is_202_and_silent(client, db_session) -> None:
    r = client.post(RESET, json={"email": "nobody@example.com"})
    assert r.status_code == 202 and r.data == b""
    assert count(db_session, EmailOutbox) == 0 and count(db_session, VerificationToken) == 0


def test_new_reset_token_invalidates_the_older_one(client, db_session) -> None:
    make_user(email="ana@example.com")
    client.post(RESET, json={"email": "ana@example.com"})
    client.post(RESET, json={"email": "ana@example.com"})
    first, second = (token_from(e, "reset_url") for e in outbox(db_session, "password-reset"))
    r = client.post(CONFIRM, json={"token": first, "password": "N3wpassword"})
    assert r.json["error"]["code"] == "INVALID_TOKEN"
    assert client.post(CONFIRM, json={"token": second, "password": "N3wpassword"}).status_code == 204


def test_reset_token_works_once_and_revokes_every_session_at_once(client, db_session, redis) -> None:
    user = make_user(email="ana@example.com")
    sessions = [signed_in(user), signed_in(user, remember_me=True)]
    for token in sessions:
        assert client.get(ME, headers=auth(token)).status_code == 200  # cached now
    assert redis.exists(*(f"sess:{hash_token(t)}" for t in sessions)) == 2
    client.post(RESET, json={"email": "ana@example.com"})
    reset = token_from(outbox(db_session, "password-reset")[0], "reset_url")

    r = client.post(CONFIRM, json={"token": reset, "password": "N3wpassword"})
    assert r.status_code == 204 and r.data == b""
    for token in sessions:
        assert redis.get(f"sess:{hash_token(token)}") == b"revoked"
        assert client.get(ME, headers=auth(token)).status_code == 401
    assert not redis.exists(f"sess:u:{user.id}")
    db_session.expire_all()
    assert all(s.revoked_at is not None for s in db_session.scalars(select(AuthSession)))
    credential = db_session.get(Credential, user.id)
    assert passwords.verify_password(credential.password_hash, "N3wpassword")
    (changed,) = outbox(db_session, "password-changed")
    assert changed.dedupe_key == f"password-changed:{user.id}:{int(credential.password_changed_at.timestamp())}"
    assert datetime.fromisoformat(changed.context["changed_at"]) == credential.password_changed_at

    again = client.post(CONFIRM, json={"token": reset, "password": "An0therpass"})
    assert again.status_code == 400 and again.json["error"]["code"] == "INVALID_TOKEN"
    login = client.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": "N3wpassword"})
    assert login.status_code == 200


def test_reset_token_expires_after_an_hour(client, db_session) -> None:
    make_user(email="ana@example.com")
    client.post(RESET, json={"email": "ana@example.com"})
    reset = token_from(outbox(db_session, "password-reset")[0], "reset_url")
    row = db_session.scalar(select(VerificationToken))
    row.created_at = datetime.now(UTC) - timedelta(hours=1, seconds=1)
    row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db_session.flush()
    r = client.post(CONFIRM, json={"token": reset, "password": "N3wpassword"})
    assert r.json["error"]["code"] == "INVALID_TOKEN"


def test_reset_confirm_policy_and_same_password(client, db_session) -> None:
    make_user(email="ana@example.com")
    client.post(RESET, json={"email": "ana@example.com"})
    reset = token_from(outbox(db_session, "password-reset")[0], "reset_url")
    r = client.post(CONFIRM, json={"token": reset, "password": "weak"})
    assert r.status_code == 400 and "password" in r.json["error"]["details"]
    r = client.post(CONFIRM, json={"token": reset, "password": TEST_PASSWORD})
    assert r.status_code == 400 and "password" in r.json["error"]["details"]
    # a rejected request writes nothing: the token is still usable
    assert client.post(CONFIRM, json={"token": reset, "password": "N3wpassword"}).status_code == 204


def test_reset_confirm_consumes_every_open_reset_token_of_the_user(client, db_session) -> None:
    user = make_user(email="ana@example.com")
    client.post(RESET, json={"email": "ana@example.com"})
    mailed = token_from(outbox(db_session, "password-reset")[0], "reset_url")
    # A second open reset token, as two reset requests racing each other leave behind (each
    # deletes only the open tokens it can see), plus an open verification token.
    raced, raced_hash = new_token()
    _, verification = service.issue_token(db_session, user.id, "email_verification")
    db_session.add(
        VerificationToken(
            user_id=user.id,
            purpose="password_reset",
            token_hash=raced_hash,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    )
    db_session.flush()

    assert client.post(CONFIRM, json={"token": mailed, "password": "N3wpassword"}).status_code == 204
    r = client.post(CONFIRM, json={"token": raced, "password": "An0therpass"})
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_TOKEN"
    db_session.expire_all()
    row = db_session.scalar(select(VerificationToken).where(VerificationToken.token_hash == raced_hash))
    assert row is not None and row.consumed_at is not None  # consumed, not deleted
    assert passwords.verify_password(db_session.get(Credential, user.id).password_hash, "N3wpassword")
    # only reset tokens: the open verification token still works
    assert client.post(VERIFY, json={"token": verification}).status_code == 200


# ---- password change ------------------------------------------------------------------------


def test_change_password_revokes_other_sessions_only(client, db_session, redis) -> None:
    user = make_user()
    current, other = signed_in(user), signed_in(user)
    client.get(ME, headers=auth(other))
    r = client.post(
        CHANGE, json={"current_password": TEST_PASSWORD, "new_password": "N3wpassword"}, headers=auth(current)
    )
    assert r.status_code == 204 and r.data == b""
    assert client.get(ME, headers=auth(current)).status_code == 200
    assert client.get(ME, headers=auth(other)).status_code == 401
    assert redis.get(f"sess:{hash_token(other)}") == b"revoked"
    assert len(outbox(db_session, "password-changed")) == 1
    assert passwords.verify_password(db_session.get(Credential, user.id).password_hash, "N3wpassword")


def test_change_password_errors(client, db_session) -> None:
    user = make_user()
    token = signed_in(user)
    r = client.post(CHANGE, json={"current_password": "Wr0ngpass", "new_password": "N3wpassword"}, headers=auth(token))
    assert r.status_code == 400 and set(r.json["error"]["details"]) == {"current_password"}
    r = client.post(
        CHANGE, json={"current_password": TEST_PASSWORD, "new_password": TEST_PASSWORD}, headers=auth(token)
    )
    assert r.status_code == 400 and set(r.json["error"]["details"]) == {"new_password"}
    r = client.post(CHANGE, json={"current_password": TEST_PASSWORD, "new_password": "weak"}, headers=auth(token))
    assert r.status_code == 400 and set(r.json["error"]["details"]) == {"new_password"}
    r = client.post(CHANGE, json={"current_password": TEST_PASSWORD}, headers=auth(token))
    assert r.status_code == 400
    r = client.post(CHANGE, json={"current_password": TEST_PASSWORD, "new_password": "N3wpassword"})
    assert r.status_code == 401
    assert count(db_session, EmailOutbox) == 0
    assert passwords.verify_password(db_session.get(Credential, user.id).password_hash, TEST_PASSWORD)


def test_change_password_consumes_the_open_reset_tokens(client, db_session) -> None:
    user = make_user(email="ana@example.com")
    token = signed_in(user)
    client.post(RESET, json={"email": "ana@example.com"})  # e.g. mailed before the user remembered it
    mailed = token_from(outbox(db_session, "password-reset")[0], "reset_url")
    r = client.post(
        CHANGE, json={"current_password": TEST_PASSWORD, "new_password": "N3wpassword"}, headers=auth(token)
    )
    assert r.status_code == 204
    r = client.post(CONFIRM, json={"token": mailed, "password": "An0therpass"})
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_TOKEN"
    db_session.expire_all()
    assert passwords.verify_password(db_session.get(Credential, user.id).password_hash, "N3wpassword")
    assert client.get(ME, headers=auth(token)).status_code == 200  # the reset attempt revoked nothing
