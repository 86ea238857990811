"""The one error shape: ``{"error": {"code", "message", "details"}}`` (spec README §3.2).

Services raise ``AppError`` subclasses; the handler in ``register_error_handlers`` turns them,
every werkzeug ``HTTPException`` and every unexpected exception into that shape.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from app.logging import mask_path

log = structlog.get_logger(__name__)


class AppError(Exception):
    """A domain error that carries its HTTP status and spec error code."""

    status = 400
    code = "VALIDATION_ERROR"
    message = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)


class ValidationError(AppError):
    status, code, message = 400, "VALIDATION_ERROR", "The request is invalid."

    @classmethod
    def field(cls, name: str, message: str) -> ValidationError:
        return cls(details={name: [message]})


class InvalidJson(AppError):
    status, code, message = 400, "INVALID_JSON", "The request body is not a valid JSON object."


class Unauthenticated(AppError):
    status, code, message = 401, "UNAUTHENTICATED", "Authentication is required."


class Forbidden(AppError):
    status, code, message = 403, "FORBIDDEN", "You are not allowed to do this."


class CsrfFailed(AppError):
    status, code, message = 403, "CSRF_FAILED", "The request origin is not trusted."


class InvalidSignedUrl(AppError):
    status, code, message = 403, "INVALID_SIGNED_URL", "The signed URL is invalid or has expired."


class NotFound(AppError):
    status, code, message = 404, "NOT_FOUND", "The requested resource was not found."


class Conflict(AppError):
    status, code, message = 409, "STATE_CONFLICT", "The action is not allowed in the current state."


class PayloadTooLarge(AppError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "The request body is too large."


class UnsupportedMediaType(AppError):
    status, code, message = 415, "UNSUPPORTED_MEDIA_TYPE", "The request content type is not supported."


class Unprocessable(AppError):
    status, code, message = 422, "STATE_CONFLICT", "The request cannot be processed."


class RateLimited(AppError):
    status, code, message = 429, "RATE_LIMITED", "Too many requests. Try again later."


class ServiceUnavailable(AppError):
    status, code, message = 503, "SERVICE_UNAVAILABLE", "A required service is unavailable."

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(message, details={"dependency": dependency})


# Status -> (code, message) for errors Flask/werkzeug raise on their own.
_HTTP_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("VALIDATION_ERROR", "The request is invalid."),
    401: ("UNAUTHENTICATED", "Authentication is required."),
    403: ("FORBIDDEN", "You are not allowed to do this."),
    404: ("NOT_FOUND", "The requested resource was not found."),
    405: ("METHOD_NOT_ALLOWED", "The method is not allowed for this resource."),
    413: ("PAYLOAD_TOO_LARGE", "The request body is too large."),
    415: ("UNSUPPORTED_MEDIA_TYPE", "The request content type is not supported."),
    416: ("NOT_FOUND", "The requested range cannot be satisfied."),
    429: ("RATE_LIMITED", "Too many requests. Try again later."),
    503: ("SERVICE_UNAVAILABLE", "A required service is unavailable."),
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested messages into ``{"field.sub": ["msg"]}`` (spec README §3.2)."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.update(flatten_messages(value, name))
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                out.setdefault(name, []).extend(value)
            else:
                out.setdefault(name, []).append(str(value))
    elif isinstance(messages, list):
        out.setdefault(prefix or "_schema", []).extend(str(m) for m in messages)
    else:
        out.setdefault(prefix or "_schema", []).append(str(messages))
    return out


def _validation_details(data: dict[str, Any]) -> dict[str, list[str]]:
    # webargs nests messages by location ({"json": {...}, "query": {...}}); the spec wants field names.
    messages = data.get("messages") or data.get("errors") or {}
    merged: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for location, inner in messages.items():
            if location in {"json", "query", "querystring", "form", "files", "view_args", "path"}:
                merged.update(flatten_messages(inner))
            else:
                merged.update(flatten_messages({location: inner}))
    return merged


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if status >= 500:
        return handle_unexpected(error)
    code, message = _HTTP_DEFAULTS.get(status, ("VALIDATION_ERROR", error.description or "Bad request."))
    details: dict[str, Any] = {}
    headers: dict[str, str] = {}
    data = getattr(error, "data", None) or {}
    if status == 422 or (status == 400 and "messages" in data):
        # flask-smorest/webargs validation: the spec wants 400 with field details, never 422.
        status, code, message = 400, "VALIDATION_ERROR", "The request is invalid."
        details = _validation_details(data)
    if status == 405:
        valid = getattr(error, "valid_methods", None) or []
        if valid:
            headers["Allow"] = ", ".join(sorted(valid))
    if status == 429:
        retry_after = getattr(g, "rate_limit_retry_after", None) or 1
        details = {"retry_after": retry_after}
        headers["Retry-After"] = str(retry_after)
    return error_response(status, code, message, details, headers)


def handle_app_error(error: AppError) -> Response:
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def handle_unexpected(error: BaseException) -> Response:
    original = getattr(error, "original_exception", None) or error
    request_id = getattr(g, "request_id", None)
    log.error("request.unhandled_exception", exc_info=original, path=mask_path(request.path))  # (no tokens)
    return error_response(500, "INTERNAL_ERROR", "An internal error occurred.", {"request_id": request_id})


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(AppError, handle_app_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
