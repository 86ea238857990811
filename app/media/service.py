"""Media library rules (api.md §6, data-model.md media_items, security.md §8).

Takes a session, flushes, raises ``AppError``; never commits and never touches Celery (routes
enqueue ``media.ingest`` / ``media.purge_storage`` after the commit). State changes lock the row
(``SELECT … FOR UPDATE``) so concurrent upload-complete/retry/delete requests and content
attach/publish (which take ``FOR SHARE`` on the media row) run one after the other.

``media_view`` and ``presigned_url`` are the dump helpers other domains (content, catalogue,
access/library) reuse for ``thumbnail_url`` / ``waveform_url``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

import structlog
from flask import current_app
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app import errors
from app.http import not_found
from app.media import usage
from app.media.job import UPLOAD_CHANGED
from app.media.magic import MAGIC_BYTES, magic_matches
from app.media.models import MediaItem
from app.orgs.access import OrgAccess, resource_access
from app.schemas import paginate
from app.speed.bounded import make_room
from app.storage import ObjectInfo, Storage, StorageError, UploadTarget
from app.storage import keys as storage_keys

log = structlog.get_logger(__name__)

MEDIA_NOT_FOUND = "MEDIA_NOT_FOUND"


# ---- views ----------------------------------------------------------------------------------


# Signed URLs are reused for up to a minute (the catalogue's own max-age): a hot catalogue page
# would otherwise sign the same thumbnails on every request (a path check plus an HMAC locally,
# a botocore signature on S3). A reused URL is still valid for TTL - 60 s at least.
PRESIGN_REUSE_SECONDS = 60.0
_PRESIGN_CACHE_MAX = 4096
# (id(storage), key, ttl) -> (signed at, url, storage); holding the storage keeps its id unique.
_presign_cache: dict[tuple[int, str, int], tuple[float, str, Storage]] = {}


def presigned_url(key: str | None, storage: Storage | None = None) -> str | None:
    """A GET URL for a thumbnail/waveform valid ``DOWNLOAD_URL_TTL_SECONDS``; None when absent.

    A storage failure while signing degrades to None (the rest of the response is still right).
    """
    if not key:
        return None
    from app.storage import get_storage

    backend = storage or get_storage()
    ttl = int(current_app.config["DOWNLOAD_URL_TTL_SECONDS"])
    cache_key = (id(backend), key, ttl)
    now = time.monotonic()
    cached = _presign_cache.get(cache_key)
    if cached is not None and cached[2] is backend and now - cached[0] < min(PRESIGN_REUSE_SECONDS, ttl / 2):
        return cached[1]
    try:
        url = backend.presign_download(key, ttl)
    except StorageError:
        log.warning("storage.presign_failed", exc_info=True)
        return None
    make_room(_presign_cache, _PRESIGN_CACHE_MAX)  # (the oldest go; entries are cheap to rebuild)
    _presign_cache[cache_key] = (now, url, backend)
    return url


def media_urls(media: MediaItem) -> tuple[str | None, str | None]:
    """``(thumbnail_url, waveform_url)`` of a media item."""
    return presigned_url(media.thumbnail_key), presigned_url(media.waveform_key)


def media_view(media: MediaItem) -> dict[str, Any]:
    """The Media object (api.md §1)."""
    thumbnail_url, waveform_url = media_urls(media)
    return {
        "id": media.id,
        "organization_id": media.organization_id,
        "created_by": media.created_by,
        "title": media.title,
        "description": media.description,
        "media_type": media.media_type,
        "mime_type": media.mime_type,
        "file_size_bytes": media.file_size_bytes,
        "status": media.status,
        "attempts": media.attempts,
        "max_attempts": int(current_app.config["MEDIA_MAX_ATTEMPTS"]),
        "error_message": media.error_message,
        "duration_seconds": media.duration_seconds,
        "width": media.width,
        "height": media.height,
        "renditions": list(media.renditions or []),
        "has_preview": media.hls_preview_key is not None,
        "thumbnail_url": thumbnail_url,
        "waveform_url": waveform_url,
        "uploaded_at": media.uploaded_at,
        "ready_at": media.ready_at,
        "created_at": media.created_at,
        "updated_at": media.updated_at,
    }


def upload_view(target: UploadTarget) -> dict[str, Any]:
    return {
        "method": target.method,
        "url": target.url,
        "headers": dict(target.headers),
        "expires_at": target.expires_at,
    }


# ---- loading and guards ---------------------------------------------------------------------


class SoftDeletable(Protocol):
    id: Any
    organization_id: Any
    deleted_at: Any


Row = TypeVar("Row", bound=SoftDeletable)


def load_live(
    session: Session, model: type[Row], row_id: uuid.UUID, not_found_code: str, *, lock: bool = False
) -> tuple[Row, OrgAccess]:
    """A non-deleted org-owned row (media, content) and the caller's access as staff of its org.

    Missing, soft-deleted or another tenant's row: the same 404 ``not_found_code`` (security.md §10).
    """
    stmt = select(model).where(model.id == row_id, model.deleted_at.is_(None))
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise not_found(not_found_code)
    return row, resource_access(session, row.organization_id, not_found_code, "creator")


@dataclass(frozen=True)
class LoadedMedia:
    media: MediaItem
    access: OrgAccess


def load_media(session: Session, media_id: uuid.UUID, *, lock: bool = False) -> LoadedMedia:
    """A non-deleted media item visible to the caller (staff of its org), else 404 MEDIA_NOT_FOUND."""
    return LoadedMedia(*load_live(session, MediaItem, media_id, MEDIA_NOT_FOUND, lock=lock))


def require_creator_or_manager(access: OrgAccess, created_by: uuid.UUID) -> None:
    """ "creator of it, manager" (README §5): admins/owners always, creators only for their own rows."""
    if access.has_role("admin") or created_by == access.user_id:
        return
    raise errors.Forbidden("Only the creator of this item or an org manager may do this.")


def load_for_change(session: Session, media_id: uuid.UUID) -> MediaItem:
    """Load with a row lock, then check "creator of it, manager" (404 before 403)."""
    loaded = load_media(session, media_id, lock=True)
    require_creator_or_manager(loaded.access, loaded.media.created_by)
    return loaded.media


# ---- create, list, update, delete -----------------------------------------------------------


def create_media(
    session: Session, access: OrgAccess, data: dict[str, Any], storage: Storage, *, sign: bool = True
) -> tuple[MediaItem, UploadTarget | None]:
    """Insert an ``uploading`` row with a server-built key and sign its upload target
    (``sign=False``: no target; ``app.media.multipart`` opens a multipart upload instead)."""
    media_id = uuid.uuid4()
    key = storage_keys.original_key(access.organization_id, media_id, data["mime_type"])
    target = None
    try:
        if sign:
            target = storage.presign_upload(
                key, data["mime_type"], data["file_size_bytes"], int(current_app.config["UPLOAD_URL_TTL_SECONDS"])
            )
    except StorageError:
        log.warning("media.presign_upload_failed", organization_id=str(access.organization_id))
        raise errors.ServiceUnavailable("storage") from None
    media = MediaItem(
        id=media_id,
        organization_id=access.organization_id,
        created_by=access.user_id,
        title=data["title"],
        description=data["description"],
        media_type=data["media_type"],
        mime_type=data["mime_type"],
        file_size_bytes=data["file_size_bytes"],
        status="uploading",
        original_key=key,
    )
    session.add(media)
    session.flush()
    session.refresh(media)
    return media, target


_SORT_COLUMNS = {"created_at": MediaItem.created_at, "updated_at": MediaItem.updated_at, "title": MediaItem.title}


def list_media(session: Session, organization_id: uuid.UUID, args: dict[str, Any]) -> dict[str, Any]:
    stmt = select(MediaItem).where(MediaItem.organization_id == organization_id, MediaItem.deleted_at.is_(None))
    if args.get("status"):
        stmt = stmt.where(MediaItem.status == args["status"])
    if args.get("media_type"):
        stmt = stmt.where(MediaItem.media_type == args["media_type"])
    column = _SORT_COLUMNS[args["sort"]]
    ordering = column.asc() if args["order"] == "asc" else column.desc()
    tie = MediaItem.id.asc() if args["order"] == "asc" else MediaItem.id.desc()
    stmt = stmt.order_by(ordering, tie)
    envelope = paginate(session, cast("Select[Any]", stmt), args["page"], args["per_page"])
    envelope["items"] = [media_view(media) for media in envelope["items"]]
    return envelope


def update_media(session: Session, media: MediaItem, data: dict[str, Any]) -> MediaItem:
    """Title/description only (the schema refuses every other field)."""
    changed = {key: value for key, value in data.items() if getattr(media, key) != value}
    if not changed:
        return media
    for key, value in changed.items():
        setattr(media, key, value)
    session.flush()
    session.refresh(media)
    return media


def media_in_use(session: Session, media_id: uuid.UUID) -> bool:
    return bool(session.scalar(select(usage.in_use(media_id))))


def delete_media(session: Session, media: MediaItem) -> None:
    """Soft delete (status unchanged); 409 MEDIA_IN_USE while non-deleted content points at it.

    The caller holds the row lock; content attach takes FOR SHARE on the same row, so a
    concurrent attach either finishes first (and we see it) or waits and then finds no media.
    """
    if media_in_use(session, media.id):
        raise errors.Conflict(
            "This media item is used by content; delete or re-point that content first.", code="MEDIA_IN_USE"
        )
    media.deleted_at = datetime.now(UTC)
    session.flush()


# ---- upload-complete and retry ----------------------------------------------------------------


def check_original(media: MediaItem, storage: Storage, *, pinned: str | None = None) -> ObjectInfo:
    """upload-complete's checks of the stored original (api.md §6, security.md §8); returns its HEAD.

    In order: HEAD (422 UPLOAD_MISSING), size = declared (UPLOAD_SIZE_MISMATCH), ETag = ``pinned``
    when one is given (a retry: the object checked at upload-complete was replaced, so it is no longer
    there: UPLOAD_MISSING with the worker's message), first 4 KiB vs the magic table
    (UPLOAD_TYPE_MISMATCH). 503 on storage errors.
    """
    try:
        info = storage.head(media.original_key)
        if info is None:
            raise errors.Unprocessable("The uploaded file was not found in storage.", code="UPLOAD_MISSING")
        if info.size != media.file_size_bytes:
            raise errors.Unprocessable(
                f"The stored file has {info.size} bytes, but {media.file_size_bytes} were declared.",
                code="UPLOAD_SIZE_MISMATCH",
            )
        if pinned is not None and info.etag != pinned:
            raise errors.Unprocessable(UPLOAD_CHANGED, code="UPLOAD_MISSING")
        head = storage.read_range(media.original_key, 0, min(MAGIC_BYTES, info.size))
    except StorageError:
        log.warning("media.upload_check_failed", media_id=str(media.id))
        raise errors.ServiceUnavailable("storage") from None
    if not magic_matches(media.mime_type, head):
        raise errors.Unprocessable(
            f"The file's contents do not match its declared type {media.mime_type}.", code="UPLOAD_TYPE_MISMATCH"
        )
    return info


def upload_complete(session: Session, media: MediaItem, storage: Storage) -> bool:
    """Check the stored object, pin its ETag and move ``uploading -> uploaded``.

    Returns True when the row changed, False for an ``uploaded`` row (the route re-enqueues
    ingest either way). 409 STATE_CONFLICT for any other status; 422 UPLOAD_MISSING /
    UPLOAD_SIZE_MISMATCH / UPLOAD_TYPE_MISMATCH when the bytes do not fit; 503 on storage errors.
    From here on the local upload route refuses new bytes and the worker reads only this ETag.
    """
    if media.status == "uploaded":
        return False
    if media.status != "uploading":
        raise errors.Conflict(f"The upload is already complete (status {media.status}).")
    info = check_original(media, storage)
    media.status = "uploaded"
    media.uploaded_at = datetime.now(UTC)
    media.upload_etag = info.etag
    session.flush()
    session.refresh(media)
    return True


def retry_media(session: Session, media: MediaItem, storage: Storage) -> MediaItem:
    """``failed -> uploaded`` within the attempt limit (the route enqueues ingest after commit).

    Repeats upload-complete's checks first (security.md §8), against the pinned ETag, so a retry
    never hands the worker bytes nobody checked. A row from before ETags were pinned gets the
    checked object's ETag now.
    """
    if media.status != "failed":
        raise errors.Conflict(f"Only failed media can be retried (status {media.status}).")
    limit = int(current_app.config["MEDIA_MAX_ATTEMPTS"])
    if media.attempts >= limit:
        raise errors.Unprocessable(
            f"This media item has used all {limit} processing attempts.", code="RETRY_LIMIT_REACHED"
        )
    info = check_original(media, storage, pinned=media.upload_etag)
    media.upload_etag = media.upload_etag or info.etag
    media.status = "uploaded"
    media.error_message = None
    session.flush()
    session.refresh(media)
    return media


def require_uploading(session: Session, key: str, lock: bool) -> None:
    """The local upload route's guard: the key must be the original of a live media item still
    ``uploading`` (security.md §8: once upload-complete checked the bytes they are pinned).

    404 NOT_FOUND when there is no such item (or it was deleted), 409 STATE_CONFLICT once it left
    ``uploading``. ``lock`` takes FOR SHARE on the row until the caller's transaction ends, so
    upload-complete (FOR UPDATE) cannot check the object between this check and the write.
    """
    parsed = storage_keys.parse_original_key(key)
    if parsed is None:
        raise errors.NotFound()
    org_id, media_id, _ = parsed
    stmt = select(MediaItem.status, MediaItem.deleted_at).where(
        MediaItem.id == media_id, MediaItem.organization_id == org_id, MediaItem.original_key == key
    )
    if lock:
        stmt = stmt.with_for_update(read=True)
    row = session.execute(stmt).one_or_none()
    if row is None or row.deleted_at is not None:
        raise errors.NotFound()
    if row.status != "uploading":
        raise errors.Conflict(f"The upload is already complete (status {row.status}); the file can no longer change.")


def supply_upload_guard() -> None:
    """Install ``require_uploading`` as the storage adapter's upload guard (``create_app`` does)."""
    from app.storage.routes import guard_uploads

    guard_uploads(require_uploading)
