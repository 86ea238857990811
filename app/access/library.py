"""``GET /me/library`` (api.md §10): the caller's content, filtered, sorted and paged in SQL.

Rows: the caller's active grants (``revoked_at IS NULL``) whose content is not deleted, plus —
as the issue asks — free content the caller has started (a progress row) and holds no grant for,
with reason ``free`` and no ``granted_at``. ``available`` = content ``published``. The caller's
buffered progress is flushed to Postgres first (``progress.flush_user``), so filters and the
``recent`` sort see it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, null, or_, select, union_all
from sqlalchemy.orm import Session

from app.access.models import ContentAccess, PlaybackProgress
from app.access.progress import Entry
from app.content.models import Content
from app.media.models import MediaItem
from app.media.service import presigned_url
from app.schemas import paginate

FILTERS = ("all", "in_progress", "completed", "not_started")
SORTS = ("recent", "title", "purchased_at")


def _rows(user_id: uuid.UUID) -> Any:
    granted = select(
        ContentAccess.content_id.label("content_id"),
        case((ContentAccess.source == "purchase", literal("purchased")), else_=literal("complimentary")).label(
            "reason"
        ),
        ContentAccess.granted_at.label("granted_at"),
    ).where(ContentAccess.user_id == user_id, ContentAccess.revoked_at.is_(None))
    has_grant = (
        select(ContentAccess.id)
        .where(
            ContentAccess.user_id == user_id,
            ContentAccess.content_id == PlaybackProgress.content_id,
            ContentAccess.revoked_at.is_(None),
        )
        .exists()
    )
    started_free = (
        select(
            PlaybackProgress.content_id.label("content_id"),
            literal("free").label("reason"),
            null().label("granted_at"),
        )
        .join(Content, Content.id == PlaybackProgress.content_id)
        .where(PlaybackProgress.user_id == user_id, func.coalesce(Content.price_cents, 0) == 0, ~has_grant)
    )
    return union_all(granted, started_free).subquery("lib")


def library_query(user_id: uuid.UUID, filter_: str, sort: str) -> Select[Any]:
    lib = _rows(user_id)
    progress = PlaybackProgress
    stmt = (
        select(
            Content,
            MediaItem.duration_seconds,
            MediaItem.thumbnail_key,
            lib.c.reason,
            lib.c.granted_at,
            progress,
        )
        .select_from(lib)
        .join(Content, and_(Content.id == lib.c.content_id, Content.deleted_at.is_(None)))
        .join(MediaItem, MediaItem.id == Content.media_id)
        .outerjoin(progress, and_(progress.user_id == user_id, progress.content_id == Content.id))
    )
    if filter_ == "in_progress":
        stmt = stmt.where(progress.position_seconds > 0, progress.completed.is_(False))
    elif filter_ == "completed":
        stmt = stmt.where(progress.completed.is_(True))
    elif filter_ == "not_started":
        stmt = stmt.where(
            or_(progress.user_id.is_(None), and_(progress.position_seconds == 0, progress.completed.is_(False)))
        )
    if sort == "title":
        stmt = stmt.order_by(Content.title.asc(), Content.id.asc())
    elif sort == "purchased_at":
        stmt = stmt.order_by(lib.c.granted_at.desc().nulls_last(), Content.id.asc())
    else:  # recent
        stmt = stmt.order_by(func.coalesce(progress.updated_at, lib.c.granted_at).desc().nulls_last(), Content.id.asc())
    return stmt


def _item(row: Any) -> dict[str, Any]:
    content: Content = row[0]
    pp: PlaybackProgress | None = row[5]
    progress = None
    if pp is not None:
        progress = Entry(
            pp.user_id,
            pp.content_id,
            pp.position_seconds,
            pp.duration_seconds,
            pp.completed,
            pp.completed_at,
            pp.client_ts,
            pp.updated_at,
        ).as_progress()
    return {
        "content": {
            "id": content.id,
            "organization_id": content.organization_id,
            "title": content.title,
            "slug": content.slug,
            "content_type": content.content_type,
            "duration_seconds": row[1],
            "thumbnail_url": presigned_url(row[2]),
            "status": content.status,
        },
        "available": content.status == "published",
        "access": {"reason": row[3], "granted_at": row[4]},
        "progress": progress,
    }


def list_library(
    session: Session, user_id: uuid.UUID, *, filter_: str, sort: str, page: int, per_page: int
) -> dict[str, Any]:
    envelope = paginate(session, library_query(user_id, filter_, sort), page, per_page)
    envelope["items"] = [_item(row) for row in envelope["items"]]
    return envelope
