"""What media shows of content: whether a live content item uses a media item (DELETE's 409
``MEDIA_IN_USE``, the abandoned-upload sweep), and the snapshot tokens to replace once a media item
changes (ingest finished).

Media sits below content and does not import it; ``supply`` (called by ``create_app``) hands it
these answers.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists

from app.content.cache import media_changed_after_commit
from app.content.models import Content
from app.media import usage
from app.media.usage import MediaIdArg


def supply() -> None:
    """Hand media its content answers (idempotent: every app of the process shares them)."""
    usage.use_content(usage.FromContent(in_use=in_use, changed_after_commit=media_changed_after_commit))


def in_use(media_id: MediaIdArg) -> ColumnElement[bool]:
    """``EXISTS`` a non-deleted content item pointing at ``media_id``."""
    return exists().where(Content.media_id == media_id, Content.deleted_at.is_(None))
