"""Media routes (api.md §6): create with upload target, list/get/patch/delete, upload-complete, retry;
multipart uploads (§6.1): part URLs, stored parts, restart; captions (§6.2).

Decorator order (README §3.4): ``require_auth`` (401, CSRF, malformed path id -> 404) above
``@blp.arguments`` (400); the org/role checks run inside (``require_org_role`` below the
arguments, or ``service.load_*`` for ``/media/{id}``): 404 before 403 before business rules.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import request
from flask.views import MethodView

from app import db, errors
from app.api import Blueprint, error_responses
from app.db import enqueue_after_commit
from app.http import body_limit, no_content, path_uuid, raw_body
from app.identity.guards import current_principal, require_auth
from app.identity.prechecks import body_type, route_limit
from app.media import captions, multipart, service, webvtt
from app.media.job import INGEST_TASK, PURGE_TASK
from app.media.schemas import (
    CaptionListSchema,
    CaptionPutArgsSchema,
    CaptionSchema,
    MediaCreatedSchema,
    MediaCreateSchema,
    MediaListArgsSchema,
    MediaSchema,
    MediaUpdateSchema,
    PartNumbersSchema,
    SignedPartsSchema,
    StoredPartsSchema,
    UploadCompleteSchema,
)
from app.orgs.access import OrgAccess, require_org_role
from app.schemas import EmptySchema, list_schema
from app.storage import get_storage

blp = Blueprint("media", __name__, url_prefix="/api/v1", description="Media library and uploads")

COMMON = (429, 500, 503)
JSON_BODY = (400, 413, 415)
SIGNED_IN = (401, 403)


@blp.route("/orgs/<org_id>/media")
class OrgMedia(MethodView):
    @blp.response(200, list_schema(MediaSchema))
    @error_responses(blp, 400, 401, 404, *COMMON)
    @require_auth
    @blp.arguments(MediaListArgsSchema, location="query")
    @require_org_role("creator")
    def get(self, args: dict[str, Any], org: OrgAccess) -> Any:
        """List the organization's media (all statuses)"""
        return service.list_media(db.session, org.organization_id, args)

    @blp.response(201, MediaCreatedSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, *COMMON)
    @route_limit("30 per hour", key="user")
    @require_auth
    @blp.arguments(MediaCreateSchema)
    @require_org_role("creator")
    def post(self, data: dict[str, Any], org: OrgAccess) -> Any:
        """Create a media item and get its upload URL (or, with upload_mode multipart, its part layout)"""
        if data["upload_mode"] == "multipart":
            media, upload = multipart.create_media(db.session, org, data, get_storage())
        else:
            media, target = service.create_media(db.session, org, data, get_storage())
            assert target is not None
            upload = service.upload_view(target)
        db.session.commit()
        return {**service.media_view(media), "upload": upload}


@blp.route("/media/<media_id>")
class MediaItemResource(MethodView):
    @blp.response(200, MediaSchema)
    @error_responses(blp, 401, 404, *COMMON)
    @require_auth
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def get(self, media_id: uuid.UUID) -> Any:
        """Get a media item"""
        return service.media_view(service.load_media(db.session, media_id).media)

    @blp.response(200, MediaSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, *COMMON)
    @require_auth
    @blp.arguments(MediaUpdateSchema)
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def patch(self, data: dict[str, Any], media_id: uuid.UUID) -> Any:
        """Change a media item's title or description"""
        media = service.update_media(db.session, service.load_for_change(db.session, media_id), data)
        db.session.commit()
        return service.media_view(media)

    @blp.response(204)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def delete(self, _data: dict[str, Any], media_id: uuid.UUID) -> Any:
        """Delete a media item (its stored files are purged in the background)"""
        media = service.load_for_change(db.session, media_id)
        service.delete_media(db.session, media)
        enqueue_after_commit(db.session, PURGE_TASK, str(media.id))
        db.session.commit()
        return no_content()


@blp.route("/media/<media_id>/upload-complete")
class UploadComplete(MethodView):
    @blp.response(202, MediaSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, 422, *COMMON)
    @require_auth
    @blp.arguments(UploadCompleteSchema)
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def post(self, data: dict[str, Any], media_id: uuid.UUID) -> Any:
        """Confirm the upload: assembles a multipart upload, checks the stored file, then queues processing"""
        media = service.load_for_change(db.session, media_id)
        multipart.upload_complete(db.session, media, get_storage(), data.get("parts"))
        # Also for an ``uploaded`` row: a lost message is re-sent (the claim makes duplicates harmless).
        enqueue_after_commit(db.session, INGEST_TASK, str(media.id))
        db.session.commit()
        return service.media_view(media)


@blp.route("/media/<media_id>/retry")
class Retry(MethodView):
    @blp.response(202, MediaSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, 422, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def post(self, _data: dict[str, Any], media_id: uuid.UUID) -> Any:
        """Retry processing of a failed media item (the stored file is checked again first)"""
        media = service.retry_media(db.session, service.load_for_change(db.session, media_id), get_storage())
        enqueue_after_commit(db.session, INGEST_TASK, str(media.id))
        db.session.commit()
        return service.media_view(media)


# ---- captions (api.md §6.2) --------------------------------------------------------------------


def _language(raw: str) -> str:
    """The path's BCP 47 tag in its usual case (``pt-br`` is ``pt-BR``), else 400 on ``language``."""
    language = webvtt.canonical_language(raw)
    if language is None:
        raise errors.ValidationError.field("language", "Must be a BCP 47 language tag (en, pt-BR, zh-Hant).")
    return language


@blp.route("/media/<media_id>/captions")
class MediaCaptions(MethodView):
    @blp.response(200, CaptionListSchema)
    @error_responses(blp, 401, 404, *COMMON)
    @require_auth
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def get(self, media_id: uuid.UUID) -> Any:
        """List a media item's captions"""
        return captions.list_captions(db.session, service.load_media(db.session, media_id).media)


@blp.route("/media/<media_id>/captions/<language>")
class MediaCaptionResource(MethodView):
    @blp.doc(requestBody={"required": True, "content": {"text/vtt": {"schema": {"type": "string"}}}})
    @blp.response(200, CaptionSchema)
    @error_responses(blp, 400, 413, 415, *SIGNED_IN, 404, 422, *COMMON)
    @body_type("text/vtt")
    @raw_body
    @body_limit(webvtt.MAX_BYTES)
    @require_auth
    @blp.arguments(CaptionPutArgsSchema, location="query")
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def put(self, args: dict[str, Any], media_id: uuid.UUID, language: str) -> Any:
        """Add or replace a video's captions in one language (a WebVTT file, at most 2 MiB)"""
        tag = _language(language)
        media = service.load_for_change(db.session, media_id)
        caption, previous = captions.put_caption(
            db.session,
            media,
            language=tag,
            label=args.get("label"),
            data=request.get_data(cache=False),
            user_id=current_principal().user_id,
            storage=get_storage(),
        )
        if previous is not None:
            enqueue_after_commit(db.session, captions.DELETE_OBJECT_TASK, previous)
        db.session.commit()
        return captions.caption_view(caption)

    @blp.response(204)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def delete(self, _data: dict[str, Any], media_id: uuid.UUID, language: str) -> Any:
        """Delete a media item's captions in one language"""
        tag = _language(language)
        media = service.load_for_change(db.session, media_id)
        key = captions.delete_caption(db.session, media, tag)
        enqueue_after_commit(db.session, captions.DELETE_OBJECT_TASK, key)
        db.session.commit()
        return no_content()


@blp.route("/media/<media_id>/upload/parts")
class UploadParts(MethodView):
    @blp.response(200, SignedPartsSchema)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, *COMMON)
    @require_auth
    @blp.arguments(PartNumbersSchema)
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def post(self, data: dict[str, Any], media_id: uuid.UUID) -> Any:
        """Get upload URLs for parts of a multipart upload (fresh URLs each time)"""
        media = service.load_for_change(db.session, media_id)
        parts = multipart.sign_parts(db.session, media, get_storage(), data["part_numbers"])
        db.session.commit()
        return {"parts": parts}

    @blp.response(200, StoredPartsSchema)
    @error_responses(blp, *SIGNED_IN, 404, 409, *COMMON)
    @require_auth
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def get(self, media_id: uuid.UUID) -> Any:
        """List the parts storage holds now, to resume a multipart upload"""
        loaded = service.load_media(db.session, media_id)
        service.require_creator_or_manager(loaded.access, loaded.media.created_by)
        parts = multipart.stored_parts(loaded.media, get_storage())
        db.session.rollback()  # read-only
        return {"parts": [multipart.part_view(part) for part in parts]}


@blp.route("/media/<media_id>/upload")
class Upload(MethodView):
    @blp.response(204)
    @error_responses(blp, *JSON_BODY, *SIGNED_IN, 404, 409, *COMMON)
    @require_auth
    @blp.arguments(EmptySchema)
    @path_uuid("media_id", service.MEDIA_NOT_FOUND)
    def delete(self, _data: dict[str, Any], media_id: uuid.UUID) -> Any:
        """Abort a multipart upload and start a fresh one (the media item stays uploading)"""
        media = service.load_for_change(db.session, media_id)
        multipart.restart(db.session, media, get_storage())
        db.session.commit()
        return no_content()
