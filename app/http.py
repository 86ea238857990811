"""Request plumbing shared by every route: request id, preflight and CORS, body checks, headers, logs,
path ids and their 404s.

Hooks run in the spec's check order (README §3.4): the route match (404/405) and the rate limit
(429, app/ratelimit's hook) come first, then body size (413), Content-Type (415) and JSON
parsing (400 INVALID_JSON); authentication, CSRF and schema checks follow inside the views.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import structlog
from flask import Flask, Request, Response, current_app, g, request
from flask.sessions import SessionInterface
from werkzeug.exceptions import BadRequest

from app import errors, metrics
from app.logging import log_request, mask_path

_REQUEST_LOG = logging.getLogger("codex.request")

F = TypeVar("F", bound=Callable[..., Any])

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and its assets are served by the app (app/system/docs.py): nothing but 'self' is needed.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"
_API_EXPOSE = "X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"


def no_content() -> Response:
    """A 204. It has no body, so it gets no Content-Type either (werkzeug would add text/html)."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


# ---- view options -----------------------------------------------------------------------


def body_limit(max_bytes: int) -> Callable[[Any], Any]:
    """Per-route request body limit (413 above it), instead of ``MAX_CONTENT_LENGTH``."""

    def decorator(func: Any) -> Any:
        func._codex_body_limit = max_bytes
        return func

    return decorator


def raw_body(func: Any) -> Any:
    """Mark a route that reads a non-JSON body itself (multipart, form posts, raw bytes)."""
    func._codex_raw_body = True
    return func


def view_option(name: str) -> Any:
    """An option set by a decorator above on the matched view (method first for MethodViews).

    Memoised per app, endpoint and method: views do not change after start-up, and several hooks
    ask on every request.
    """
    endpoint = request.endpoint
    if endpoint is None:
        return None
    memo: dict[tuple[str, str, str], Any] = current_app.extensions.setdefault("codex_view_options", {})
    key = (endpoint, request.method, name)
    try:
        return memo[key]
    except KeyError:
        pass
    value = _lookupview_option(endpoint, name)
    memo[key] = value
    return value


def _lookupview_option(endpoint: str, name: str) -> Any:
    view = current_app.view_functions.get(endpoint)
    if view is None:
        return None
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        method = getattr(view_class, request.method.lower(), None)
        if method is not None and hasattr(method, name):
            return getattr(method, name)
    return getattr(view, name, None)


# ---- path ids and 404s ------------------------------------------------------------------


def parse_uuid(value: Any) -> uuid.UUID | None:
    """The UUID in ``value`` (hyphenated form, any case), else None. Other spellings are refused."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and _UUID.fullmatch(value):
        return uuid.UUID(value)
    return None


def not_found(code: str) -> errors.NotFound:
    """The 404 for ``code``; identical whether the thing is missing or belongs to someone else."""
    return errors.NotFound(code=code, message=_not_found_message(code))


def _not_found_message(code: str) -> str:
    thing = code.removesuffix("_NOT_FOUND").replace("_", " ").lower()
    thing = {"org": "organization"}.get(thing, thing)
    return f"The {thing} was not found." if thing else "The requested resource was not found."


def parse_path_ids(kwargs: dict[str, Any], path_ids: dict[str, str]) -> None:
    """Replace declared path parameters by UUIDs; an invalid one is a 404 with its code."""
    for name, code in path_ids.items():
        if name not in kwargs:
            continue
        parsed = parse_uuid(kwargs[name])
        if parsed is None:
            raise errors.NotFound(code=code, message=_not_found_message(code))
        kwargs[name] = parsed


def declare_path_ids(func: Any, path_ids: dict[str, str]) -> None:
    """Record on ``func`` the path ids it parses, for a guard above to parse first."""
    # Outer declarations first: /orgs/{org_id}/members/{user_id} checks org_id before user_id.
    func._codex_path_ids = {**path_ids, **getattr(func, "_codex_path_ids", {})}


def declared_path_ids(func: Any) -> dict[str, str]:
    """The path ids declared on ``func`` below (``path_uuid``, ``declare_path_ids``), name -> code."""
    return dict(getattr(func, "_codex_path_ids", {}))


def path_uuid(name: str, code: str) -> Callable[[F], F]:
    """Declare ``name`` as a UUID path parameter (404 ``code`` when malformed). Put it below
    ``@blp.arguments``; ``require_auth`` above parses it before the body is validated."""

    def decorator(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            parse_path_ids(kwargs, {name: code})
            return func(*args, **kwargs)

        declare_path_ids(wrapper, {name: code})
        return cast(F, wrapper)

    return decorator


# ---- hooks ------------------------------------------------------------------------------


def _assign_request_id() -> Response | None:
    req = _current_request()
    request_id = request_id_for(req.environ.get("HTTP_X_REQUEST_ID", ""))  # (the header, without a lookup object)
    request_globals = g._get_current_object()  # (one context lookup for both)
    request_globals.request_id = request_id
    request_globals.request_started = time.perf_counter()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    if req.method == "OPTIONS" and req.url_rule is not None:
        # Preflights skip authentication, CSRF and rate limits (security.md §5).
        return no_content()
    return None


def request_id_for(incoming: str) -> str:
    """The caller's ``X-Request-ID`` when it is a plain token, else a new one."""
    return incoming if incoming and _REQUEST_ID.match(incoming) else new_request_id()


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """``uuid.uuid4().hex`` (16 random bytes, the version and variant bits set), without building
    a ``UUID``: every request that brings no id of its own makes one."""
    return f"{int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"


def _check_body() -> None:
    req = _current_request()
    environ = req.environ
    if not environ.get("CONTENT_LENGTH") and "HTTP_TRANSFER_ENCODING" not in environ:
        return  # no body: nothing to limit or parse (most GETs)
    limit = view_option("_codex_body_limit") or current_app.config["MAX_CONTENT_LENGTH"]
    req.max_content_length = limit
    length = req.content_length
    if length is not None and length > limit:
        raise errors.PayloadTooLarge()
    if req.method not in UNSAFE_METHODS or not req.path.startswith("/api/v1/"):
        return
    if view_option("_codex_raw_body"):
        return
    has_body = bool(length) or req.headers.get("Transfer-Encoding", "").lower() == "chunked"
    if not has_body:
        return
    if req.mimetype != "application/json":
        raise errors.UnsupportedMediaType("The request body must be application/json.")
    try:
        body = req.get_json(silent=False)
    except BadRequest:
        raise errors.InvalidJson() from None
    if not isinstance(body, dict):
        raise errors.InvalidJson()


def _apply_cors(req: Request, response: Response, present: set[str]) -> None:
    headers = response.headers
    path = req.path
    if path.startswith("/api/v1/stream/") or path.startswith("/storage/"):
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Access-Control-Expose-Headers"] = "Content-Length, Content-Range, ETag"
        if req.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = "GET, PUT, OPTIONS"
            headers["Access-Control-Allow-Headers"] = "Content-Type, Range"
            headers["Access-Control-Max-Age"] = "600"
        return
    if not (path.startswith("/api/v1") or path.startswith("/health")):
        return
    if "vary" in present:
        response.vary.add("Origin")  # (merges with what the view set; rare)
    else:
        headers.add("Vary", "Origin")
    for name, value in api_cors_headers(req.headers.get("Origin"), req.method, current_app.config["CORS_ORIGINS"]):
        headers[name] = value


def api_cors_headers(origin: str | None, method: str, allowed: Collection[str]) -> list[tuple[str, str]]:
    """The CORS headers of an ``/api/v1`` answer to ``origin`` (none unless it is ``allowed``)."""
    if not origin or origin not in allowed:
        return []
    headers = [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Expose-Headers", _API_EXPOSE),
    ]
    if method == "OPTIONS":
        headers += [
            ("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            ("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Request-ID"),
            ("Access-Control-Max-Age", "600"),
        ]
    return headers


def plain_api_headers(
    request_id: str, origin: str | None, method: str, config: Mapping[str, Any], *, cache_control: bool = True
) -> list[tuple[str, str]]:
    """What ``_finish`` adds to the answer of an ``/api/v1`` route (other than the docs and the
    ``/api/v1/stream/`` proxy) that set no headers besides its Content-Type and Content-Length
    (``cache_control=False``: and its own Cache-Control): for the fast paths (app/speed/answer.py),
    which answer outside Flask (their tests compare the two)."""
    headers = [("X-Request-ID", request_id), *_SECURITY_HEADERS, ("Content-Security-Policy", API_CSP)]
    if config["APP_ENV"] == "production":
        headers.append(("Strict-Transport-Security", HSTS))
    if cache_control:
        headers.append(("Cache-Control", "no-store"))
    headers.append(("Vary", "Origin"))
    return headers + api_cors_headers(origin, method, config["CORS_ORIGINS"])


def _current_request() -> Request:
    """The request object itself. Every attribute read through the ``request`` proxy is a context
    lookup, and the after-request hook reads about fifteen."""
    return request._get_current_object()  # type: ignore[attr-defined]


def _finish(response: Response) -> Response:
    req = _current_request()
    request_globals = g._get_current_object()  # (as above)
    headers = response.headers
    present = {key.lower() for key, _ in headers.items()}  # one pass instead of a scan per header
    request_id = request_globals.get("request_id") or new_request_id()
    # ``add`` appends; every name added here was checked absent (``headers[name] = ...`` rescans).
    if "x-request-id" in present:
        headers["X-Request-ID"] = request_id
    else:
        headers.add("X-Request-ID", request_id)
    for (name, value), lower in zip(_SECURITY_HEADERS, _SECURITY_NAMES, strict=True):
        if lower not in present:
            headers.add(name, value)
    path = req.path
    if path == "/api/v1/docs" or path.startswith("/api/v1/docs/"):
        headers["Content-Security-Policy"] = DOCS_CSP
    elif "content-security-policy" not in present:
        headers.add("Content-Security-Policy", API_CSP)
    if current_app.config["APP_ENV"] == "production":
        headers["Strict-Transport-Security"] = HSTS
    if path.startswith("/api/v1") and "cache-control" not in present:
        headers.add("Cache-Control", "no-store")
    _apply_cors(req, response, present)
    _observe(req, request_globals, response)
    return response


_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"),
)
_SECURITY_NAMES = tuple(name.lower() for name, _ in _SECURITY_HEADERS)


def _observe(req: Request, request_globals: Any, response: Response) -> None:
    started = request_globals.get("request_started")
    user_id = request_globals.get("user_id")
    record_answer(
        req.method,
        req.url_rule.rule if req.url_rule is not None else "<unmatched>",
        req.path,
        response.status_code,
        time.perf_counter() - started if started else 0.0,
        str(user_id) if user_id else None,
        req.remote_addr,
    )


def request_log_enabled() -> bool:
    """Whether request log lines are kept (INFO): callers skip building what only the line needs."""
    return _REQUEST_LOG.isEnabledFor(logging.INFO)


def record_answer(
    method: str, endpoint: str, path: str, status: int, duration: float, user_id: str | None, ip: str | None
) -> None:
    """The request metric and the request log line (INFO) of one answer; app/access/fast_path.py
    records its answers with it too."""
    metrics.observe_request(method, endpoint, status, duration)
    if path.startswith("/health") or path == "/metrics" or not _REQUEST_LOG.isEnabledFor(logging.INFO):
        return  # (the level check first spares building the fields of a line nobody keeps)
    log_request(method, mask_path(path), status, round(duration * 1000, 2), user_id, ip)


def register_request_id(app: Flask) -> None:
    """Must run before the rate limiter's hook so 429s carry the id and preflights skip limits."""
    app.before_request(_assign_request_id)


def register_request_hooks(app: Flask) -> None:
    app.before_request(_check_body)
    app.after_request(_finish)
    # Codex authenticates with its own session table; Flask's signed-cookie session is never
    # used, so do not parse and re-sign a cookie on every request.
    app.session_interface = _NoSessions()


class _NoSessions(SessionInterface):
    def open_session(self, app: Flask, request: Any) -> None:
        return None

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


# ---- CSRF (called by the auth layer once it knows the caller used the cookie) -----------------


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def check_csrf() -> None:
    """Cookie-authenticated unsafe requests need a trusted Origin, or Referer (security.md §1)."""
    if request.method not in UNSAFE_METHODS:
        return
    trusted = set(current_app.config["CORS_ORIGINS"])
    public = origin_of(current_app.config["PUBLIC_BASE_URL"])
    if public:
        trusted.add(public)
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        origin = origin_of(referer) if referer else None
    if not origin or origin == "null" or origin not in trusted:
        raise errors.CsrfFailed()


def plain_headers(request_id: str, config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What ``_finish`` adds to the answer of a route outside ``/api/v1``, ``/health`` and
    ``/storage`` that set no headers besides its Content-Type and Content-Length (the webhook):
    for app/commerce/webhook_fast_path.py, which answers outside Flask (its tests compare the two)."""
    headers = [("X-Request-ID", request_id), *_SECURITY_HEADERS, ("Content-Security-Policy", API_CSP)]
    if config["APP_ENV"] == "production":
        headers.append(("Strict-Transport-Security", HSTS))
    return headers
