"""Access/playback test helpers: ready media with HLS files in storage, a catalogue world, URLs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask.testing import FlaskClient

from app.content.models import Content
from app.identity.models import User
from app.media import ladder
from app.media.models import MediaItem
from app.orgs.models import Organization
from app.storage import keys
from app.storage.base import Storage
from tests import factories
from tests.identity.helpers import add_member, auth, make_org, signed_in

ORIGINAL_BYTES = b"ORIGINAL-UPLOAD-BYTES-" + bytes(range(32))
SEGMENTS_PER_PLAYLIST = 3


def segment_bytes(media_id: uuid.UUID, rendition: str, index: int) -> bytes:
    return f"TS:{media_id}:{rendition}:{index}".encode() * 8


def _media_playlist(count: int) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:6", "#EXT-X-MEDIA-SEQUENCE:1"]
    lines += ["#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for index in range(1, count + 1):
        lines += ["#EXTINF:6.000000,", f"seg_{index:05d}.ts"]
    return "\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n"


def write_hls(storage: Storage, media: MediaItem, renditions: list[str], attempt: int = 1) -> None:
    """The files the ingest pipeline writes (jobs.md §6.4), small, plus the original upload."""
    org, mid = media.organization_id, media.id
    variants = []
    for name in renditions:
        size = {"720p": (1280, 720), "360p": (640, 360)}.get(name)
        codecs = ladder.AUDIO_CODECS if size is None else ladder.video_codecs(31, with_audio=True)
        variants.append(ladder.Variant(name, 1_000_000, 800_000, codecs, size))
    master = ladder.master_playlist(variants).encode()
    storage.put_bytes(keys.hls_master_key(org, mid, attempt), master, keys.CONTENT_TYPES["m3u8"])
    for name in [*renditions, keys.PREVIEW]:
        playlist = keys.hls_rendition_playlist_key(org, mid, attempt, name)
        storage.put_bytes(playlist, _media_playlist(SEGMENTS_PER_PLAYLIST).encode(), keys.CONTENT_TYPES["m3u8"])
        for index in range(1, SEGMENTS_PER_PLAYLIST + 1):
            seg = keys.hls_segment_key(org, mid, attempt, name, index)
            storage.put_bytes(seg, segment_bytes(mid, name, index), keys.CONTENT_TYPES["ts"])
    storage.put_bytes(media.original_key, ORIGINAL_BYTES, media.mime_type)
    if media.thumbnail_key:
        storage.put_bytes(media.thumbnail_key, b"\xff\xd8\xff thumbnail", "image/jpeg")


def ready_media(
    storage: Storage, org: Organization, created_by: User, *, media_type: str = "video", duration: int = 18
) -> MediaItem:
    media_id = uuid.uuid4()
    video = media_type == "video"
    renditions = ["720p", "360p"] if video else ["128k", "64k"]
    media: MediaItem = factories.MediaItemFactory(
        id=media_id,
        organization_id=org.id,
        created_by=created_by.id,
        media_type=media_type,
        status="ready",
        attempts=1,
        hls_master_key=keys.hls_master_key(org.id, media_id, 1),
        hls_preview_key=keys.hls_preview_playlist_key(org.id, media_id, 1),
        thumbnail_key=keys.thumbnail_key(org.id, media_id, 1) if video else None,
        waveform_key=None if video else keys.waveform_key(org.id, media_id, 1),
        renditions=renditions,
        duration_seconds=duration,
        width=1280 if video else None,
        height=720 if video else None,
        ready_at=datetime.now(UTC),
    )
    write_hls(storage, media, renditions)
    return media


@dataclass
class World:
    owner: User
    org: Organization
    media: MediaItem
    content: Content
    buyer: User
    stranger: User

    def add_content(self, **kwargs: Any) -> Content:
        kwargs.setdefault("media_id", self.media.id)
        content: Content = factories.PaidContentFactory(organization_id=self.org.id, created_by=self.owner.id, **kwargs)
        return content


def make_world(storage: Storage, *, grant: bool = True) -> World:
    owner = factories.UserFactory(email_verified_at=datetime.now(UTC), name="Olga Owner")
    org = make_org(owner)
    media = ready_media(storage, org, owner)
    content: Content = factories.PaidContentFactory(
        organization_id=org.id, created_by=owner.id, media_id=media.id, title="Knife Skills"
    )
    buyer = factories.UserFactory(email_verified_at=datetime.now(UTC), name="Ben Buyer")
    stranger = factories.UserFactory(name="Sam Stranger")
    world = World(owner, org, media, content, buyer, stranger)
    if grant:
        give_purchase(world, buyer, content)
    return world


def give_purchase(world: World, user: User, content: Content) -> Any:
    purchase = factories.PurchaseFactory(customer_id=user.id, content=content)
    factories.GrantFactory(
        user_id=user.id,
        content_id=content.id,
        organization_id=content.organization_id,
        source="purchase",
        purchase_id=purchase.id,
    )
    return purchase


def give_comp(user: User, content: Content, revoked: bool = False) -> Any:
    now = datetime.now(UTC)
    return factories.GrantFactory(
        user_id=user.id,
        content_id=content.id,
        organization_id=content.organization_id,
        source="complimentary",
        revoked_at=now if revoked else None,
        revoke_reason="admin" if revoked else None,
    )


def staff(world: World, role: str = "creator") -> User:
    return add_member(world.org, factories.UserFactory(), role)


def headers(user: User) -> dict[str, str]:
    return auth(signed_in(user))


def path_of(url: str) -> str:
    """``http://localhost:5000/x/y?q`` -> ``/x/y?q`` (the test client speaks to the app directly)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def uri_lines(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def stream(client: FlaskClient, user: User, content_id: uuid.UUID, **query: Any) -> Any:
    return client.get(f"/api/v1/content/{content_id}/stream", headers=headers(user), query_string=query)
