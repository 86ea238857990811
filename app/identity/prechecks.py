"""Route checks that must run before the request body is looked at (README §3.4).

Route rate limits (``route_limit``, ``route_limits``: app/ratelimit, re-exported here) are
checked by the limiter's hook, before the body hooks (413/415/INVALID_JSON). ``multipart`` does
the same for upload routes that opt out of the JSON checks with ``raw_body``:
body size (413) and then ``multipart/form-data`` (415), still before authentication.
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


def before_request() -> None:
    if request.method == "OPTIONS":
        return
    if request.method in UNSAFE_METHODS and view_option("_codex_multipart"):
        limit = view_option("_codex_body_limit") or current_app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise errors.PayloadTooLarge()
        if request.mimetype != "multipart/form-data":
            raise errors.UnsupportedMediaType("The request body must be multipart/form-data.")
