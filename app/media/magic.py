"""Magic bytes of the allowed media types and the ffmpeg demuxer each one is read with (security.md §8).

upload-complete, retry and the ingest worker check the leading bytes against the declared MIME
type; the worker then forces the demuxer that belongs to that type on every ffprobe/ffmpeg run,
so a file is never read as whatever ffmpeg guesses (an HLS or concat playlist behind an ID3 tag
would otherwise be followed to other files).
"""

from __future__ import annotations

MAGIC_BYTES = 4096  # security.md §8: the first 4 KiB are checked

_QUICKTIME_ATOMS = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}

#: The demuxer forced on every read of an original of this MIME type (``-f``).
DEMUXERS: dict[str, str] = {
    "video/mp4": "mov",
    "audio/mp4": "mov",
    "video/quicktime": "mov",
    "video/webm": "matroska",
    "audio/webm": "matroska",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
}


def magic_matches(mime_type: str, head: bytes) -> bool:
    """True when ``head`` (the object's leading bytes) fits the declared MIME type."""
    if mime_type in ("video/mp4", "audio/mp4"):
        return head[4:8] == b"ftyp"
    if mime_type == "video/quicktime":
        return head[4:8] in _QUICKTIME_ATOMS
    if mime_type in ("video/webm", "audio/webm"):
        return head.startswith(b"\x1a\x45\xdf\xa3")
    if mime_type == "audio/mpeg":
        return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
    if mime_type == "audio/wav":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    if mime_type == "audio/ogg":
        return head.startswith(b"OggS")
    return False


def demuxer_for(mime_type: str) -> str:
    """The demuxer of a type whose magic bytes matched; ValueError for a type outside the allow-list."""
    try:
        return DEMUXERS[mime_type]
    except KeyError:
        raise ValueError(f"no demuxer for {mime_type!r}") from None


__all__ = ["DEMUXERS", "MAGIC_BYTES", "demuxer_for", "magic_matches"]
