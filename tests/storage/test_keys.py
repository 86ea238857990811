"""The path helper: every key shape of the spec, and refusal of anything that is not a UUID/fixed name."""

from __future__ import annotations

import uuid

import pytest

from app.storage import keys

ORG = uuid.UUID("3b0e6a4c-0000-4000-8000-000000000001")
MEDIA = uuid.UUID("c7d2a1b2-0000-4000-8000-000000000002")
BASE = f"orgs/{ORG}/media/{MEDIA}/"


def test_media_prefix_and_originals() -> None:
    assert keys.media_prefix(ORG, MEDIA) == BASE
    expected = {
        "video/mp4": "mp4",
        "video/quicktime": "mov",
        "video/webm": "webm",
        "audio/mpeg": "mp3",
        "audio/mp4": "m4a",
        "audio/wav": "wav",
        "audio/ogg": "ogg",
        "audio/webm": "weba",
    }
    for mime, ext in expected.items():
        key = keys.original_key(ORG, MEDIA, mime)
        assert key == f"{BASE}original.{ext}"
        assert keys.content_type_for(key) == mime
    with pytest.raises(ValueError):
        keys.original_key(ORG, MEDIA, "video/x-msvideo")


def test_uuid_strings_are_accepted_in_canonical_form_only() -> None:
    assert keys.media_prefix(str(ORG), str(MEDIA)) == BASE
    assert keys.media_prefix(str(ORG).upper(), MEDIA) == BASE  # normalised to lower case
    for bad in ["", "x", "../etc", f"{{{ORG}}}", ORG.hex, f"urn:uuid:{ORG}", f"{ORG}/", f"{ORG}\n"]:
        with pytest.raises(ValueError):
            keys.media_prefix(bad, MEDIA)
    with pytest.raises(ValueError):
        keys.media_prefix(ORG, 42)  # type: ignore[arg-type]


def test_attempt_scoped_output_keys() -> None:
    assert keys.hls_prefix(ORG, MEDIA, 2) == f"{BASE}hls/a2/"
    assert keys.hls_master_key(ORG, MEDIA, 2) == f"{BASE}hls/a2/master.m3u8"
    assert keys.hls_rendition_playlist_key(ORG, MEDIA, 1, "720p") == f"{BASE}hls/a1/720p/index.m3u8"
    assert keys.hls_segment_key(ORG, MEDIA, 1, "720p", 1) == f"{BASE}hls/a1/720p/seg_00001.ts"
    assert keys.hls_segment_key(ORG, MEDIA, 3, "128k", 14400) == f"{BASE}hls/a3/128k/seg_14400.ts"
    assert keys.hls_preview_prefix(ORG, MEDIA, 1) == f"{BASE}hls/a1/preview/"
    assert keys.hls_preview_playlist_key(ORG, MEDIA, 1) == f"{BASE}hls/a1/preview/index.m3u8"
    assert keys.thumbnail_key(ORG, MEDIA, 1) == f"{BASE}thumbnails/a1/thumbnail.jpg"
    assert keys.waveform_key(ORG, MEDIA, 4) == f"{BASE}waveforms/a4/waveform.json"
    assert keys.attempt_prefixes(ORG, MEDIA, 2) == (f"{BASE}hls/a2/", f"{BASE}thumbnails/a2/", f"{BASE}waveforms/a2/")
    for rendition in ["1080p", "720p", "480p", "360p", "source", "128k", "64k", "preview"]:
        assert keys.hls_rendition_playlist_key(ORG, MEDIA, 1, rendition).endswith(f"/a1/{rendition}/index.m3u8")


@pytest.mark.parametrize("rendition", ["", "../720p", "720p/..", "720P", "a b", "x" * 40, "master"])
def test_rendition_names_are_whitelisted(rendition: str) -> None:
    with pytest.raises(ValueError):
        keys.hls_rendition_playlist_key(ORG, MEDIA, 1, rendition)


@pytest.mark.parametrize("attempt", [0, -1, True, "1", 1.0])
def test_attempts_are_positive_integers(attempt: object) -> None:
    with pytest.raises(ValueError):
        keys.hls_prefix(ORG, MEDIA, attempt)  # type: ignore[arg-type]


@pytest.mark.parametrize("index", [-1, 100_000, True])
def test_segment_index_range(index: object) -> None:
    with pytest.raises(ValueError):
        keys.hls_segment_key(ORG, MEDIA, 1, "720p", index)  # type: ignore[arg-type]


def test_output_attempt_parses_only_output_keys() -> None:
    assert keys.output_attempt(keys.hls_segment_key(ORG, MEDIA, 3, "360p", 7)) == 3
    assert keys.output_attempt(keys.thumbnail_key(ORG, MEDIA, 12)) == 12
    assert keys.output_attempt(keys.waveform_key(ORG, MEDIA, 1)) == 1
    assert keys.output_attempt(keys.original_key(ORG, MEDIA, "video/mp4")) is None
    assert keys.output_attempt(f"{BASE}hls/a0/master.m3u8") is None


def test_logo_keys_and_the_public_pattern() -> None:
    logo = uuid.uuid4()
    for ext in ["png", "jpg", "webp"]:
        key = keys.logo_key(ORG, logo, ext)
        assert key == f"orgs/{ORG}/branding/logo-{logo}.{ext}"
        assert keys.is_public_logo_key(key)
    with pytest.raises(ValueError):
        keys.logo_key(ORG, logo, "svg")
    with pytest.raises(ValueError):
        keys.logo_key(ORG, "not-a-uuid", "png")
    good = keys.logo_key(ORG, logo, "png")
    for bad in [
        keys.original_key(ORG, MEDIA, "video/mp4"),
        keys.thumbnail_key(ORG, MEDIA, 1),
        f"orgs/{ORG}/branding/logo-{logo}.svg",
        f"orgs/{ORG}/branding/logo-{logo}.jpeg",
        f"orgs/{ORG}/branding/../branding/logo-{logo}.png",
        f"orgs/{ORG}/branding/logo-{logo}.png/../../media/{MEDIA}/original.mp4",
        f"/{good}",
        f"x/{good}",
        f"{good}\n",
        good.upper(),
        f"orgs/not-a-uuid/branding/logo-{logo}.png",
        "",
    ]:
        assert not keys.is_public_logo_key(bad), bad


def test_content_types() -> None:
    assert keys.content_type_for(f"{BASE}hls/a1/master.m3u8") == "application/vnd.apple.mpegurl"
    assert keys.content_type_for(f"{BASE}hls/a1/720p/seg_00001.ts") == "video/mp2t"
    assert keys.content_type_for(f"{BASE}thumbnails/a1/thumbnail.jpg") == "image/jpeg"
    assert keys.content_type_for(f"{BASE}waveforms/a1/waveform.json") == "application/json"
    assert keys.content_type_for("orgs/x/branding/logo-y.png") == "image/png"
    assert keys.content_type_for("orgs/x/branding/logo-y.webp") == "image/webp"
    assert keys.content_type_for("a/b/original.MOV") == "video/quicktime"
    assert keys.content_type_for("a/b/file.exe") == "application/octet-stream"
    assert keys.content_type_for("a/b.d/noext") == "application/octet-stream"
