"""Guards: the decorators and accessors views use to require and read the caller (security.md §1).

Put ``require_auth`` *above* ``@blp.arguments`` so authentication (401) and CSRF (403) come
before schema errors (400). Path ids declared with ``http.path_uuid`` (or by
``orgs.access.require_org_role``) below it are parsed right after CSRF: an invalid UUID is a 404
with the resource's code, before the body is validated. The session behind the caller is
app/identity/sessions.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from app import db, errors
from app.http import check_csrf, declared_path_ids, parse_path_ids
from app.identity.models import User
from app.identity.sessions import SESSION_KEYS_OPTION, KeysFor, Principal, resolve

F = TypeVar("F", bound=Callable[..., Any])


def current_principal() -> Principal:
    """The authenticated caller; only valid below a guard."""
    principal = resolve()
    if principal is None:
        raise errors.Unauthenticated()
    return principal


def current_user() -> User:
    """The caller's user row (loaded from Postgres)."""
    principal = current_principal()
    user = db.session.get(User, principal.user_id)
    if user is None:
        raise errors.Unauthenticated()
    return user


def authenticate(keys_for: KeysFor | None = None) -> Principal:
    """401 without a valid session; CSRF check when the cookie authenticated an unsafe request."""
    principal = resolve(keys_for)
    if principal is None:
        raise errors.Unauthenticated()
    if principal.via == "cookie":
        check_csrf()
    return principal


def require_auth(func: F) -> F:
    """401 ``UNAUTHENTICATED`` without a valid session; 403 ``CSRF_FAILED`` for a cookie-authenticated
    unsafe request from an untrusted origin; then 404 for malformed declared path ids."""
    path_ids = declared_path_ids(func)
    keys_for: KeysFor | None = getattr(func, SESSION_KEYS_OPTION, None)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        authenticate(keys_for)
        parse_path_ids(kwargs, path_ids)
        return func(*args, **kwargs)

    return cast(F, wrapper)


def with_session_read(keys_for: KeysFor) -> Callable[[F], F]:
    """Put below ``require_auth``: the session cache read also GETs ``keys_for(path arguments)``
    (``{user}`` = the session's user id) in the same Redis round trip; the view finds them on
    its principal, ``current_principal().prefetched`` (``GET /auth/me``: its cached body; the
    stream: the access entry)."""

    def decorator(func: F) -> F:
        setattr(func, SESSION_KEYS_OPTION, keys_for)
        return func

    return decorator


def require_verified_email(func: F) -> F:
    """403 ``EMAIL_NOT_VERIFIED`` unless the caller's address is verified (checkout)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        authenticate()
        if not current_user().email_verified:
            raise errors.Forbidden("Verify your email address first.", code="EMAIL_NOT_VERIFIED")
        return func(*args, **kwargs)

    return cast(F, wrapper)


def require_platform_owner(func: F) -> F:
    """403 ``FORBIDDEN`` unless the caller is a platform_owner (Stripe events, ``all=true`` lists)."""
    path_ids = declared_path_ids(func)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        principal = authenticate()
        parse_path_ids(kwargs, path_ids)
        if not principal.is_platform_owner:
            raise errors.Forbidden()
        return func(*args, **kwargs)

    return cast(F, wrapper)
