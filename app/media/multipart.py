"""Multipart (resumable) uploads of media originals (api.md §6.1).

The S3 multipart protocol, as Uppy's ``@uppy/aws-s3`` multipart mode and the AWS SDKs speak it:
create (``upload_mode=multipart``) starts a multipart upload of the original's key and records
its id in ``media_items.multipart_upload_id``; the client asks for part URLs (any order, any
number of times, in parallel), lists what storage holds to resume after a crash, and completes.
Completion checks the stored parts first (all there, every size exact, ETags the client names
still current), so a bad part list leaves the upload open and retryable; then storage assembles
the parts and upload-complete's usual checks run on the object (size, magic bytes, ETag pinned:
security.md §8). ``restart`` (DELETE …/upload) aborts and opens a fresh upload.

Part size (binding): max(16 MiB, ceil(size / 10 000) rounded up to 1 MiB); every part but the last
has exactly that size, so part ``n`` starts at ``(n - 1) * part size`` (the local backend writes it
there directly).

Like ``service``: takes a session, flushes, raises ``AppError``; never commits.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import errors
from app.media import service
from app.media.models import MediaItem
from app.storage import Storage, StorageError
from app.storage.base import InvalidParts, PartInfo, UploadBusy, UploadNotFound

log = structlog.get_logger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 16 * MIB
MAX_PARTS = 10_000
#: Above this a single PUT is refused by S3: ``upload_mode=multipart`` is required (api.md §6.1).
SINGLE_UPLOAD_MAX_BYTES = 5 * 1024**3 - 1
MAX_PARTS_PER_REQUEST = 100
#: A multipart upload with no part URL asked for this long is abandoned (api.md §6.1).
ABANDONED_AFTER = timedelta(hours=24)
ABANDONED = "The upload was abandoned."
SWEEP_BATCH = 500
UPLOAD_MODES = ("single", "multipart")


# ---- sizes ------------------------------------------------------------------------------------


def part_size_for(file_size: int) -> int:
    """max(16 MiB, ceil(file_size / 10 000) rounded up to a whole MiB)."""
    per_part = math.ceil(file_size / MAX_PARTS)
    return max(MIN_PART_SIZE, math.ceil(per_part / MIB) * MIB)


def part_count_for(file_size: int) -> int:
    return math.ceil(file_size / part_size_for(file_size))


def expected_part_size(file_size: int, part_number: int) -> int:
    """Bytes of part ``part_number`` (1-based): the part size, or what is left for the last part."""
    size = part_size_for(file_size)
    return min(size, file_size - (part_number - 1) * size)


def normalise_etag(etag: str) -> str:
    """ETags travel quoted in HTTP headers (``"abc"``) and bare in JSON: compare them bare."""
    return etag.strip().removeprefix("W/").strip('"')


# ---- views ------------------------------------------------------------------------------------


def upload_view(media: MediaItem) -> dict[str, Any]:
    """``upload`` of a multipart create: part size and count; ``expires_at`` = when the upload is
    abandoned unless a part URL is asked for before (every request for part URLs moves it on)."""
    updated = media.updated_at or datetime.now(UTC)
    return {
        "method": "MULTIPART",
        "part_size_bytes": part_size_for(media.file_size_bytes),
        "part_count": part_count_for(media.file_size_bytes),
        "expires_at": updated + ABANDONED_AFTER,
    }


def part_view(part: PartInfo) -> dict[str, Any]:
    return {"part_number": part.part_number, "size_bytes": part.size, "etag": part.etag}


# ---- create, sign, list, restart ----------------------------------------------------------------


def start(media: MediaItem, storage: Storage) -> None:
    """Open a multipart upload of ``media``'s original and record its id (create and restart)."""
    try:
        media.multipart_upload_id = storage.create_multipart(media.original_key, media.mime_type)
    except StorageError:
        log.warning("media.multipart_create_failed", media_id=str(media.id))
        raise errors.ServiceUnavailable("storage") from None


def create_media(
    session: Session, access: Any, data: dict[str, Any], storage: Storage
) -> tuple[MediaItem, dict[str, Any]]:
    """POST …/media with ``upload_mode=multipart``: the row (as ``service.create_media``) plus an
    open multipart upload; returns the media and its ``upload`` view."""
    media, _ = service.create_media(session, access, data, storage, sign=False)
    start(media, storage)
    session.flush()
    return media, upload_view(media)


def require_open(media: MediaItem) -> str:
    """The open upload id, or 409 STATE_CONFLICT (not ``uploading``, or not a multipart upload)."""
    if media.status != "uploading":
        raise errors.Conflict(f"The upload is already complete (status {media.status}).")
    if not media.multipart_upload_id:
        raise errors.Conflict("This media item was not created for a multipart upload.")
    return media.multipart_upload_id


def sign_parts(session: Session, media: MediaItem, storage: Storage, part_numbers: list[int]) -> list[dict[str, Any]]:
    """Fresh part URLs (valid ``UPLOAD_URL_TTL_SECONDS``) for ``part_numbers`` (1..part_count).

    Asking moves the abandonment clock (``updated_at``): an upload is abandoned 24 h after its
    last part URL was issued.
    """
    upload_id = require_open(media)
    count = part_count_for(media.file_size_bytes)
    outside = [n for n in part_numbers if n > count]
    if outside:
        raise errors.ValidationError.field("part_numbers", f"Part numbers must be between 1 and {count}.")
    ttl = int(current_app.config["UPLOAD_URL_TTL_SECONDS"])
    part_size = part_size_for(media.file_size_bytes)
    parts = []
    try:
        for number in part_numbers:
            target = storage.presign_part(
                media.original_key,
                upload_id,
                number,
                expected_part_size(media.file_size_bytes, number),
                ttl,
                offset=(number - 1) * part_size,
            )
            parts.append(
                {"part_number": number, "url": target.url, "headers": target.headers, "expires_at": target.expires_at}
            )
    except StorageError:
        log.warning("media.presign_part_failed", media_id=str(media.id))
        raise errors.ServiceUnavailable("storage") from None
    media.updated_at = func.now()  # SQL now(), read back below
    session.flush()
    session.refresh(media)
    return parts


def stored_parts(media: MediaItem, storage: Storage) -> list[PartInfo]:
    """What storage holds now (S3 ``ListParts``), so a client resumes where it stopped."""
    upload_id = require_open(media)
    try:
        return storage.list_parts(media.original_key, upload_id)
    except UploadNotFound:
        raise errors.Conflict(
            "The multipart upload no longer exists; start a fresh one with DELETE …/upload."
        ) from None
    except StorageError:
        raise errors.ServiceUnavailable("storage") from None


def restart(session: Session, media: MediaItem, storage: Storage) -> None:
    """DELETE …/upload: abort the multipart upload, drop any object assembled from it, open a new one."""
    upload_id = require_open(media)
    try:
        storage.abort_multipart(media.original_key, upload_id)
        storage.delete(media.original_key)
    except StorageError:
        raise errors.ServiceUnavailable("storage") from None
    start(media, storage)
    media.updated_at = func.now()
    session.flush()
    session.refresh(media)


# ---- completion ---------------------------------------------------------------------------------


def _incomplete(message: str, **details: list[int]) -> errors.AppError:
    return errors.Unprocessable(
        message, code="UPLOAD_INCOMPLETE", details={k: [str(n) for n in v] for k, v in details.items() if v}
    )


def assemble(media: MediaItem, storage: Storage, given: list[dict[str, Any]] | None) -> None:
    """Check the stored parts against the declared size (and ``given`` ETags), then have storage
    assemble them into the original. 422 UPLOAD_INCOMPLETE leaves the upload open.

    An upload storage no longer knows was assembled by an earlier upload-complete whose checks then
    failed (or it was aborted outside the app): the object at the key is what upload-complete checks.
    """
    upload_id = require_open(media)
    size = media.file_size_bytes
    count = part_count_for(size)
    try:
        stored = {part.part_number: part for part in storage.list_parts(media.original_key, upload_id)}
    except UploadNotFound:
        return
    except StorageError:
        raise errors.ServiceUnavailable("storage") from None
    missing = [n for n in range(1, count + 1) if n not in stored]
    wrong_size = [n for n, p in stored.items() if n <= count and p.size != expected_part_size(size, n)]
    stale: list[int] = []
    if given is not None:
        named = {item["part_number"]: normalise_etag(item["etag"]) for item in given}
        missing = sorted(set(missing) | {n for n in range(1, count + 1) if n not in named})
        stale = sorted(n for n, etag in named.items() if n in stored and stored[n].etag != etag)
    if missing or wrong_size or stale:
        if missing:
            first = f"Part {missing[0]} is missing"
        elif wrong_size:
            n = wrong_size[0]
            first = f"Part {n} has {stored[n].size} bytes, not {expected_part_size(size, n)}"
        else:
            first = f"Part {stale[0]} was uploaded again since its ETag was taken"
        raise _incomplete(f"{first}; the upload is incomplete.", missing=missing, wrong_size=wrong_size, stale=stale)
    try:
        storage.complete_multipart(media.original_key, upload_id, [(n, stored[n].etag) for n in range(1, count + 1)])
    except InvalidParts:
        raise _incomplete("A part changed while the upload was being completed; list the parts again.") from None
    except UploadBusy:
        raise errors.Conflict("A part is still being uploaded; complete the upload once it has finished.") from None
    except UploadNotFound:
        return  # completed by a concurrent request: the object is checked below
    except StorageError:
        log.warning("media.multipart_complete_failed", media_id=str(media.id))
        raise errors.ServiceUnavailable("storage") from None


def upload_complete(session: Session, media: MediaItem, storage: Storage, parts: list[dict[str, Any]] | None) -> bool:
    """upload-complete for either mode: assemble an open multipart upload first, then
    ``service.upload_complete`` (checks, ETag pin, ``uploaded``); clears the upload id."""
    if parts is not None and media.status == "uploading" and not media.multipart_upload_id:
        raise errors.ValidationError.field("parts", "Only a multipart upload takes a part list.")
    if media.status == "uploading" and media.multipart_upload_id:
        assemble(media, storage, parts)
    changed = service.upload_complete(session, media, storage)
    if changed and media.multipart_upload_id:
        media.multipart_upload_id = None
        session.flush()
    return changed


# ---- the daily sweep ------------------------------------------------------------------------------


def abandon_stale_uploads(session: Session, storage: Storage) -> list[uuid.UUID]:
    """Multipart uploads of media still ``uploading`` 24 h after their last part URL was issued:
    abort them; the media becomes ``failed`` with "The upload was abandoned." (api.md §6.1).

    A storage failure on one upload leaves that row for the next run. Never commits.
    """
    rows = session.scalars(
        select(MediaItem)
        .where(
            MediaItem.status == "uploading",
            MediaItem.deleted_at.is_(None),
            MediaItem.multipart_upload_id.is_not(None),
            MediaItem.updated_at < func.now() - ABANDONED_AFTER,
        )
        .order_by(MediaItem.updated_at)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    abandoned: list[uuid.UUID] = []
    for media in rows:
        assert media.multipart_upload_id is not None
        try:
            storage.abort_multipart(media.original_key, media.multipart_upload_id)
        except StorageError:
            log.warning("media.multipart_abort_failed", media_id=str(media.id))
            continue
        media.status = "failed"
        media.error_message = ABANDONED
        media.multipart_upload_id = None
        abandoned.append(media.id)
    session.flush()
    if abandoned:
        log.info("media.uploads_abandoned", count=len(abandoned))
    return abandoned
