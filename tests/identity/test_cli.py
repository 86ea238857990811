"""flask --app app codex create-owner (README §1)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.identity import passwords
from app.identity.models import AuthSession, Credential, User
from app.identity.sessions import hash_token
from tests.identity.helpers import auth, make_user, signed_in


def run(app: Any, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["codex", "create-owner", *args])


def test_creates_a_verified_platform_owner(app, client, db_session) -> None:
    result = run(app, "--email", "Root@Example.com", "--password", "Sup3rsecret", "--name", "Root")
    assert result.exit_code == 0, result.output
    assert "created platform owner" in result.output
    db_session.expire_all()
    user = db_session.scalar(select(User).where(User.email == "root@example.com"))
    assert user.role == "platform_owner" and user.email_verified_at is not None and user.name == "Root"
    assert passwords.verify_password(db_session.get(Credential, user.id).password_hash, "Sup3rsecret")
    r = client.post("/api/v1/auth/login", json={"email": "root@example.com", "password": "Sup3rsecret"})
    assert r.status_code == 200 and r.json["user"]["role"] == "platform_owner"


def test_is_idempotent(app, db_session) -> None:
    assert run(app, "--email", "root@example.com", "--password", "Sup3rsecret").exit_code == 0
    result = run(app, "--email", "root@example.com", "--password", "Sup3rsecret")
    assert result.exit_code == 0 and "nothing changed" in result.output
    db_session.expire_all()
    assert len(db_session.scalars(select(User)).all()) == 1


def test_promotes_an_existing_user_and_revokes_its_sessions(app, client, db_session, redis) -> None:
    user = make_user(email="ana@example.com", email_verified_at=datetime.now(UTC))
    token = signed_in(user)
    assert client.get("/api/v1/auth/me", headers=auth(token)).json["role"] == "customer"
    assert redis.exists(f"sess:{hash_token(token)}")
    result = run(app, "--email", "ana@example.com")
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output
    assert client.get("/api/v1/auth/me", headers=auth(token)).status_code == 401
    db_session.expire_all()
    assert db_session.get(User, user.id).role == "platform_owner"
    assert db_session.scalar(select(AuthSession)).revoked_at is not None


def test_refuses_to_promote_an_account_whose_email_is_not_verified(app, client, db_session, redis) -> None:
    # Anyone may register any address: an unverified account proves nothing about the mailbox
    # (security.md §1), so it must not become platform owner because of its address.
    user = make_user(email="root@example.com")
    token = signed_in(user)
    result = run(app, "--email", "Root@Example.com", "--password", "Sup3rsecret")
    assert result.exit_code == 1
    assert "not verified" in result.output and "root@example.com" in result.output
    db_session.expire_all()
    assert db_session.get(User, user.id).role == "customer"
    assert db_session.scalar(select(AuthSession)).revoked_at is None
    assert client.get("/api/v1/auth/me", headers=auth(token)).json["role"] == "customer"


def test_weak_password_or_bad_email_fails(app, db_session) -> None:
    result = run(app, "--email", "root@example.com", "--password", "weak")
    assert result.exit_code != 0 and "password" in result.output.lower()
    result = run(app, "--email", "not-an-email", "--password", "Sup3rsecret")
    assert result.exit_code != 0
    db_session.expire_all()
    assert db_session.scalars(select(User)).all() == []
