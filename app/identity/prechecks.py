"""Route checks that must run before the request body is looked at (README §3.4).

flask-limiter evaluates a ``@limiter.limit`` on a view only when the view is called, i.e. after
the body hooks (413/415/INVALID_JSON), and attempts rejected there would not count. ``route_limit``
instead records the limit on the view, and ``before_request`` (registered between the limiter's
hook and ``app.http``'s body hooks) evaluates it first, through flask-limiter itself (same
storage, headers, ``on_breach`` body and ``Retry-After``).

``multipart`` does the same for upload routes that opt out of the JSON checks with ``raw_body``:
body size (413) and then ``multipart/form-data`` (415), still before authentication; ``body_type``
likewise for a raw body of another type (captions' ``text/vtt``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from flask import current_app, request

from app import errors
from app.extensions import ip_key, limiter, rate_limit_key
from app.http import UNSAFE_METHODS, view_option

F = TypeVar("F", bound=Callable[..., Any])

_KEYS: dict[str, Callable[[], str]] = {"ip": ip_key, "user": rate_limit_key}

# "ip": client IP; "user": the user when signed in, else the IP; or a key function of its own.
Key = Literal["ip", "user"] | Callable[[], str]


def route_limit(limit: str, *, key: Key) -> Callable[[F], F]:
    """Rate-limit this route method (security.md §3); ``key``: client IP, or user when signed in."""
    return route_limits((limit, key))


def route_limits(*limits: tuple[str, Key]) -> Callable[[F], F]:
    """Several limits on one route method, all of which apply (e.g. login: per IP and email, and per IP).

    They are checked together, in one flask-limiter evaluation (one Redis call per limit: the
    moving-window storage of ``limits`` takes one key per call), ordered by window unit and then
    as given, stopping at the first one exceeded, whose 429 is answered; when none is, the
    X-RateLimit-* headers describe the first. So list the tightest first.
    """

    def decorator(func: F) -> F:
        def check() -> None:
            return None

        # flask-limiter files limits under the callable's qualified name: make it unique per route.
        described = ", ".join(f"{limit} by {_key_name(key)}" for limit, key in limits)
        check.__module__ = func.__module__
        check.__name__ = f"{func.__name__}__limit"
        check.__qualname__ = f"{func.__qualname__}.<limit {described}>"
        checker: Callable[[], None] = check
        # Stacked: only the innermost wrapper evaluates, and it evaluates every limit filed under
        # the name, in the order they were added (the first given is innermost).
        for limit, key in limits:
            key_func = _KEYS[key] if isinstance(key, str) else key
            checker = limiter.limit(limit, key_func=key_func, per_method=True)(checker)
        func._codex_rate_limits = [*getattr(func, "_codex_rate_limits", []), checker]  # type: ignore[attr-defined]
        return func

    return decorator


def _key_name(key: Key) -> str:
    return key if isinstance(key, str) else key.__name__


def multipart(func: F) -> F:
    """The route takes ``multipart/form-data`` (415 otherwise); use with ``raw_body``/``body_limit``."""
    func._codex_multipart = True  # type: ignore[attr-defined]
    return func


def body_type(mimetype: str) -> Callable[[F], F]:
    """The route takes a raw body of ``mimetype`` (415 otherwise; a ``charset`` other than UTF-8
    too); use with ``raw_body``/``body_limit``."""

    def decorator(func: F) -> F:
        func._codex_body_type = mimetype  # type: ignore[attr-defined]
        return func

    return decorator


def before_request() -> None:
    if request.method == "OPTIONS":
        return
    if current_app.config["CODEX_RATELIMIT_ENABLED"]:  # (off: every checker would pass anyway)
        for checker in view_option("_codex_rate_limits") or ():
            checker()
    if request.method in UNSAFE_METHODS and view_option("_codex_multipart"):
        limit = view_option("_codex_body_limit") or current_app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise errors.PayloadTooLarge()
        if request.mimetype != "multipart/form-data":
            raise errors.UnsupportedMediaType("The request body must be multipart/form-data.")
    expected = view_option("_codex_body_type") if request.method in UNSAFE_METHODS else None
    if expected:
        limit = view_option("_codex_body_limit") or current_app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise errors.PayloadTooLarge()
        charset = request.mimetype_params.get("charset", "utf-8").lower()
        if request.mimetype != expected or charset not in ("utf-8", "utf8"):
            raise errors.UnsupportedMediaType(f"The request body must be {expected} (UTF-8).")
