"""``/api/v1/auth`` routes (api.md §3): parse -> service -> commit -> respond."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
import uuid
from typing import Any

from flask import Response, current_app, jsonify, request
from flask.views import MethodView

from app import db, errors
from app.api import Blueprint, error_responses
from app.http import path_uuid, view_option
from app.identity import me_cache, service, sessions
from app.identity.guards import authenticate, current_principal, require_auth, with_session_read
from app.identity.prechecks import route_limit, route_limits
from app.identity.schemas import (
    EmailRequestSchema,
    LoginResponseSchema,
    LoginSchema,
    MeSchema,
    PasswordChangeSchema,
    PasswordResetConfirmSchema,
    RegisterSchema,
    SessionListArgsSchema,
    SessionSchema,
    UserSchema,
    VerifyEmailSchema,
)
from app.ratelimit import ip_key
from app.schemas import EmptySchema, list_schema

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts, login and sessions")

# Every endpoint: 429, 500, 503. JSON bodies add 400/413/415; signed-in endpoints 401/403 (CSRF).
COMMON = (429, 500, 503)
JSON_BODY = (400, 413, 415)
SIGNED_IN = (401, 403)


def user_view(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "email_verified": user.email_verified_at is not None,
        "email_verified_at": user.email_verified_at,
        "created_at": user.created_at,
    }


def _empty(status: int) -> Response:
    return Response(status=status)


@blp.route("/register")
class Register(MethodView):
    @blp.response(201, UserSchema)
    @error_responses(blp, *JSON_BODY, 403, 404, 409, *COMMON)
    @route_limit("3 per hour", key="ip")
    @blp.arguments(RegisterSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Create an account (sends a verification email)"""
        user = service.register(db.session, **data)
        db.session.commit()
        return user_view(user)


def login_email_key() -> str:
    """Rate-limit key of a login attempt: client IP and submitted email (security.md §3).

    The email is normalised as the login schema does (NFC, trimmed, lower-case), so case or
    spaces do not buy new attempts, and is only present as a keyed hash (HMAC with SECRET_KEY):
    keys are visible in Redis. Route limits run before the body
    checks (prechecks), so the body may still be anything here: what is not a JSON object with a
    string ``email`` within the size limit counts under the empty email (the body checks then
    reject it).
    """
    email = _submitted_email()
    secret = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(secret, f"codex-ratelimit:login:{email}".encode(), hashlib.sha256).hexdigest()
    return f"{ip_key()}:email:{digest[:32]}"


def _submitted_email() -> str:
    length = request.content_length
    limit = view_option("_codex_body_limit") or current_app.config["MAX_CONTENT_LENGTH"]
    if request.mimetype != "application/json" or length is None or length > limit:
        return ""
    body = request.get_json(silent=True)  # cached for the body checks and the schema
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str):
        return ""
    return unicodedata.normalize("NFC", email).strip().lower()


@blp.route("/login")
class Login(MethodView):
    @blp.response(200, LoginResponseSchema)
    @error_responses(blp, *JSON_BODY, 401, *COMMON)
    # Both apply; the pair's limit comes first, so its figures are the headers' until one breaks.
    @route_limits(("5 per 15 minutes", login_email_key), ("100 per 15 minutes", "ip"))
    @blp.arguments(LoginSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Log in: returns a session token and sets the session cookie"""
        result = service.login(
            db.session,
            email=data["email"],
            password=data["password"],
            remember_me=data["remember_me"],
            ip=request.remote_addr,
            user_agent=request.headers.get("User-Agent"),
        )
        db.session.commit()
        body = LoginResponseSchema().dump(
            {"token": result.token, "expires_at": result.session.expires_at, "user": user_view(result.user)}
        )
        response = jsonify(body)
        sessions.set_session_cookie(response, result.token, result.session.remember_me)
        return response


@blp.route("/logout")
class Logout(MethodView):
    @blp.response(204)
    @error_responses(blp, 400, 403, 413, 415, *COMMON)
    @blp.arguments(EmptySchema)
    def post(self, _data: dict[str, Any]) -> Any:
        """Log out: revoke the presented session (if any) and clear the cookie"""
        principal = sessions.resolve()
        if principal is not None:
            if principal.via == "cookie":
                authenticate()  # CSRF: a foreign page must not end the session
            service.end_session(db.session, principal.user_id, principal.session_id)
            db.session.commit()
            sessions.mark_session_ended()
        response = _empty(204)
        sessions.clear_session_cookie(response)
        return response


@blp.route("/me")
class Me(MethodView):
    @blp.response(200, MeSchema)
    @error_responses(blp, 401, *COMMON)
    @require_auth
    @with_session_read(me_cache.session_keys)  # session + cached body: one Redis round trip
    def get(self) -> Any:
        """The signed-in user with its organization memberships"""
        principal = current_principal()
        body = service.me_body(db.session, principal.user_id, principal.prefetched)  # cached JSON (hot path)
        if body is None:
            raise errors.Unauthenticated()
        return current_app.response_class(body, mimetype="application/json")


@blp.route("/verify-email")
class VerifyEmail(MethodView):
    @blp.response(200, UserSchema)
    @error_responses(blp, *JSON_BODY, *COMMON)
    @route_limit("10 per 15 minutes", key="ip")
    @blp.arguments(VerifyEmailSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Verify an email address with the emailed token"""
        user = service.verify_email(db.session, data["token"])
        db.session.commit()
        return user_view(user)


@blp.route("/resend-verification")
class ResendVerification(MethodView):
    @blp.response(202)
    @error_responses(blp, *JSON_BODY, *COMMON)
    @route_limit("5 per hour", key="ip")
    @blp.arguments(EmailRequestSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Send a new verification email (always 202)"""
        service.resend_verification(db.session, data["email"])
        db.session.commit()
        return _empty(202)


@blp.route("/password-reset")
class PasswordReset(MethodView):
    @blp.response(202)
    @error_responses(blp, *JSON_BODY, *COMMON)
    @route_limit("3 per hour", key="ip")
    @blp.arguments(EmailRequestSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Email a password-reset link (always 202)"""
        service.request_password_reset(db.session, data["email"])
        db.session.commit()
        return _empty(202)


@blp.route("/password-reset/confirm")
class PasswordResetConfirm(MethodView):
    @blp.response(204)
    @error_responses(blp, *JSON_BODY, *COMMON)
    @route_limit("10 per 15 minutes", key="ip")
    @blp.arguments(PasswordResetConfirmSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Set a new password with a reset token (revokes every session)"""
        service.confirm_password_reset(db.session, data["token"], data["password"])
        db.session.commit()
        return _empty(204)


@blp.route("/password")
class Password(MethodView):
    @blp.response(204)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, *COMMON)
    @route_limit("5 per 15 minutes", key="user")
    @require_auth
    @blp.arguments(PasswordChangeSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Change the password (revokes every other session)"""
        principal = current_principal()
        service.change_password(
            db.session, principal.user_id, principal.session_id, data["current_password"], data["new_password"]
        )
        db.session.commit()
        return _empty(204)


@blp.route("/sessions")
class Sessions(MethodView):
    @blp.response(200, list_schema(SessionSchema))
    @error_responses(blp, 400, 401, *COMMON)
    @require_auth
    @blp.arguments(SessionListArgsSchema, location="query")
    def get(self, args: dict[str, Any]) -> Any:
        """List the caller's active sessions (most recently used first)"""
        principal = current_principal()
        envelope = service.list_sessions(db.session, principal.user_id, args["page"], args["per_page"])
        envelope["items"] = [session_view(row, principal.session_id) for row in envelope["items"]]
        return envelope


def session_view(row: Any, current_id: uuid.UUID) -> dict[str, Any]:
    return {
        "id": row.id,
        "remember_me": row.remember_me,
        "created_at": row.created_at,
        "last_seen_at": row.last_seen_at,
        "expires_at": row.expires_at,
        "ip_address": row.ip_address,
        "user_agent": row.user_agent,
        "current": row.id == current_id,
    }


@blp.route("/sessions/<session_id>")
class SessionItem(MethodView):
    @blp.response(204)
    @error_responses(blp, 400, 413, 415, *SIGNED_IN, 404, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @path_uuid("session_id", "SESSION_NOT_FOUND")
    def delete(self, _data: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Revoke one of the caller's sessions"""
        principal = current_principal()
        service.revoke_session(db.session, principal.user_id, session_id)
        db.session.commit()
        response = _empty(204)
        if session_id == principal.session_id:
            sessions.mark_session_ended()
            sessions.clear_session_cookie(response)
        return response
