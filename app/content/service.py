"""Content management rules (api.md §7, data-model.md content and its state machine).

Takes a session, flushes, raises ``AppError``; never commits. Changes lock the content row
(``FOR UPDATE``) and read the media they attach or publish with ``FOR SHARE``, so a concurrent
media delete (``FOR UPDATE`` + "is it in use?") either sees the new reference (409
``MEDIA_IN_USE``) or has already removed the media (404 ``MEDIA_NOT_FOUND`` here).

``content_view`` (the Content object) and ``escape_like`` are reused by the catalogue and the
access/library code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from flask import current_app
from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import errors
from app.content.cache import content_changed_after_commit
from app.content.models import Content
from app.content.slugs import first_free_slug, slug_taken, slugify
from app.http import not_found
from app.media.models import MediaItem
from app.media.service import MEDIA_NOT_FOUND, load_live, presigned_url, require_creator_or_manager
from app.orgs.access import OrgAccess
from app.schemas import paginate

CONTENT_NOT_FOUND = "CONTENT_NOT_FOUND"
SLUG_UNIQUE_INDEX = "ux_content_org_slug"
GENERATED_SLUG_TRIES = 5


def escape_like(text: str) -> str:
    """Escape ``%``, ``_`` and ``\\`` for a LIKE/ILIKE pattern (security.md §6)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(text: str) -> str:
    return f"%{escape_like(text)}%"


def _slug_taken_error() -> errors.Conflict:
    return errors.Conflict("This slug is already used by other content of the organization.", code="SLUG_TAKEN")


# ---- views ----------------------------------------------------------------------------------


def content_view(content: Content, media: MediaItem | None) -> dict[str, Any]:
    """The Content object (api.md §1); ``media_status``/``duration_seconds``/``thumbnail_url`` come from its media."""
    return {
        "id": content.id,
        "organization_id": content.organization_id,
        "created_by": content.created_by,
        "media_id": content.media_id,
        "title": content.title,
        "slug": content.slug,
        "description": content.description,
        "content_type": content.content_type,
        "visibility": content.visibility,
        "price_cents": content.price_cents,
        "currency": content.currency,
        "is_free": content.is_free,
        "category": content.category,
        "tags": list(content.tags or []),
        "status": content.status,
        "published_at": content.published_at,
        "archived_at": content.archived_at,
        "media_status": media.status if media is not None else None,
        "duration_seconds": media.duration_seconds if media is not None else None,
        "thumbnail_url": presigned_url(media.thumbnail_key) if media is not None else None,
        "created_at": content.created_at,
        "updated_at": content.updated_at,
    }


def view_of(session: Session, content: Content) -> dict[str, Any]:
    return content_view(content, session.get(MediaItem, content.media_id))


# ---- loading and guards ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedContent:
    content: Content
    access: OrgAccess


def load_content(session: Session, content_id: uuid.UUID, *, lock: bool = False) -> LoadedContent:
    """Non-deleted content visible to the caller (staff of its org), else 404 CONTENT_NOT_FOUND."""
    return LoadedContent(*load_live(session, Content, content_id, CONTENT_NOT_FOUND, lock=lock))


def load_for_change(session: Session, content_id: uuid.UUID) -> Content:
    """Load with a row lock, then "creator of it, manager" (404 before 403)."""
    loaded = load_content(session, content_id, lock=True)
    require_creator_or_manager(loaded.access, loaded.content.created_by)
    return loaded.content


def attachable_media(session: Session, organization_id: uuid.UUID, media_id: uuid.UUID, content_type: str) -> MediaItem:
    """A non-deleted media item of the same org (404 MEDIA_NOT_FOUND) of the same type (422), any status."""
    media = session.scalar(
        select(MediaItem)
        .where(
            MediaItem.id == media_id,
            MediaItem.organization_id == organization_id,
            MediaItem.deleted_at.is_(None),
        )
        .with_for_update(read=True)
    )
    if media is None:
        raise not_found(MEDIA_NOT_FOUND)
    if media.media_type != content_type:
        raise errors.Unprocessable(
            f"The media item is {media.media_type}, but the content is {content_type}.", code="CONTENT_TYPE_MISMATCH"
        )
    return media


# ---- price rules ----------------------------------------------------------------------------


def derived_visibility(price_cents: int | None) -> str:
    return "purchased_only" if (price_cents or 0) > 0 else "public"


def check_visibility(visibility: str, price_cents: int | None) -> None:
    """``purchased_only`` iff the price is > 0 (ck_content_visibility_price); else 400 on ``visibility``."""
    if visibility != derived_visibility(price_cents):
        rule = "purchased_only needs a price above 0" if visibility == "purchased_only" else "public needs no price"
        raise errors.ValidationError.field("visibility", f"Does not match the price ({rule}).")


# ---- create, list -----------------------------------------------------------------------------


def _insert_with_slug(session: Session, content: Content, *, explicit: bool) -> None:
    """Flush the new row; a slug race on the partial unique index is 409 (explicit) or the next
    free slug (generated)."""
    for _ in range(GENERATED_SLUG_TRIES):
        try:
            with session.begin_nested():
                session.add(content)
                session.flush()
            return
        except IntegrityError as exc:
            if SLUG_UNIQUE_INDEX not in str(exc.orig):
                raise
            if explicit:
                raise _slug_taken_error() from None
            content.slug = first_free_slug(session, content.organization_id, slugify(content.title))
    raise _slug_taken_error()


def create_content(session: Session, access: OrgAccess, data: dict[str, Any]) -> Content:
    if data["visibility"] is not None:
        check_visibility(data["visibility"], data["price_cents"])
    attachable_media(session, access.organization_id, data["media_id"], data["content_type"])
    explicit = data["slug"] is not None
    if explicit:
        if slug_taken(session, access.organization_id, data["slug"]):
            raise _slug_taken_error()
        slug = data["slug"]
    else:
        slug = first_free_slug(session, access.organization_id, slugify(data["title"]))
    content = Content(
        id=uuid.uuid4(),
        organization_id=access.organization_id,
        created_by=access.user_id,
        media_id=data["media_id"],
        title=data["title"],
        slug=slug,
        description=data["description"],
        content_type=data["content_type"],
        visibility=data["visibility"] or derived_visibility(data["price_cents"]),
        price_cents=data["price_cents"],
        currency=data["currency"] or current_app.config["DEFAULT_CURRENCY"],
        category=data["category"],
        tags=data["tags"],
        status="draft",
    )
    _insert_with_slug(session, content, explicit=explicit)
    session.refresh(content)
    return content


_SORT_COLUMNS = {
    "created_at": Content.created_at,
    "updated_at": Content.updated_at,
    "published_at": Content.published_at,
    "title": Content.title,
}


def list_content(session: Session, organization_id: uuid.UUID, args: dict[str, Any]) -> dict[str, Any]:
    """All statuses of the org's non-deleted content, filtered, sorted (nulls last), paged."""
    stmt = (
        select(Content, MediaItem)
        .join(MediaItem, MediaItem.id == Content.media_id)
        .where(Content.organization_id == organization_id, Content.deleted_at.is_(None))
    )
    for name in ("status", "content_type", "category", "created_by"):
        if args.get(name) is not None:
            stmt = stmt.where(getattr(Content, name) == args[name])
    if args.get("q"):
        pattern = contains(args["q"])
        stmt = stmt.where(
            or_(Content.title.ilike(pattern, escape="\\"), Content.description.ilike(pattern, escape="\\"))
        )
    column = _SORT_COLUMNS[args["sort"]]
    if args["order"] == "asc":
        stmt = stmt.order_by(column.asc().nulls_last(), Content.id.asc())
    else:
        stmt = stmt.order_by(column.desc().nulls_last(), Content.id.desc())
    envelope = paginate(session, cast("Select[Any]", stmt), args["page"], args["per_page"])
    envelope["items"] = [content_view(content, media) for content, media in envelope["items"]]
    return envelope


# ---- update, delete ---------------------------------------------------------------------------


def update_content(session: Session, content: Content, data: dict[str, Any]) -> Content:
    """PATCH (the caller holds the row lock and passed the creator/manager check)."""
    changed = {key: value for key, value in data.items() if getattr(content, key) != value}
    if "price_cents" in changed and "visibility" not in data:
        changed["visibility"] = derived_visibility(changed["price_cents"])
    price = changed.get("price_cents", content.price_cents)
    visibility = changed.get("visibility", content.visibility)
    if "visibility" in data:
        check_visibility(visibility, price)
    if "visibility" in changed and changed["visibility"] == content.visibility:
        del changed["visibility"]
    if "media_id" in changed:
        media = attachable_media(session, content.organization_id, changed["media_id"], content.content_type)
        if content.status == "published" and media.status != "ready":
            raise errors.Unprocessable(
                "The new media item is not ready; published content needs ready media.", code="MEDIA_NOT_READY"
            )
    if "slug" in changed and slug_taken(session, content.organization_id, changed["slug"], exclude=content.id):
        raise _slug_taken_error()
    if not changed:
        return content
    for key, value in changed.items():
        setattr(content, key, value)
    # The hot paths' snapshot and the public catalogue (app.content.cache).
    content_changed_after_commit(session, content.id, content.organization_id)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        if SLUG_UNIQUE_INDEX in str(exc.orig):
            raise _slug_taken_error() from None
        raise
    session.refresh(content)
    return content


def delete_content(session: Session, content: Content) -> None:
    """Soft delete: frees the slug (partial unique index); grants and purchases stay."""
    content.deleted_at = datetime.now(UTC)
    content_changed_after_commit(session, content.id, content.organization_id)
    session.flush()


# ---- status transitions -------------------------------------------------------------------------


def _transition(session: Session, content: Content, sources: tuple[str, ...], **values: Any) -> Content:
    session.execute(
        update(Content)
        .where(Content.id == content.id, Content.status.in_(sources), Content.deleted_at.is_(None))
        .values(updated_at=datetime.now(UTC), **values)
        .execution_options(synchronize_session=False)
    )
    content_changed_after_commit(session, content.id, content.organization_id)
    session.refresh(content)
    return content


def publish(session: Session, content: Content) -> Content:
    """draft/archived -> published when the media is ready, not deleted, same org and type; published: no-op."""
    if content.status == "published":
        return content
    media = session.scalar(
        select(MediaItem)
        .where(MediaItem.id == content.media_id, MediaItem.organization_id == content.organization_id)
        .with_for_update(read=True)
    )
    if media is None or media.deleted_at is not None or media.status != "ready":
        raise errors.Unprocessable("The media item is not ready yet.", code="MEDIA_NOT_READY")
    if media.media_type != content.content_type:
        raise errors.Unprocessable(
            f"The media item is {media.media_type}, but the content is {content.content_type}.",
            code="CONTENT_TYPE_MISMATCH",
        )
    return _transition(session, content, ("draft", "archived"), status="published", published_at=datetime.now(UTC))


def unpublish(session: Session, content: Content) -> Content:
    """published/archived -> draft (``published_at`` kept); draft: no-op."""
    if content.status == "draft":
        return content
    return _transition(session, content, ("published", "archived"), status="draft")


def archive(session: Session, content: Content) -> Content:
    """draft/published -> archived; archived: no-op."""
    if content.status == "archived":
        return content
    return _transition(session, content, ("draft", "published"), status="archived", archived_at=datetime.now(UTC))
