"""A probe app: the real factory plus a test-only blueprint that exercises the HTTP plumbing."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import pytest
from flask import Flask
from flask.views import MethodView

from app.api import Blueprint, error_responses
from app.ratelimit import route_limit
from app.schemas import PageArgsSchema, Str, StrictBool, StrictInt, page_envelope
from tests.conftest import clear_redis


class ProbeCreateSchema(ma.Schema):
    name = Str(required=True, validate=ma.validate.Length(min=1, max=5))
    count = StrictInt(load_default=1, validate=ma.validate.Range(min=1, max=10))
    tags = ma.fields.List(Str(validate=ma.validate.Length(max=3)), load_default=list)
    note = Str(allow_none=True, blank_as_none=True, load_default=None, multiline=True)


class ProbeSchema(ma.Schema):
    name = ma.fields.String()
    count = ma.fields.Integer()
    tags = ma.fields.List(ma.fields.String())
    note = ma.fields.String(allow_none=True)


class ProbeQuerySchema(PageArgsSchema):
    flag = StrictBool(load_default=False)


def build_probe_blueprint() -> Blueprint:
    blp = Blueprint("probe", __name__, url_prefix="/api/v1/probe")

    @blp.route("")
    class Probe(MethodView):
        @blp.arguments(ProbeCreateSchema)
        @blp.response(201, ProbeSchema)
        @error_responses(blp, 400, 413, 415)
        def post(self, data: dict[str, Any]) -> dict[str, Any]:
            """Echo a validated body."""
            return data

        @blp.arguments(ProbeQuerySchema, location="query")
        @blp.response(200)
        def get(self, args: dict[str, Any]) -> dict[str, Any]:
            """Echo paging."""
            return {**page_envelope([], args["page"], args["per_page"], 0), "flag": args["flag"]}

    @blp.route("/boom")
    class Boom(MethodView):
        def get(self) -> None:
            """Fail unexpectedly."""
            raise RuntimeError("secret detail that must not leak")

    @blp.route("/limited")
    class Limited(MethodView):
        @route_limit("2 per minute", key="ip")
        def get(self) -> dict[str, bool]:
            """A tightly limited route."""
            return {"ok": True}

    return blp


@pytest.fixture(scope="module")
def probe_app(app_factory: Any) -> Flask:
    flask_app: Flask = app_factory(RATELIMIT_ENABLED=True, CORS_ORIGINS=["http://localhost:3000"])
    flask_app.extensions["api"].register_blueprint(build_probe_blueprint())
    return flask_app


@pytest.fixture()
def probe(probe_app: Flask, redis: Any) -> Any:
    clear_redis(probe_app.extensions["redis"])
    return probe_app.test_client()
