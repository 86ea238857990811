"""Builders shared by the media, content and catalogue route tests.

``Staff`` is an org with an owner, an admin and two creators, each with a Bearer header; media
and content rows are made with the factories (flushed in the per-test transaction).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.content.models import Content
from app.identity.models import User
from app.media.models import MediaItem
from app.orgs.models import Organization
from app.storage import keys
from tests import factories
from tests.identity.helpers import add_member, auth, make_org, make_user, signed_in


@dataclass
class Caller:
    user: User
    headers: dict[str, str]

    @property
    def id(self) -> uuid.UUID:
        return self.user.id


def caller(user: User | None = None) -> Caller:
    user = user or make_user()
    return Caller(user, auth(signed_in(user)))


@dataclass
class Staff:
    org: Organization
    owner: Caller
    admin: Caller
    creator: Caller
    other_creator: Caller


def make_staff(**org_kwargs: Any) -> Staff:
    owner = make_user()
    org = make_org(owner, **org_kwargs)
    return Staff(
        org=org,
        owner=caller(owner),
        admin=caller(add_member(org, role="admin")),
        creator=caller(add_member(org, role="creator")),
        other_creator=caller(add_member(org, role="creator")),
    )


def make_media(org_id: uuid.UUID, created_by: uuid.UUID, *, ready: bool = True, **kwargs: Any) -> MediaItem:
    """A media row; ``ready`` fills the outputs the ready CHECK requires (attempt 1 keys)."""
    media_id = kwargs.pop("id", uuid.uuid4())
    media_type = kwargs.pop("media_type", "video")
    values: dict[str, Any] = {"id": media_id, "organization_id": org_id, "created_by": created_by}
    values["media_type"] = media_type
    if ready:
        values.update(
            status="ready",
            attempts=1,
            hls_master_key=keys.hls_master_key(org_id, media_id, 1),
            hls_preview_key=keys.hls_preview_playlist_key(org_id, media_id, 1),
            duration_seconds=4,
            ready_at=datetime.now(UTC),
        )
        if media_type == "video":
            values.update(
                renditions=["360p"], thumbnail_key=keys.thumbnail_key(org_id, media_id, 1), width=640, height=360
            )
        else:
            values.update(renditions=["128k", "64k"], waveform_key=keys.waveform_key(org_id, media_id, 1))
    values.update(kwargs)
    media: MediaItem = factories.MediaItemFactory(**values)
    return media


def make_content(org_id: uuid.UUID, created_by: uuid.UUID, *, media: MediaItem | None = None, **kwargs: Any) -> Content:
    media = media or make_media(org_id, created_by, media_type=kwargs.get("content_type", "video"))
    values: dict[str, Any] = {
        "organization_id": org_id,
        "created_by": created_by,
        "media_id": media.id,
        "content_type": media.media_type,
        "status": "draft",
        "published_at": None,
    }
    values.update(kwargs)
    if values["status"] == "published" and values.get("published_at") is None:
        values["published_at"] = datetime.now(UTC)
    content: Content = factories.PaidContentFactory(**values)
    return content


__all__ = ["Caller", "Staff", "auth", "caller", "make_content", "make_media", "make_staff", "make_user", "signed_in"]
