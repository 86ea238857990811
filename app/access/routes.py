"""Access, streaming, HLS proxy, progress and library routes (api.md §10).

Check order (README §3.4): auth (401) -> path UUID (404) -> query/body schema (400) -> content
lookup and visibility (404) -> access (403 ``ACCESS_DENIED``) -> business rules (422). The HLS
proxy is not session-based: the signed token in the path is the credential.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar, cast

import marshmallow as ma
from flask import Response, current_app, request
from flask.views import MethodView

from app import db, ratelimit
from app.access import hls, library, progress, service
from app.access.schemas import (
    AccessSchema,
    LibraryArgsSchema,
    LibraryItemSchema,
    ProgressSchema,
    ProgressUpdateSchema,
    StreamArgsSchema,
    StreamSchema,
    fast_progress,
    fast_stream_args,
)
from app.api import Blueprint, error_responses
from app.http import no_content, path_uuid
from app.identity.guards import current_principal, require_auth, with_session_read
from app.identity.prechecks import route_limit
from app.schemas import list_schema

blp = Blueprint("access", __name__, url_prefix="/api/v1", description="Access, playback and library")

COMMON = (429, 500, 503)

# "Progress or null": OpenAPI 3.0 cannot mark a bare $ref nullable, so wrap it (the Progress
# component itself is registered through the library item schema).
NULLABLE_PROGRESS = {"nullable": True, "allOf": [{"$ref": "#/components/schemas/Progress"}]}
CONTENT = "CONTENT_NOT_FOUND"
# Schema instances, not classes: given a class, webargs builds a new schema (deep-copying every
# field) on each request. Loading is stateless.
STREAM_ARGS = StreamArgsSchema()
PROGRESS_UPDATE = ProgressUpdateSchema()

F = TypeVar("F", bound=Callable[..., Any])


def fast_arguments(fast: Callable[[], dict[str, Any] | None], schema: ma.Schema, **kwargs: Any) -> Callable[[F], F]:
    """``blp.arguments(schema, **kwargs)`` (the OpenAPI document, and webargs' parsing) with
    ``fast()`` tried first: it answers the hot endpoints' usual input with exactly the schema's
    result, or None, and then webargs and the schema run as before (so errors are unchanged)."""

    def decorator(func: F) -> F:
        parsed = blp.arguments(schema, **kwargs)(func)

        @wraps(parsed)
        def wrapper(*args: Any, **kw: Any) -> Any:
            data = fast()
            return parsed(*args, **kw) if data is None else func(*args, data, **kw)

        return cast(F, wrapper)

    return decorator


def _stream_args() -> dict[str, Any] | None:
    return fast_stream_args(request.args)


def _progress_body() -> dict[str, Any] | None:
    # app.http has already parsed (and cached) the JSON body of this PUT.
    return fast_progress(request.get_json(silent=True)) if request.mimetype == "application/json" else None


def _redis() -> Any:
    return current_app.extensions["redis"]


def _now() -> datetime:
    return datetime.now(UTC)


@blp.route("/content/<content_id>/access")
class ContentAccessCheck(MethodView):
    @blp.response(200, AccessSchema)
    @error_responses(blp, 401, 404, *COMMON)
    @require_auth
    @path_uuid("content_id", CONTENT)
    def get(self, content_id: uuid.UUID) -> Any:
        """Whether the caller may stream a content item, and why"""
        visible = service.visible_content(db.session, current_principal().user_id, content_id)
        decision = visible.decision
        return {"content_id": content_id, "has_access": decision.has_access, "reason": decision.reason}


@blp.route("/content/<content_id>/stream")
class ContentStream(MethodView):
    @blp.response(200, StreamSchema)
    @error_responses(blp, 400, 401, 403, 404, 422, *COMMON)
    @route_limit("60 per minute", key="user")
    @require_auth
    @with_session_read(service.playable_session_keys)  # session, access entry, content token: one call
    @fast_arguments(_stream_args, STREAM_ARGS, location="query")
    @path_uuid("content_id", CONTENT)
    def get(self, args: dict[str, Any], content_id: uuid.UUID) -> Any:
        """A signed HLS manifest URL for content the caller may access"""
        principal = current_principal()
        playable = service.playable(db.session, principal.user_id, content_id, principal.prefetched)
        if not playable.decision.has_access:
            raise service.AccessDenied()
        meta = playable.meta
        if not meta.media_ready:
            raise service.MediaNotReady()
        body = hls.stream_answer(meta, principal.user_id, args["expires_in"])
        return Response(body, status=200, mimetype="application/json")


def _playlist(body: str) -> Response:
    response = Response(body, status=200, mimetype=hls.MPEGURL)
    response.headers["Cache-Control"] = hls.CACHE_CONTROL
    return response


_PLAYLIST_DOC = {
    "responses": {"200": {"description": "HLS playlist", "content": {hls.MPEGURL: {"schema": {"type": "string"}}}}}
}


@blp.route("/stream/<token>/master.m3u8")
class StreamMaster(MethodView):
    @blp.doc(**_PLAYLIST_DOC)
    @error_responses(blp, 403, 404, *COMMON)
    @route_limit("600 per minute", key="ip")
    def get(self, token: str) -> Any:
        """HLS master playlist for a stream or preview token"""
        playback = hls.authorize(db.session, token)
        return _playlist(hls.master_playlist(playback, hls.subtitle_tracks(db.session, playback)))


@blp.route("/stream/<token>/<rendition>/index.m3u8")
class StreamRendition(MethodView):
    @blp.doc(**_PLAYLIST_DOC)
    @error_responses(blp, 403, 404, *COMMON)
    @route_limit("600 per minute", key="ip")
    def get(self, token: str, rendition: str) -> Any:
        """HLS media playlist of one rendition, every segment a signed URL"""
        playback = hls.authorize(db.session, token)
        return _playlist(hls.media_playlist(playback, rendition))


@blp.route("/stream/<token>/subs/<language>.m3u8")
class StreamSubtitles(MethodView):
    @blp.doc(**_PLAYLIST_DOC)
    @error_responses(blp, 403, 404, *COMMON)
    @route_limit("600 per minute", key="ip")
    def get(self, token: str, language: str) -> Any:
        """HLS subtitle playlist of one caption language: one signed WebVTT segment"""
        playback = hls.authorize(db.session, token)
        return _playlist(hls.subtitle_playlist(db.session, playback, language))


@blp.route("/content/<content_id>/progress")
class ContentProgress(MethodView):
    @blp.response(204)
    @error_responses(blp, 400, 401, 403, 404, 413, 415, *COMMON)
    @route_limit("120 per minute", key="user")
    @ratelimit.rides_along  # counted in the heartbeat's own script (progress.record_heartbeat)
    @require_auth
    @fast_arguments(_progress_body, PROGRESS_UPDATE)
    @path_uuid("content_id", CONTENT)
    def put(self, data: dict[str, Any], content_id: uuid.UUID) -> Any:
        """Record a playback heartbeat (buffered in Redis; older client_ts ignored)"""
        now = _now()
        heartbeat = progress.normalise(
            data["position_seconds"], data["duration_seconds"], data["completed"], data["client_ts"], now
        )
        outcome = progress.record_heartbeat(
            db.session,
            _redis(),
            user_id=current_principal().user_id,
            content_id=content_id,
            heartbeat=heartbeat,
            now=now,
            limits=ratelimit.take(),
            counted=ratelimit.settle_taken,
        )
        if outcome == "database":  # Redis was down: the write went straight to Postgres
            db.session.commit()
        return no_content()

    @blp.response(200, NULLABLE_PROGRESS)
    @error_responses(blp, 401, 404, *COMMON)
    @require_auth
    @path_uuid("content_id", CONTENT)
    def get(self, content_id: uuid.UUID) -> Any:
        """The caller's progress on a content item, or null"""
        user_id = current_principal().user_id
        service.visible_content(db.session, user_id, content_id)
        entry = progress.read(db.session, _redis(), user_id, content_id)
        body = None if entry is None else ProgressSchema().dump(entry.as_progress())
        return Response(json.dumps(body) + "\n", status=200, mimetype="application/json")


@blp.route("/me/library")
class Library(MethodView):
    @blp.response(200, list_schema(LibraryItemSchema))
    @error_responses(blp, 400, 401, *COMMON)
    @require_auth
    @blp.arguments(LibraryArgsSchema, location="query")
    def get(self, args: dict[str, Any]) -> Any:
        """The caller's library: granted content and started free content, with progress"""
        user_id = current_principal().user_id
        client = _redis()
        flushed = progress.flush_user(db.session, client, user_id)
        if flushed:
            db.session.commit()
            progress.forget_user_flushed(client, user_id, flushed)
        return library.list_library(
            db.session,
            user_id,
            filter_=args["filter"],
            sort=args["sort"],
            page=args["page"],
            per_page=args["per_page"],
        )
