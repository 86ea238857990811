"""The only place object keys are built (security.md §8, jobs.md §6.4, data-model.md).

Keys are made from UUIDs, attempt numbers, rendition names and fixed file names, never from
client input, so a key can never escape its ``orgs/{org_id}/`` prefix. Every function validates
its parts and raises ``ValueError`` for anything else.

Layout::

    orgs/{org}/media/{media}/original.{ext}
    orgs/{org}/media/{media}/hls/a{n}/master.m3u8
    orgs/{org}/media/{media}/hls/a{n}/{rendition}/index.m3u8
    orgs/{org}/media/{media}/hls/a{n}/{rendition}/seg_00001.ts
    orgs/{org}/media/{media}/hls/a{n}/preview/index.m3u8
    orgs/{org}/media/{media}/thumbnails/a{n}/thumbnail.jpg
    orgs/{org}/media/{media}/waveforms/a{n}/waveform.json
    orgs/{org}/media/{media}/captions/{language}-{uuid}.vtt
    orgs/{org}/branding/logo-{uuid}.{png|jpg|webp}
"""

from __future__ import annotations

import re
import uuid

UuidLike = uuid.UUID | str

#: Extension of the stored original per declared MIME type (api.md §6).
ORIGINAL_EXTENSIONS: dict[str, str] = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
    "audio/webm": "weba",
}

#: Logo extension per detected image type (api.md §5).
LOGO_EXTENSIONS: dict[str, str] = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

CONTENT_TYPES: dict[str, str] = {
    "m3u8": "application/vnd.apple.mpegurl",
    "ts": "video/mp2t",
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "json": "application/json",
    "vtt": "text/vtt; charset=utf-8",
    **{ext: mime for mime, ext in ORIGINAL_EXTENSIONS.items()},
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

PREVIEW = "preview"
MAX_SEGMENT_INDEX = 99_999  # seg_NNNNN.ts; 24 h at 6 s per segment is 14 400

_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_PUBLIC_LOGO = re.compile(rf"orgs/{_UUID}/branding/logo-{_UUID}\.(?:png|jpg|webp)")
# Ladder names (jobs.md §6.2/§6.3): 1080p…360p, source, 128k/64k, plus the preview playlist.
_RENDITION = re.compile(r"[0-9]{2,4}p|[0-9]{2,3}k|source|preview")
_ORIGINAL = re.compile(
    rf"orgs/({_UUID})/media/({_UUID})/original\.(?:{'|'.join(map(re.escape, ORIGINAL_EXTENSIONS.values()))})"
)
_OUTPUT_ATTEMPT = re.compile(rf"orgs/{_UUID}/media/{_UUID}/(?:hls|thumbnails|waveforms)/a([1-9][0-9]*)/.+")


def _uuid(value: UuidLike, what: str) -> str:
    """Canonical lower-case hyphenated form; other spellings (braces, urn:, no hyphens) are refused."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        text = value.lower()
        try:
            if str(uuid.UUID(text)) == text:
                return text
        except ValueError:
            pass
    raise ValueError(f"{what} is not a UUID: {value!r}")


def _attempt(value: int) -> int:
    # bool is an int subclass; True must not become "a1".
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"attempt must be a positive integer: {value!r}")
    return value


def _rendition(value: str) -> str:
    if not isinstance(value, str) or not _RENDITION.fullmatch(value):
        raise ValueError(f"not a rendition name: {value!r}")
    return value


# ---- media ------------------------------------------------------------------------------


def media_prefix(org_id: UuidLike, media_id: UuidLike) -> str:
    """Everything of one media item lives under this prefix (purged as a whole)."""
    return f"orgs/{_uuid(org_id, 'org_id')}/media/{_uuid(media_id, 'media_id')}/"


def original_key(org_id: UuidLike, media_id: UuidLike, mime_type: str) -> str:
    try:
        ext = ORIGINAL_EXTENSIONS[mime_type]
    except KeyError:
        raise ValueError(f"unsupported media MIME type: {mime_type!r}") from None
    return f"{media_prefix(org_id, media_id)}original.{ext}"


def parse_original_key(key: str) -> tuple[uuid.UUID, uuid.UUID, str] | None:
    """``(org_id, media_id, mime_type)`` of an original's key, else None.

    The MIME type is the declared one: the key's extension was chosen from it (``original_key``).
    """
    match = _ORIGINAL.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        return None
    ext = key.rsplit(".", 1)[1]
    mime = next(m for m, e in ORIGINAL_EXTENSIONS.items() if e == ext)
    return uuid.UUID(match.group(1)), uuid.UUID(match.group(2)), mime


def hls_prefix(org_id: UuidLike, media_id: UuidLike, attempt: int) -> str:
    return f"{media_prefix(org_id, media_id)}hls/a{_attempt(attempt)}/"


def hls_master_key(org_id: UuidLike, media_id: UuidLike, attempt: int) -> str:
    return f"{hls_prefix(org_id, media_id, attempt)}master.m3u8"


def hls_rendition_prefix(org_id: UuidLike, media_id: UuidLike, attempt: int, rendition: str) -> str:
    return f"{hls_prefix(org_id, media_id, attempt)}{_rendition(rendition)}/"


def hls_rendition_playlist_key(org_id: UuidLike, media_id: UuidLike, attempt: int, rendition: str) -> str:
    return f"{hls_rendition_prefix(org_id, media_id, attempt, rendition)}index.m3u8"


def hls_segment_key(org_id: UuidLike, media_id: UuidLike, attempt: int, rendition: str, index: int) -> str:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_SEGMENT_INDEX:
        raise ValueError(f"segment index out of range: {index!r}")
    return f"{hls_rendition_prefix(org_id, media_id, attempt, rendition)}seg_{index:05d}.ts"


def hls_preview_prefix(org_id: UuidLike, media_id: UuidLike, attempt: int) -> str:
    return hls_rendition_prefix(org_id, media_id, attempt, PREVIEW)


def hls_preview_playlist_key(org_id: UuidLike, media_id: UuidLike, attempt: int) -> str:
    return hls_rendition_playlist_key(org_id, media_id, attempt, PREVIEW)


def thumbnail_prefix(org_id: UuidLike, media_id: UuidLike, attempt: int) -> str:
    return f"{media_prefix(org_id, media_id)}thumbnails/a{_attempt(attempt)}/"


def thumbnail_key(org_id: UuidLike, media_id: UuidLike, attempt: int) -> str:
    return f"{thumbnail_prefix(org_id, media_id, attempt)}thumbnail.jpg"


def waveform_prefix(org_id: UuidLike, media_id: UuidLike, attempt: int) -> str:
    return f"{media_prefix(org_id, media_id)}waveforms/a{_attempt(attempt)}/"


def waveform_key(org_id: UuidLike, media_id: UuidLike, attempt: int) -> str:
    return f"{waveform_prefix(org_id, media_id, attempt)}waveform.json"


def attempt_prefixes(org_id: UuidLike, media_id: UuidLike, attempt: int) -> tuple[str, str, str]:
    """Every prefix an ingest attempt writes to ("delete the attempt prefix", jobs.md §6.4)."""
    return (
        hls_prefix(org_id, media_id, attempt),
        thumbnail_prefix(org_id, media_id, attempt),
        waveform_prefix(org_id, media_id, attempt),
    )


def output_attempt(key: str) -> int | None:
    """The attempt number of an output key (hls/thumbnails/waveforms), else None (e.g. the original)."""
    match = _OUTPUT_ATTEMPT.fullmatch(key)
    return int(match.group(1)) if match else None


_CAPTION_LANGUAGE = re.compile(r"[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,8}){0,8}")


def caption_key(org_id: UuidLike, media_id: UuidLike, language: str, caption_id: UuidLike) -> str:
    """A caption file (data-model.md ``media_captions.vtt_key``): a new key per upload, so a
    replaced file never changes under a URL already handed out. ``language`` is a BCP 47 tag
    (letters, digits and hyphens only; the caller validated it)."""
    if not isinstance(language, str) or len(language) > 35 or not _CAPTION_LANGUAGE.fullmatch(language):
        raise ValueError(f"not a language tag: {language!r}")
    return f"{media_prefix(org_id, media_id)}captions/{language}-{_uuid(caption_id, 'caption_id')}.vtt"


# ---- branding ---------------------------------------------------------------------------


def logo_key(org_id: UuidLike, logo_id: UuidLike, ext: str) -> str:
    if ext not in LOGO_EXTENSIONS.values():
        raise ValueError(f"unsupported logo extension: {ext!r}")
    return f"orgs/{_uuid(org_id, 'org_id')}/branding/logo-{_uuid(logo_id, 'logo_id')}.{ext}"


def is_public_logo_key(key: str) -> bool:
    """True only for ``orgs/<uuid>/branding/logo-<uuid>.(png|jpg|webp)``: the one public object kind."""
    return isinstance(key, str) and _PUBLIC_LOGO.fullmatch(key) is not None


# ---- content types ----------------------------------------------------------------------


def content_type_for(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    if "." not in name:
        return DEFAULT_CONTENT_TYPE
    return CONTENT_TYPES.get(name.rsplit(".", 1)[-1].lower(), DEFAULT_CONTENT_TYPE)
