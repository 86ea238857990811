"""Public catalogue routes (api.md §8), no auth; responses are cacheable for 60 s."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView

from app import db
from app.api import Blueprint, error_responses
from app.catalog import service
from app.catalog.schemas import CatalogDetailSchema, CatalogItemSchema, CatalogListArgsSchema
from app.content.service import CONTENT_NOT_FOUND
from app.http import not_found, parse_uuid
from app.schemas import list_schema

blp = Blueprint("catalog", __name__, url_prefix="/api/v1", description="Public catalogue")

COMMON = (429, 500, 503)
CACHE_CONTROL = "public, max-age=60"
# One instance for every request: given the class, webargs would build a schema per request (a
# fifth of a warm list's time in the view).
LIST_ARGS = CatalogListArgsSchema()
CACHE_HEADER = {"Cache-Control": {"schema": {"type": "string"}, "description": CACHE_CONTROL}}


@blp.route("/orgs/<org_slug>/catalog")
class Catalog(MethodView):
    @blp.response(200, list_schema(CatalogItemSchema), headers=CACHE_HEADER)
    @error_responses(blp, 400, 404, *COMMON)
    @blp.arguments(LIST_ARGS, location="query")
    def get(self, args: dict[str, Any], org_slug: str) -> Any:
        """List an organization's published content (public; org slug or id)"""
        body = service.list_body(db.session, org_slug, args)  # cached JSON (hot path)
        return current_app.response_class(body, mimetype="application/json", headers={"Cache-Control": CACHE_CONTROL})


@blp.route("/catalog/<content_id>")
class CatalogItem(MethodView):
    @blp.response(200, CatalogDetailSchema, headers=CACHE_HEADER)
    @error_responses(blp, 404, *COMMON)
    def get(self, content_id: str) -> Any:
        """Get one published content item with its preview (public)"""
        parsed = parse_uuid(content_id)
        if parsed is None:
            raise not_found(CONTENT_NOT_FOUND)
        return service.catalog_detail(db.session, parsed), 200, {"Cache-Control": CACHE_CONTROL}
