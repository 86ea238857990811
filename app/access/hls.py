"""The HLS proxy (api.md §10, security.md §7): token check and playlist rewriting.

The stored playlists (jobs.md §6.4) use relative URIs: the master lists ``<rendition>/index.m3u8``
and each media playlist lists ``seg_NNNNN.ts``. The proxy serves them with every variant URI
pointing back at the proxy (same token) and every segment URI replaced by a signed storage URL
for that exact object (S3 presigned GET, or the app's ``/storage/download/<token>/seg_NNNNN.ts``)
that expires with the stream token (at least 60 s). Both URLs' paths end in the segment's file
name: ffmpeg, mpv and other players refuse segment URLs without a known extension. Anything in a
stored playlist that is not a plain file name next to the playlist is dropped, so no other object
(least of all the original upload) can be reached through a playlist.

Captions (api.md §6.2): a ``full`` master gets one ``#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs"``
line per caption of the media and ``SUBTITLES="subs"`` on every variant; each points at the
proxy's subtitle playlist (``…/subs/{language}.m3u8``), one segment spanning the duration whose
URI is a signed URL of the stored, re-serialised VTT (which carries the ``X-TIMESTAMP-MAP`` that
lines its cues up with the video segments). Preview masters list no captions.

Stored playlists are immutable (attempt-scoped keys are written once), so their text is kept in
a small per-process LRU; the per-request work is verifying the token, one indexed query, the
cached access rule and the signing.
"""

from __future__ import annotations

import json
import posixpath
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from flask import current_app
from sqlalchemy.orm import Session

from app import errors
from app.access.service import CONTENT_NOT_FOUND, AccessDenied, ContentMeta, can_access, load_content
from app.content.models import Content
from app.http import not_found
from app.media.captions import VTT_CONTENT_TYPE, caption_of, captions_of
from app.media.models import MediaCaption, MediaItem
from app.media.service import presigned_url
from app.schemas import format_timestamp
from app.security.hls_tokens import HlsClaims, hls_master_url, mint_hls_token, verify_hls_token
from app.storage import Storage, get_storage
from app.storage.base import ObjectNotFound, StorageError
from app.storage.keys import PREVIEW, content_type_for

log = structlog.get_logger(__name__)

MPEGURL = "application/vnd.apple.mpegurl"
CACHE_CONTROL = "private, no-store"
MIN_SEGMENT_TTL_SECONDS = 60
PREVIEW_MAX_SHORT_SIDE = 720  # the preview is cut from the highest rendition at most 720 p (jobs.md §6.2)

# A URI we rewrite must be a bare file name next to its playlist: no scheme, no slash, no "..".
_FILE_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9]+)?")
_VARIANT_URI = re.compile(r"([A-Za-z0-9]+)/index\.m3u8")
_URI_ATTR = re.compile(r'URI="([^"]*)"')
_RESOLUTION = re.compile(r"RESOLUTION=(\d+)x(\d+)")


@dataclass(frozen=True, slots=True)
class Playback:
    token: str
    claims: HlsClaims
    content: Content
    media: MediaItem


def authorize(session: Session, token: str) -> Playback:
    """Token (403 INVALID_SIGNED_URL) -> content still visible and on the token's media (404) ->
    for non-staff ``full`` tokens, access still holds (403 ACCESS_DENIED, cached <= 60 s)."""
    claims = verify_hls_token(token)
    loaded = load_content(session, claims.content_id)
    if loaded is None:
        raise not_found(CONTENT_NOT_FOUND)
    content, media = loaded
    if (
        content.media_id != claims.media_id
        or media.deleted_at is not None
        or media.status != "ready"
        or not media.hls_master_key
    ):
        raise not_found(CONTENT_NOT_FOUND)
    if claims.scope == "preview":
        if content.status != "published" or not media.hls_preview_key:
            raise not_found(CONTENT_NOT_FOUND)
        return Playback(token, claims, content, media)
    assert claims.user_id is not None  # verify_hls_token: a full token always names its user
    decision = can_access(session, claims.user_id, content)
    if content.status != "published" and not decision.is_staff:
        raise not_found(CONTENT_NOT_FOUND)
    if not decision.has_access:
        raise AccessDenied()
    return Playback(token, claims, content, media)


# ---- stored playlists ---------------------------------------------------------------------------


class _PlaylistCache:
    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, storage: Storage, key: str) -> str:
        ident = (id(storage), key)
        with self._lock:
            text = self._items.get(ident)
            if text is not None:
                self._items.move_to_end(ident)
                return text
        text = storage.get_bytes(key).decode("utf-8")
        with self._lock:
            self._items[ident] = text
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return text

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


playlists = _PlaylistCache()


def _read(key: str) -> str:
    try:
        return playlists.get(get_storage(), key)
    except ObjectNotFound:
        log.error("hls.playlist_missing", key=key)
        raise not_found(CONTENT_NOT_FOUND) from None
    except (StorageError, UnicodeDecodeError) as exc:
        raise errors.ServiceUnavailable("storage") from exc


# ---- master -------------------------------------------------------------------------------------


def proxy_base(token: str) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/api/v1/stream/{token}"


SUBTITLE_GROUP = "subs"


def subtitle_tracks(session: Session, playback: Playback) -> list[MediaCaption]:
    """The captions a master lists: the media's, for ``full`` tokens of video; none for previews."""
    if playback.claims.scope == "preview" or playback.media.media_type != "video":
        return []
    return captions_of(session, playback.media.id)


def _quoted(value: str) -> str:
    # An HLS quoted-string cannot hold '"' or a line break (labels have no control characters).
    return value.replace('"', "'").replace("\r", " ").replace("\n", " ")


def _subtitle_media_lines(tracks: list[MediaCaption], base: str) -> list[str]:
    return [
        f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="{SUBTITLE_GROUP}",LANGUAGE="{track.language}",'
        f'NAME="{_quoted(track.label)}",AUTOSELECT=YES,DEFAULT=NO,URI="{base}/subs/{track.language}.m3u8"'
        for track in tracks
    ]


def master_playlist(playback: Playback, tracks: list[MediaCaption] | None = None) -> str:
    """The stored master with variant URIs pointing at the proxy and the caption ``tracks`` as a
    subtitles group; a preview token gets a master listing only the ``preview`` rendition."""
    media = playback.media
    assert media.hls_master_key is not None
    text = _read(media.hls_master_key)
    base = proxy_base(playback.token)
    if playback.claims.scope == "preview":
        return _preview_master(text, base)
    allowed = set(media.renditions)
    subtitles = _subtitle_media_lines(tracks or [], base)
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if subtitles and line.startswith("#EXT-X-STREAM-INF"):
                out.extend(subtitles)  # the group is declared before the first variant using it
                subtitles = []
            if tracks and line.startswith("#EXT-X-STREAM-INF:"):
                line = f'{line},SUBTITLES="{SUBTITLE_GROUP}"'
            out.append(line)
            continue
        match = _VARIANT_URI.fullmatch(line)
        if match is None or match.group(1) not in allowed:
            # Drop the variant together with its #EXT-X-STREAM-INF line.
            if out and out[-1].startswith("#EXT-X-STREAM-INF"):
                out.pop()
            log.warning("hls.variant_dropped", media_id=str(media.id))
            continue
        out.append(f"{base}/{match.group(1)}/index.m3u8")
    return "\n".join(out) + "\n"


def _variants(text: str) -> list[tuple[str, str]]:
    """(``#EXT-X-STREAM-INF`` line, rendition name) of a master playlist, in order."""
    found: list[tuple[str, str]] = []
    info: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-STREAM-INF"):
            info = line
        elif line and not line.startswith("#"):
            match = _VARIANT_URI.fullmatch(line)
            if info is not None and match is not None:
                found.append((info, match.group(1)))
            info = None
    return found


def _preview_master(text: str, base: str) -> str:
    variants = _variants(text)
    if not variants:
        raise not_found(CONTENT_NOT_FOUND)
    # The preview is cut from the highest rendition of at most 720 p (else the lowest); audio from
    # the first one. Its STREAM-INF attributes describe the preview's bitrate and size.
    chosen = variants[0][0]
    sized = [(info, _RESOLUTION.search(info)) for info, _ in variants]
    if all(match is not None for _, match in sized):
        fitting = [info for info, m in sized if m is not None and min(int(m[1]), int(m[2])) <= PREVIEW_MAX_SHORT_SIDE]
        chosen = fitting[0] if fitting else sized[-1][0]
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS", chosen, f"{base}/{PREVIEW}/index.m3u8"]
    return "\n".join(lines) + "\n"


# ---- media playlists ----------------------------------------------------------------------------


def rendition_key(media: MediaItem, rendition: str) -> str:
    if rendition == PREVIEW:
        assert media.hls_preview_key is not None
        return media.hls_preview_key
    assert media.hls_master_key is not None
    return f"{posixpath.dirname(media.hls_master_key)}/{rendition}/index.m3u8"


def allowed_rendition(playback: Playback, rendition: str) -> bool:
    if playback.claims.scope == "preview":
        return rendition == PREVIEW
    return rendition in playback.media.renditions


def segment_ttl(playback: Playback, now: float | None = None) -> int:
    remaining = playback.claims.expires_at.timestamp() - (time.time() if now is None else now)
    return max(MIN_SEGMENT_TTL_SECONDS, int(remaining))


def media_playlist(playback: Playback, rendition: str) -> str:
    """The rendition's playlist with every URI replaced by a signed URL of that exact object."""
    if not allowed_rendition(playback, rendition):
        raise errors.NotFound()
    key = rendition_key(playback.media, rendition)
    text = _read(key)
    folder = posixpath.dirname(key)
    storage = get_storage()
    ttl = segment_ttl(playback)

    def sign(name: str) -> str | None:
        if not _FILE_NAME.fullmatch(name) or name.endswith(".m3u8"):
            log.warning("hls.uri_dropped", media_id=str(playback.media.id))
            return None
        object_key = f"{folder}/{name}"
        return storage.presign_download(object_key, ttl, content_type=content_type_for(object_key))

    out: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            attr = _URI_ATTR.search(line)
            if attr is not None:  # EXT-X-MAP / EXT-X-KEY: same rule as segments
                url = sign(attr.group(1))
                if url is None:
                    continue
                line = f"{line[: attr.start(1)]}{url}{line[attr.end(1) :]}"
            out.append(line)
            continue
        url = sign(line)
        if url is None:
            if out and out[-1].startswith("#EXTINF"):
                out.pop()
            continue
        out.append(url)
    return "\n".join(out) + "\n"


# ---- subtitle playlists ---------------------------------------------------------------------------


def subtitle_playlist(session: Session, playback: Playback, language: str) -> str:
    """One WebVTT segment spanning the media's duration, its URI a signed URL of the stored file
    expiring with the token. 404 NOT_FOUND for previews and languages the media has no caption in."""
    if playback.claims.scope == "preview" or playback.media.media_type != "video":
        raise errors.NotFound()
    caption = caption_of(session, playback.media.id, language)
    if caption is None:
        raise errors.NotFound()
    duration = playback.media.duration_seconds or 1
    try:
        url = get_storage().presign_download(caption.vtt_key, segment_ttl(playback), content_type=VTT_CONTENT_TYPE)
    except StorageError as exc:
        raise errors.ServiceUnavailable("storage") from exc
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{duration}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        f"#EXTINF:{duration:.3f},",
        url,
        "#EXT-X-ENDLIST",
    ]
    return "\n".join(lines) + "\n"


# ---- stream issuance (GET /content/{id}/stream) ----------------------------------------------------


def stream_answer(meta: ContentMeta, user_id: uuid.UUID, expires_in: int) -> str:
    """The stream route's JSON (``StreamSchema`` documents it) for content the caller may play:
    a fresh HLS token bound to the user, and the item's playback facts.

    Serialised here rather than by the schema: every field is already a JSON value, and the
    schema's dump was a visible share of this hot path (app/access/fast_path.py answers with it too)."""
    expires_at = (datetime.now(UTC) + timedelta(seconds=expires_in)).replace(microsecond=0)
    token = mint_hls_token(
        content_id=meta.id, media_id=meta.media_id, user_id=user_id, scope="full", expires_at=expires_at
    )
    body = {
        "manifest_url": hls_master_url(token),
        "expires_at": format_timestamp(expires_at),
        "content_type": meta.content_type,
        "preview": False,
        "duration_seconds": meta.duration_seconds,
        "renditions": meta.renditions,
        "thumbnail_url": presigned_url(meta.thumbnail_key),
        "waveform_url": presigned_url(meta.waveform_key),
        "captions": [{"language": language, "label": label} for language, label in meta.captions],
    }
    return json.dumps(body) + "\n"
