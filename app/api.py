"""flask-smorest glue: our ``Api`` (one error shape), ``Blueprint`` (strict argument parser).

Validation errors become 400 ``VALIDATION_ERROR`` with ``details = {field: [messages]}``; unknown
and repeated query parameters are rejected like unknown body fields (spec README §3.1).
"""

from __future__ import annotations

from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Flask
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from app import errors


class ErrorDetailSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"example": "VALIDATION_ERROR"})
    message = ma.fields.String(required=True)
    details = ma.fields.Dict(required=True)


class ErrorSchema(ma.Schema):
    """The spec's error body: ``{"error": {"code", "message", "details"}}``."""

    error = ma.fields.Nested(ErrorDetailSchema, required=True)


class Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400
    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }

    def load_querystring(self, req: Any, schema: ma.Schema) -> Any:
        repeated = {
            key: ["Repeated parameter."]
            for key in req.args
            if len(req.args.getlist(key)) > 1 and not isinstance(schema.fields.get(key), ma.fields.List)
        }
        if repeated:
            raise ma.ValidationError(repeated)
        return super().load_querystring(req, schema)

    def _handle_invalid_json_error(self, error: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        raise errors.InvalidJson()


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        return errors.handle_http_exception(error)


def api_settings(app: Flask) -> dict[str, Any]:
    docs = app.config["API_DOCS_ENABLED"]
    return {
        "API_TITLE": "Codex API",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1" if docs else None,
        "OPENAPI_JSON_PATH": "openapi.json",
        # Swagger UI at /api/v1/docs is app.system.docs (served offline, no inline script), not flask-smorest's page.
        "OPENAPI_SWAGGER_UI_PATH": None,
    }


def error_responses(blp: Blueprint, *statuses: int) -> Any:
    """Declare several error statuses at once (every non-2xx must be in the OpenAPI document)."""

    def decorator(func: Any) -> Any:
        # alt_response documents by wrapping; a wrapper per status would run on every request, so
        # the chain is built only to collect the document, which then goes on ``func`` itself.
        documented = func
        for status in statuses:
            documented = blp.alt_response(status, schema=ErrorSchema, description=_DESCRIPTIONS.get(status))(documented)
        func._apidoc = documented._apidoc
        return func

    return decorator


_DESCRIPTIONS = {
    400: "Invalid input (VALIDATION_ERROR, INVALID_JSON, …)",
    401: "Not signed in (UNAUTHENTICATED)",
    403: "Not allowed (FORBIDDEN, CSRF_FAILED, …)",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Body too large (PAYLOAD_TOO_LARGE)",
    415: "Wrong Content-Type (UNSUPPORTED_MEDIA_TYPE)",
    422: "Business rule not met",
    429: "Rate limited (RATE_LIMITED)",
    503: "A dependency is unavailable (SERVICE_UNAVAILABLE)",
}
