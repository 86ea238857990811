"""What media asks of content: whether a live content item uses a media item, and telling content
that a media item changed.

app.content sits above media: it imports media, never the reverse. The two answers here need its
table all the same, so app.content hands them over at start-up (``create_app`` calls
``app.content.for_media.supply``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, SQLColumnExpression
from sqlalchemy.orm import Session

MediaIdArg = uuid.UUID | SQLColumnExpression[uuid.UUID]
"""A media id value, or a column such as ``MediaItem.id`` (a correlated subquery)."""


@dataclass(frozen=True)
class FromContent:
    in_use: Callable[[MediaIdArg], ColumnElement[bool]]
    """SQL: an ``EXISTS`` that is true while a non-deleted content item points at the media id."""
    changed_after_commit: Callable[[Session, uuid.UUID], None]
    """After the commit, drop every content snapshot that shows this media item's facts."""


_from_content: FromContent | None = None


def use_content(supplied: FromContent) -> None:
    global _from_content
    _from_content = supplied


def _content() -> FromContent:
    if _from_content is None:
        raise RuntimeError("app.content has not supplied media's content answers (create_app does)")
    return _from_content


def in_use(media_id: MediaIdArg) -> ColumnElement[bool]:
    return _content().in_use(media_id)


def media_changed_after_commit(session: Session, media_id: uuid.UUID) -> None:
    _content().changed_after_commit(session, media_id)
