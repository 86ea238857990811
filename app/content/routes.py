"""Content management routes (api.md §7).

Decorator order (README §3.4): ``require_auth`` (401, CSRF, malformed path id -> 404) above
``@blp.arguments`` (400); then the lookup (404), the creator/manager check (403) and the
business rules (409/422) in the service.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from app import db
from app.api import Blueprint, error_responses
from app.content import service
from app.content.models import Content
from app.content.schemas import ContentCreateSchema, ContentListArgsSchema, ContentSchema, ContentUpdateSchema
from app.http import no_content, path_uuid
from app.identity.guards import require_auth
from app.orgs.access import OrgAccess, require_org_role
from app.schemas import EmptySchema, list_schema

blp = Blueprint("content", __name__, url_prefix="/api/v1", description="Content management")

COMMON = (429, 500, 503)
JSON_BODY = (400, 413, 415)
SIGNED_IN = (401, 403)
CONTENT_NOT_FOUND = service.CONTENT_NOT_FOUND


def _respond(content: Content) -> dict[str, Any]:
    db.session.commit()
    return service.view_of(db.session, content)


@blp.route("/orgs/<org_id>/content")
class OrgContent(MethodView):
    @blp.response(200, list_schema(ContentSchema))
    @error_responses(blp, 400, 401, 404, *COMMON)
    @require_auth
    @blp.arguments(ContentListArgsSchema, location="query")
    @require_org_role("creator")
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """List the organization's content (all statuses)"""
        return service.list_content(db.session, org.organization_id, args)

    @blp.response(201, ContentSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, 422, *COMMON)
    @require_auth
    @blp.arguments(ContentCreateSchema)
    @require_org_role("creator")
    def post(self, data: dict[str, Any], org: OrgAccess) -> Any:
        """Create a draft content item for a media item of the organization"""
        return _respond(service.create_content(db.session, org, data))


@blp.route("/content/<content_id>")
class ContentItem(MethodView):
    @blp.response(200, ContentSchema)
    @error_responses(blp, 401, 404, *COMMON)
    @require_auth
    @path_uuid("content_id", CONTENT_NOT_FOUND)
    def get(self, content_id: uuid.UUID) -> Any:
        """Get a content item (any status)"""
        return service.view_of(db.session, service.load_content(db.session, content_id).content)

    @blp.response(200, ContentSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, 422, *COMMON)
    @require_auth
    @blp.arguments(ContentUpdateSchema)
    @path_uuid("content_id", CONTENT_NOT_FOUND)
    def patch(self, data: dict[str, Any], content_id: uuid.UUID) -> Any:
        """Change a content item's fields (content_type is immutable)"""
        content = service.load_for_change(db.session, content_id)
        return _respond(service.update_content(db.session, content, data))

    @blp.response(204)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @path_uuid("content_id", CONTENT_NOT_FOUND)
    def delete(self, _data: dict[str, Any], content_id: uuid.UUID) -> Any:
        """Delete a content item (its slug becomes free; grants are kept)"""
        service.delete_content(db.session, service.load_for_change(db.session, content_id))
        db.session.commit()
        return no_content()


def _action(name: str, summary: str, statuses: tuple[int, ...]) -> None:
    """POST /content/{id}/<name>: a body-less state transition returning the Content."""
    transition = getattr(service, name)

    @blp.response(200, ContentSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, *statuses, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @path_uuid("content_id", CONTENT_NOT_FOUND)
    def post(self: MethodView, _data: dict[str, Any], content_id: uuid.UUID) -> Any:
        return _respond(transition(db.session, service.load_for_change(db.session, content_id)))

    post.__doc__ = summary
    view = type(f"Content{name.title()}", (MethodView,), {"post": post})
    blp.route(f"/content/<content_id>/{name}")(view)


_action("publish", "Publish a content item (its media must be ready)", (422,))
_action("unpublish", "Move a content item back to draft", ())
_action("archive", "Archive a content item", ())
