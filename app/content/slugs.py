"""Content slugs (api.md §7): generated from the title, unique per org among non-deleted rows."""

from __future__ import annotations

import re
import unicodedata
import uuid

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.content.models import Content

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SLUG_MAX = 100
BASE_MAX = 96  # room for "-2" … "-999" within the 100-character column
FALLBACK = "content"
_NON_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(title: str) -> str:
    """NFKD -> ASCII, lower-case, runs of non-``[a-z0-9]`` -> ``-``, trimmed, cut to 96, empty -> ``content``."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    slug = _NON_SLUG.sub("-", ascii_text.lower()).strip("-")
    slug = slug[:BASE_MAX].rstrip("-")
    return slug or FALLBACK


def slug_taken(session: Session, organization_id: uuid.UUID, slug: str, *, exclude: uuid.UUID | None = None) -> bool:
    stmt = select(Content.id).where(
        Content.organization_id == organization_id, Content.slug == slug, Content.deleted_at.is_(None)
    )
    if exclude is not None:
        stmt = stmt.where(Content.id != exclude)
    return session.scalar(stmt.limit(1)) is not None


def first_free_slug(session: Session, organization_id: uuid.UUID, base: str) -> str:
    """``base`` if free, else ``base-2``, ``base-3``, … (the first free one), in one query."""
    # ``base`` is [a-z0-9-] only, so it needs no LIKE escaping.
    used = set(
        session.scalars(
            select(Content.slug).where(
                Content.organization_id == organization_id,
                Content.deleted_at.is_(None),
                or_(Content.slug == base, Content.slug.like(f"{base}-%")),
            )
        )
    )
    if base not in used:
        return base
    n = 2
    while f"{base}-{n}" in used:
        n += 1
    return f"{base}-{n}"
