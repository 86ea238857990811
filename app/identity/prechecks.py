"""Route checks that must run before the request body is looked at (README §3.4).

Route rate limits (``route_limit``, ``route_limits``: app/ratelimit, re-exported here) are
checked by the limiter's hook, before the body hooks (413/415/INVALID_JSON). ``multipart`` does
the same for upload routes that opt out of the JSON checks with ``raw_body``:
body size (413) and then ``multipart/form-data`` (415), still before authentication; ``body_type``
likewise for a raw body of another type (captions' ``text/vtt``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request

from app import errors
from app.http import UNSAFE_METHODS, view_option
from app.ratelimit import route_limit, route_limits

F = TypeVar("F", bound=Callable[..., Any])

# The rate limits are declared here too, for the routes that import them from here.
__all__ = ["before_request", "multipart", "route_limit", "route_limits"]


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
