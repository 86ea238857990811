"""Public catalogue routes (api.md §8), no auth; responses are cacheable for 60 s."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request
from flask.views import MethodView

from app import db
from app.api import Blueprint, error_responses
from app.catalog import cache, service
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


LIST_ENDPOINT = f"{blp.name}.Catalog"


def _list_key() -> str:
    return cache.page_key((request.view_args or {})["org_slug"], request.query_string)


def _json_response(body: bytes) -> Response:
    return current_app.response_class(body, mimetype="application/json", headers={"Cache-Control": CACHE_CONTROL})


@blp.before_request
def warm_list() -> Response | None:
    """A warm list page answers before its query is parsed (app/catalog/cache.py): pages are
    stored under the exact query string they were built for, which parsed then and parses the
    same way every time. (The app's own hooks, rate limits included, have run already.)"""
    if request.endpoint != LIST_ENDPOINT:
        return None
    found = cache.lookup(_list_key())
    if found.body is not None:
        return _json_response(found.body)
    g.catalog_lookup = found  # (what the miss learnt, for the view)
    return None


@blp.route("/orgs/<org_slug>/catalog")
class Catalog(MethodView):
    @blp.response(200, list_schema(CatalogItemSchema), headers=CACHE_HEADER)
    @error_responses(blp, 400, 404, *COMMON)
    @blp.arguments(LIST_ARGS, location="query")
    def get(self, args: dict[str, Any], org_slug: str) -> Any:
        """List an organization's published content (public; org slug or id)"""
        found = g.pop("catalog_lookup", None) or cache.lookup(_list_key())
        return _json_response(service.list_body(db.session, org_slug, args, found))


@blp.route("/catalog/<content_id>")
class CatalogItem(MethodView):
    @blp.response(200, CatalogDetailSchema, headers=CACHE_HEADER)
    @error_responses(blp, 404, *COMMON)
    def get(self, content_id: str) -> Any:
        """Get one published content item with its preview (public)"""
        parsed = parse_uuid(content_id)
        if parsed is None:
            raise not_found(CONTENT_NOT_FOUND)
        return _json_response(service.detail_body(db.session, parsed))  # cached facts, a fresh token
