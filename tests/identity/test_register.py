"""POST /api/v1/auth/register (api.md §3)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.identity.models import Credential, User, VerificationToken
from app.notifications.models import EmailOutbox
from tests import factories
from tests.identity.helpers import count, make_org, make_user

URL = "/api/v1/auth/register"
BODY = {"email": "Ana@Example.COM", "password": "Str0ngpass", "name": "  Ana  "}


def error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json["error"]
    return body


def test_register_creates_user_credentials_token_and_email(client, db_session) -> None:
    r = client.post(URL, json=BODY)
    assert r.status_code == 201
    body = r.json
    assert set(body) == {"id", "email", "name", "role", "email_verified", "email_verified_at", "created_at"}
    assert body["email"] == "ana@example.com"
    assert body["name"] == "Ana"
    assert body["role"] == "customer"
    assert body["email_verified"] is False and body["email_verified_at"] is None
    assert body["created_at"].endswith("Z")
    assert "Set-Cookie" not in r.headers  # no session on register

    user = db_session.scalar(select(User).where(User.email == "ana@example.com"))
    assert user is not None and user.signup_organization_id is None
    credential = db_session.get(Credential, user.id)
    assert credential.password_hash.startswith("$argon2id$")
    assert "Str0ngpass" not in credential.password_hash
    token = db_session.scalar(select(VerificationToken).where(VerificationToken.user_id == user.id))
    assert token.purpose == "email_verification" and token.consumed_at is None
    assert len(token.token_hash) == 64
    hours = (token.expires_at - token.created_at).total_seconds() / 3600
    assert 23.9 < hours < 24.1

    outbox = db_session.scalars(select(EmailOutbox)).all()
    assert len(outbox) == 1
    email = outbox[0]
    assert email.template == "email-verification"
    assert email.recipient == "ana@example.com"
    assert email.dedupe_key == f"email-verification:{token.id}"
    assert email.user_id == user.id and email.organization_id is None
    assert email.context["verification_url"].startswith("http://localhost:3000/verify-email?token=")
    assert email.context["expires_in_hours"] == 24
    assert email.context["user_name"] == "Ana"


def test_register_sends_email_send_after_commit(client, db_session, recorded_tasks) -> None:
    client.post(URL, json=BODY)
    assert [name for name, _, _ in recorded_tasks] == ["email.send"]


def test_register_with_org_slug_sets_signup_org(client, db_session) -> None:
    org = make_org()
    r = client.post(URL, json={**BODY, "org_slug": org.slug})
    assert r.status_code == 201
    user = db_session.get(User, r.json["id"])
    assert user.signup_organization_id == org.id
    email = db_session.scalar(select(EmailOutbox))
    assert email.organization_id == org.id


def test_register_unknown_org_slug_is_404(client, db_session) -> None:
    r = client.post(URL, json={**BODY, "org_slug": "nope"})
    assert r.status_code == 404 and error(r)["code"] == "ORG_NOT_FOUND"
    assert count(db_session, User) == 0


def test_register_signups_disabled_is_403(client, db_session) -> None:
    org = make_org(settings__enable_signups=False)
    users_before = count(db_session, User)
    r = client.post(URL, json={**BODY, "org_slug": org.slug})
    assert r.status_code == 403 and error(r)["code"] == "SIGNUPS_DISABLED"
    assert count(db_session, User) == users_before


def test_register_taken_email_is_409_case_insensitive(client, db_session) -> None:
    make_user(email="ana@example.com")
    r = client.post(URL, json=BODY)
    assert r.status_code == 409 and error(r)["code"] == "EMAIL_TAKEN"
    assert count(db_session, EmailOutbox) == 0


def test_blank_org_slug_is_null(client, db_session) -> None:
    r = client.post(URL, json={**BODY, "org_slug": "  "})
    assert r.status_code == 201


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a" * 250 + "@x.io"}, "email"),
        ({"email": None}, "email"),
        ({"password": "weakpass"}, "password"),
        ({"password": "Sh0rt"}, "password"),
        ({"password": "A1" + "a" * 127}, "password"),
        ({"password": 12345678}, "password"),
        ({"password": "Str0ng\x00pass"}, "password"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "Ana\x07"}, "name"),
        ({"org_slug": 5}, "org_slug"),
        ({"role": "platform_owner"}, "role"),  # unknown field
    ],
)
def test_bad_input_is_400_and_writes_nothing(client, db_session, patch, field) -> None:
    r = client.post(URL, json={**BODY, **patch})
    assert r.status_code == 400
    assert error(r)["code"] == "VALIDATION_ERROR"
    assert field in error(r)["details"]
    assert count(db_session, User) == 0
    assert count(db_session, EmailOutbox) == 0


def test_missing_fields(client, db_session) -> None:
    r = client.post(URL, json={})
    assert r.status_code == 400
    assert set(error(r)["details"]) == {"email", "password", "name"}


def test_weak_password_lists_every_broken_rule(client, db_session) -> None:
    r = client.post(URL, json={**BODY, "password": "short"})
    messages = error(r)["details"]["password"]
    assert len(messages) == 3  # length, upper-case, digit


def test_not_json_is_415_and_bad_json_400(client, db_session) -> None:
    r = client.post(URL, data="email=x", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415
    r = client.post(URL, data="{", content_type="application/json")
    assert r.status_code == 400 and error(r)["code"] == "INVALID_JSON"
    r = client.post(URL, data="[1]", content_type="application/json")
    assert r.status_code == 400 and error(r)["code"] == "INVALID_JSON"


def test_oversized_body_is_413(client, db_session) -> None:
    r = client.post(URL, data="{" + " " * (1024 * 1024 + 10) + "}", content_type="application/json")
    assert r.status_code == 413 and error(r)["code"] == "PAYLOAD_TOO_LARGE"


def test_factories_account_is_usable(db_session) -> None:
    user = factories.AccountFactory()
    assert db_session.get(Credential, user.id).password_hash == factories.TEST_PASSWORD_HASH
