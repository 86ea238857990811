"""Caption tracks of video media (api.md §6.2, data-model.md ``media_captions``).

The upload is parsed by ``app.media.webvtt`` and stored re-serialised under a fresh key per upload
(``…/captions/{language}-{uuid}.vtt``); a replaced file is deleted after the commit (the route
enqueues ``storage.delete_object``), so a URL already handed out keeps working until it expires.
Each stored file carries the HLS ``X-TIMESTAMP-MAP`` header that ties its zero to the first
timestamp of the media's own segments, read from the first segment when the caption is stored.

Captions are accepted only for ``ready`` video media: the check against the media's duration and
that timestamp both need the finished ingest (422 ``MEDIA_NOT_READY`` before, as for publishing).
A change replaces the snapshot tokens of the content using the media
(``usage.media_changed_after_commit``), so the stream answer (``captions``) and the fast path see
it on their next request.

Like the rest of ``app.media.service``: takes a session, flushes, raises ``AppError``, never commits.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import errors
from app.media import usage, webvtt
from app.media.models import MediaCaption, MediaItem
from app.media.service import presigned_url
from app.storage import Storage, StorageError
from app.storage import keys as storage_keys

log = structlog.get_logger(__name__)

INVALID_CAPTIONS = "INVALID_CAPTIONS"
CAPTION_NOT_FOUND = "CAPTION_NOT_FOUND"
DELETE_OBJECT_TASK = "storage.delete_object"
VTT_CONTENT_TYPE = "text/vtt; charset=utf-8"
# The first segment is read in chunks until both an audio and a video PES start were seen (the
# keyframe's PES comes first and can be large; the audio's first one may come later in the file yet
# start earlier in time), at most the cap.
SEGMENT_CHUNK_BYTES = 188 * 2048
SEGMENT_READ_CAP_BYTES = 32 * 1024 * 1024
TS_PACKET = 188

# English names of common languages: the default ``label`` (players show it in their menus).
LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "en-GB": "English (United Kingdom)",
    "en-US": "English (United States)", "es": "Spanish", "es-419": "Spanish (Latin America)",
    "es-ES": "Spanish (Spain)", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish",
    "fil": "Filipino", "fr": "French", "fr-CA": "French (Canada)", "ga": "Irish", "gl": "Galician",
    "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian",
    "hy": "Armenian", "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese",
    "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "lt": "Lithuanian",
    "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam", "mr": "Marathi", "ms": "Malay",
    "mt": "Maltese", "my": "Burmese", "nb": "Norwegian Bokmål", "ne": "Nepali", "nl": "Dutch",
    "nn": "Norwegian Nynorsk", "no": "Norwegian", "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese",
    "pt-BR": "Portuguese (Brazil)", "pt-PT": "Portuguese (Portugal)", "ro": "Romanian", "ru": "Russian",
    "sk": "Slovak", "sl": "Slovenian", "sq": "Albanian", "sr": "Serbian", "sv": "Swedish",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish",
    "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "yue": "Cantonese",
    "zh": "Chinese", "zh-Hans": "Chinese (Simplified)", "zh-Hant": "Chinese (Traditional)",
    "zh-CN": "Chinese (China)", "zh-TW": "Chinese (Taiwan)", "zu": "Zulu",
}  # fmt: skip


def default_label(language: str) -> str:
    """The English name of the tag, else of its language subtag, else the tag itself."""
    return LANGUAGE_NAMES.get(language) or LANGUAGE_NAMES.get(language.split("-", 1)[0]) or language


def caption_view(caption: MediaCaption) -> dict[str, Any]:
    """The Caption object (api.md §6.2); ``url`` is a GET URL valid ``DOWNLOAD_URL_TTL_SECONDS``."""
    return {
        "language": caption.language,
        "label": caption.label,
        "cue_count": caption.cue_count,
        "size_bytes": caption.size_bytes,
        "url": presigned_url(caption.vtt_key),
        "created_at": caption.created_at,
        "updated_at": caption.updated_at,
    }


# ---- reads (the media routes and the HLS proxy) -----------------------------------------------


def captions_of(session: Session, media_id: uuid.UUID) -> list[MediaCaption]:
    """The media's captions by language."""
    stmt = select(MediaCaption).where(MediaCaption.media_id == media_id).order_by(MediaCaption.language)
    return list(session.scalars(stmt))


def caption_of(session: Session, media_id: uuid.UUID, language: str) -> MediaCaption | None:
    stmt = select(MediaCaption).where(MediaCaption.media_id == media_id, MediaCaption.language == language)
    return session.scalar(stmt)


def list_captions(session: Session, media: MediaItem) -> dict[str, Any]:
    return {"items": [caption_view(caption) for caption in captions_of(session, media.id)]}


# ---- the segments' first timestamp ----------------------------------------------------------


def _timestamp(p: bytes) -> int:
    """A 33-bit PES timestamp from its 5 bytes."""
    return ((p[0] >> 1) & 0x07) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1


def first_timestamps(data: bytes) -> dict[str, int]:
    """The earliest timestamp (90 kHz; PTS, or DTS where it is earlier, as for B-frames) of the
    audio and of the video PES packets that start in ``data`` (MPEG-TS, from its first packet), as
    ``{"audio": …, "video": …}`` for the kinds found."""
    found: dict[str, int] = {}
    for offset in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        packet = data[offset : offset + TS_PACKET]
        if packet[0] != 0x47:
            break  # lost sync: what was read so far is all we trust
        if not packet[1] & 0x40:  # payload_unit_start_indicator
            continue
        adaptation = (packet[3] >> 4) & 0x3
        if adaptation in (0, 2):  # reserved, or no payload
            continue
        start = 4 + (1 + packet[4] if adaptation == 3 else 0)
        pes = packet[start:]
        if len(pes) < 19 or pes[:3] != b"\x00\x00\x01" or not pes[7] & 0x80:
            continue  # a PSI section (PAT/PMT), or a PES without a PTS
        stream_id = pes[3]
        kind = "audio" if 0xC0 <= stream_id <= 0xDF else "video" if 0xE0 <= stream_id <= 0xEF else None
        if kind is None:
            continue
        stamp = _timestamp(pes[9:14])
        if pes[7] & 0x40:  # a DTS follows the PTS
            stamp = min(stamp, _timestamp(pes[14:19]))
        found[kind] = min(stamp, found.get(kind, stamp))
    return found


def segment_start_pts(media: MediaItem, storage: Storage) -> int | None:
    """Where the media's segments start: the earliest audio or video timestamp (a video's first DTS
    comes before its first PTS when it has B-frames) of the first segment of its first rendition
    (all renditions come from one encode and start together). That is the zero of the timeline
    players such as hls.js build from the segments (hls.js takes the lowest audio PTS / video DTS),
    so a cue at 00:00:01.000 shows one second into the video. None when it cannot be read (the
    caption file then has no timestamp map)."""
    if not media.hls_master_key or not media.renditions:
        return None
    folder = f"{posixpath.dirname(media.hls_master_key)}/{media.renditions[0]}"
    try:
        playlist = storage.get_bytes(f"{folder}/index.m3u8").decode("utf-8")
        first = next((line.strip() for line in playlist.splitlines() if line.strip() and line[0] != "#"), None)
        if first is None or "/" in first or not first.endswith(".ts"):
            return None
        key = f"{folder}/{first}"
        info = storage.head(key)
        if info is None:
            return None
        size = min(info.size, SEGMENT_READ_CAP_BYTES)
        offset = 0
        found: dict[str, int] = {}
        while offset < size and len(found) < 2:
            chunk = storage.read_range(key, offset, min(SEGMENT_CHUNK_BYTES, size - offset))
            if not chunk:
                break
            offset += len(chunk)  # chunks are whole packets: each is scanned on its own
            for kind, stamp in first_timestamps(chunk).items():
                found[kind] = min(stamp, found.get(kind, stamp))
    except (StorageError, UnicodeDecodeError):
        log.warning("captions.segment_unreadable", media_id=str(media.id))
        return None
    return min(found.values()) if found else None


# ---- changes ----------------------------------------------------------------------------------


def require_video(media: MediaItem) -> None:
    if media.media_type != "video":
        raise errors.Unprocessable("Captions can only be added to video media.", code=INVALID_CAPTIONS)


def put_caption(
    session: Session,
    media: MediaItem,
    *,
    language: str,
    label: str | None,
    data: bytes,
    user_id: uuid.UUID,
    storage: Storage,
) -> tuple[MediaCaption, str | None]:
    """Parse, re-serialise and store the file, then insert or replace the row (the caller holds the
    media row's lock). Returns the caption and the key of the file it replaced (to delete after
    the commit). 422 INVALID_CAPTIONS / MEDIA_NOT_READY; 503 when storage fails."""
    require_video(media)
    if media.status != "ready":
        raise errors.Unprocessable("The media is not ready yet; add captions once it is.", code="MEDIA_NOT_READY")
    try:
        parsed = webvtt.parse(data, duration_seconds=media.duration_seconds)
        body = webvtt.serialise(parsed, mpegts=segment_start_pts(media, storage))
    except webvtt.InvalidCaptions as exc:
        raise errors.Unprocessable(str(exc), code=INVALID_CAPTIONS) from None
    key = storage_keys.caption_key(media.organization_id, media.id, language, uuid.uuid4())
    try:
        storage.put_bytes(key, body, VTT_CONTENT_TYPE)
    except StorageError:
        log.warning("captions.store_failed", media_id=str(media.id))
        raise errors.ServiceUnavailable("storage") from None
    caption = session.scalar(
        select(MediaCaption)
        .where(MediaCaption.media_id == media.id, MediaCaption.language == language)
        .with_for_update()
    )
    previous = None
    if caption is None:
        caption = MediaCaption(media_id=media.id, language=language, created_by=user_id)
        session.add(caption)
    else:
        previous = caption.vtt_key
    caption.label = label or default_label(language)
    caption.vtt_key = key
    caption.size_bytes = len(body)
    caption.cue_count = len(parsed.cues)
    session.flush()
    session.refresh(caption)
    usage.media_changed_after_commit(session, media.id)
    return caption, previous


def delete_caption(session: Session, media: MediaItem, language: str) -> str:
    """Delete the row (the caller holds the media row's lock); returns its file's key to delete
    after the commit. 404 CAPTION_NOT_FOUND."""
    caption = caption_of(session, media.id, language)
    if caption is None:
        raise errors.NotFound("This media item has no captions in that language.", code=CAPTION_NOT_FOUND)
    key = caption.vtt_key
    session.delete(caption)
    session.flush()
    usage.media_changed_after_commit(session, media.id)
    return key
