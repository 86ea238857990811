"""Caption routes (api.md §6.2): PUT/GET/DELETE, roles, the errors, and the stored re-serialised file."""

from __future__ import annotations

import posixpath
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.media import captions, webvtt
from app.media.models import MediaCaption, MediaItem
from app.storage import Storage
from tests.content.helpers import Staff, caller, make_media, make_staff, make_user
from tests.identity.helpers import add_member, make_org
from tests.media.conftest import Sent

VTT = b"WEBVTT\n\n00:00.500 --> 00:01.500\nHello <b>there</b>\n\n00:02.000 --> 00:03.000\n<script>x</script>\n"
VTT_TYPE = {"Content-Type": "text/vtt"}


@pytest.fixture()
def staff(db_session: Session) -> Staff:
    return make_staff()


@pytest.fixture()
def media(staff: Staff) -> MediaItem:
    return make_media(staff.org.id, staff.creator.id)


@pytest.fixture()
def storage(app: Flask) -> Storage:
    backend: Storage = app.extensions["storage"]
    return backend


def url(media_id: Any, language: str | None = None) -> str:
    return f"/api/v1/media/{media_id}/captions" + (f"/{language}" if language else "")


def put(client: FlaskClient, who: Any, media_id: Any, language: str = "en", data: bytes = VTT, **kwargs: Any) -> Any:
    headers = {**who.headers, **kwargs.pop("headers", VTT_TYPE)}
    return client.put(url(media_id, language), data=data, headers=headers, **kwargs)


def count_captions(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(MediaCaption)) or 0


def stored_keys(storage: Storage, media: MediaItem) -> list[str]:
    return sorted(storage.list_keys(f"orgs/{media.organization_id}/media/{media.id}/captions/"))


def stamp(prefix: int, value: int) -> bytes:
    return bytes(
        [
            prefix | ((value >> 29) & 0x0E),
            (value >> 22) & 0xFF,
            0x01 | ((value >> 14) & 0xFE),
            (value >> 7) & 0xFF,
            0x01 | ((value << 1) & 0xFE),
        ]
    )


def pes_packet(pts: int, stream_id: int = 0xE0, pid: int = 0x100, dts: int | None = None) -> bytes:
    """One MPEG-TS packet starting a PES packet with ``pts`` (and ``dts``), as ffmpeg's mpegts muxer writes them."""
    only_pts = b"\x80\x80\x05" + stamp(0x21, pts)
    header = only_pts if dts is None else b"\x80\xc0\x0a" + stamp(0x31, pts) + stamp(0x11, dts)
    pes = b"\x00\x00\x01" + bytes([stream_id]) + b"\x00\x00" + header
    return (bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10]) + pes).ljust(188, b"\xff")


def write_first_segment(storage: Storage, media: MediaItem, data: bytes) -> None:
    assert media.hls_master_key is not None
    folder = f"{posixpath.dirname(media.hls_master_key)}/{media.renditions[0]}"
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:4.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n"
    storage.put_bytes(f"{folder}/index.m3u8", playlist.encode(), "application/vnd.apple.mpegurl")
    storage.put_bytes(f"{folder}/seg_00001.ts", data, "video/mp2t")


# ---- PUT -----------------------------------------------------------------------------------------


def test_put_stores_a_re_serialised_file_and_answers_the_caption(
    client: FlaskClient, db_session: Session, staff: Staff, media: MediaItem, storage: Storage
) -> None:
    r = put(client, staff.creator, media.id)
    assert r.status_code == 200, r.json
    body = r.json
    assert set(body) == {"language", "label", "cue_count", "size_bytes", "url", "created_at", "updated_at"}
    assert (body["language"], body["label"], body["cue_count"]) == ("en", "English", 2)
    # The caption's URL is a signed download URL ending in the object's own file name.
    path = urlsplit(body["url"]).path
    assert path.startswith("/storage/download/") and path.endswith(".vtt")
    [key] = stored_keys(storage, media)
    assert posixpath.basename(key) == posixpath.basename(path)
    assert key.startswith(f"orgs/{media.organization_id}/media/{media.id}/captions/en-") and key.endswith(".vtt")
    served = client.get(path)
    assert served.status_code == 200 and served.headers["Content-Type"].startswith("text/vtt")
    assert served.data == storage.get_bytes(key) and body["size_bytes"] == len(served.data)
    assert served.data == (
        b"WEBVTT\n\n00:00:00.500 --> 00:00:01.500\nHello <b>there</b>\n\n"
        b"00:00:02.000 --> 00:00:03.000\n&lt;script&gt;x&lt;/script&gt;\n"
    )  # the fake segments are not MPEG-TS: no timestamp map
    row = db_session.scalar(select(MediaCaption).where(MediaCaption.media_id == media.id))
    assert row is not None and (row.created_by, row.vtt_key, row.size_bytes) == (
        staff.creator.id,
        key,
        len(served.data),
    )


def test_the_stored_file_maps_its_zero_to_the_first_segment_timestamp(
    client: FlaskClient, staff: Staff, media: MediaItem, storage: Storage
) -> None:
    # The video's PES first (PTS 1.48 s, DTS 1.4 s: B-frames), then far later in the file the
    # audio's (1.4587 s): the reader goes on until it has seen both; the earliest stamp is the start.
    filler = bytes([0x47, 0x01, 0x00, 0x10]).ljust(188, b"\xff") * 4000  # ~750 KiB of payload packets
    segment = pes_packet(133_200, dts=126_000) + filler + pes_packet(131_280, 0xC0, 0x101)
    write_first_segment(storage, media, segment)
    r = put(client, staff.creator, media.id, "fr")
    assert r.status_code == 200, r.json
    data = client.get(urlsplit(r.json["url"]).path).data
    assert data.startswith(b"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n")
    assert captions.first_timestamps(segment) == {"video": 126_000, "audio": 131_280}
    assert captions.first_timestamps(pes_packet(2**33 - 1)) == {"video": 2**33 - 1}
    assert captions.first_timestamps(b"\x00" * 188 + pes_packet(5)) == {}  # no sync byte: nothing trusted


def test_put_replaces_and_deletes_the_old_file_after_the_commit(
    client: FlaskClient, db_session: Session, staff: Staff, media: MediaItem, storage: Storage, sent_tasks: Sent
) -> None:
    first = put(client, staff.creator, media.id, "pt-br")
    assert first.status_code == 200 and first.json["label"] == "Portuguese (Brazil)"
    assert first.json["language"] == "pt-BR"
    [old_key] = stored_keys(storage, media)
    assert sent_tasks == []
    second = put(
        client, staff.admin, media.id, "PT-BR", data=VTT.replace(b"Hello", b"Ola"), query_string={"label": "Português"}
    )
    assert second.status_code == 200, second.json
    assert (second.json["language"], second.json["label"]) == ("pt-BR", "Português")
    assert second.json["created_at"] == first.json["created_at"]
    assert second.json["url"] != first.json["url"]
    assert sent_tasks == [(captions.DELETE_OBJECT_TASK, (old_key,), None)]
    assert count_captions(db_session) == 1
    listed = client.get(url(media.id), headers=staff.other_creator.headers)
    assert listed.status_code == 200
    assert [(c["language"], c["label"]) for c in listed.json["items"]] == [("pt-BR", "Português")]


def test_list_is_by_language_and_for_staff_only(
    client: FlaskClient, staff: Staff, media: MediaItem, db_session: Session
) -> None:
    for language in ("zh-Hant", "de", "en"):
        assert put(client, staff.creator, media.id, language).status_code == 200
    r = client.get(url(media.id), headers=staff.owner.headers)
    assert [c["language"] for c in r.json["items"]] == ["de", "en", "zh-Hant"]
    assert [c["label"] for c in r.json["items"]] == ["German", "English", "Chinese (Traditional)"]
    outsider = caller()
    assert client.get(url(media.id), headers=outsider.headers).json["error"]["code"] == "MEDIA_NOT_FOUND"
    assert client.get(url(media.id)).status_code == 401
    assert client.get(url(uuid.uuid4()), headers=staff.owner.headers).status_code == 404


def test_roles_creator_of_it_or_manager(
    client: FlaskClient, staff: Staff, media: MediaItem, db_session: Session
) -> None:
    r = put(client, staff.other_creator, media.id)
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    r = put(client, caller(), media.id)
    assert r.status_code == 404 and r.json["error"]["code"] == "MEDIA_NOT_FOUND"
    r = client.put(url(media.id, "en"), data=VTT, headers=VTT_TYPE)
    assert r.status_code == 401
    assert put(client, staff.owner, media.id).status_code == 200
    r = client.delete(url(media.id, "en"), headers=staff.other_creator.headers)
    assert r.status_code == 403
    assert count_captions(db_session) == 1


#                 anonymous customer creator-of-it other-creator admin owner platform other-org-admin
ROLE_MATRIX = {
    "put": (401, 404, 200, 403, 200, 200, 200, 404),
    "list": (401, 404, 200, 200, 200, 200, 200, 404),
    "delete": (401, 404, 204, 403, 204, 204, 204, 404),
}
CALLERS = ("anonymous", "customer", "creator", "other_creator", "admin", "owner", "platform_owner", "other_org_admin")


@pytest.mark.parametrize(
    ("action", "who", "expected"),
    [(action, who, row[i]) for action, row in ROLE_MATRIX.items() for i, who in enumerate(CALLERS)],
)
def test_role_matrix(
    client: FlaskClient, staff: Staff, media: MediaItem, db_session: Session, action: str, who: str, expected: int
) -> None:
    headers: dict[str, str] = {}
    if who != "anonymous":
        user = {
            "customer": lambda: caller(),
            "creator": lambda: staff.creator,
            "other_creator": lambda: staff.other_creator,
            "admin": lambda: staff.admin,
            "owner": lambda: staff.owner,
            "platform_owner": lambda: caller(make_user(role="platform_owner")),
            "other_org_admin": lambda: caller(add_member(make_org(make_user()), role="admin")),
        }[who]()
        headers = user.headers
    if action == "delete":
        assert put(client, staff.creator, media.id, "en").status_code == 200
    if action == "put":
        response = client.put(url(media.id, "en"), data=VTT, headers={**headers, **VTT_TYPE})
    elif action == "list":
        response = client.get(url(media.id), headers=headers)
    else:
        response = client.delete(url(media.id, "en"), headers=headers)
    assert response.status_code == expected, response.json
    codes = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "MEDIA_NOT_FOUND"}
    if expected in codes:
        assert response.json["error"]["code"] == codes[expected]


# ---- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["english", "en_US", "e", "x-private", "en-", "a" * 36])
def test_a_language_that_is_not_bcp47_is_a_validation_error(
    client: FlaskClient, staff: Staff, media: MediaItem, language: str
) -> None:
    r = put(client, staff.creator, media.id, language)
    assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR"
    assert "language" in r.json["error"]["details"]
    r = client.delete(url(media.id, language), headers=staff.creator.headers)
    assert r.status_code == 400 and "language" in r.json["error"]["details"]


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/json", "application/x-subrip", "text/vtt; charset=iso-8859-1"]
)
def test_a_body_that_is_not_text_vtt_is_415(
    client: FlaskClient, staff: Staff, media: MediaItem, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.put(url(media.id, "en"), data=VTT, headers={**staff.creator.headers, **headers})
    assert r.status_code == 415 and r.json["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    # 415 comes before authentication (README §3.4)
    assert client.put(url(media.id, "en"), data=VTT, headers=headers).status_code == 415
    ok = put(client, staff.creator, media.id, headers={"Content-Type": "text/vtt; charset=UTF-8"})
    assert ok.status_code == 200


def test_a_body_over_2_mib_is_413_before_anything_else(
    client: FlaskClient, staff: Staff, media: MediaItem, storage: Storage
) -> None:
    big = VTT + b"x" * webvtt.MAX_BYTES
    r = put(client, staff.creator, media.id, data=big)
    assert r.status_code == 413 and r.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # 413 comes before authentication (README §3.4)
    r = client.put(url(media.id, "en"), data=big, headers=VTT_TYPE)
    assert r.status_code == 413
    assert stored_keys(storage, media) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"not a caption file", "WEBVTT header"),
        ("WEBVTT\n\n00:00.500 --> 00:01.500\ncaf\xe9\n".encode("latin-1"), "not UTF-8"),
        (b"WEBVTT\n\n00:02.000 --> 00:03.000\na\n\n00:01.000 --> 00:04.000\nb\n", "not increasing"),
        (b"WEBVTT\n\n00:00.000 --> 00:05.001\npast the end\n", "after the end"),
        (b"WEBVTT\n\nNOTE nothing else\n", "no cue"),
    ],
)
def test_invalid_captions_are_422_and_write_nothing(
    client: FlaskClient,
    db_session: Session,
    staff: Staff,
    media: MediaItem,
    storage: Storage,
    data: bytes,
    message: str,
) -> None:
    r = put(client, staff.creator, media.id, data=data)
    assert r.status_code == 422 and r.json["error"]["code"] == "INVALID_CAPTIONS", r.json
    assert message in r.json["error"]["message"]
    assert count_captions(db_session) == 0 and stored_keys(storage, media) == []


def test_a_cue_may_end_one_second_after_the_media(client: FlaskClient, staff: Staff, media: MediaItem) -> None:
    assert media.duration_seconds == 4
    r = put(client, staff.creator, media.id, data=b"WEBVTT\n\n00:00.000 --> 00:05.000\nlast words\n")
    assert r.status_code == 200, r.json


def test_captions_need_ready_video_media(client: FlaskClient, staff: Staff, db_session: Session) -> None:
    audio = make_media(staff.org.id, staff.creator.id, media_type="audio", mime_type="audio/mpeg")
    r = put(client, staff.creator, audio.id)
    assert r.status_code == 422 and r.json["error"]["code"] == "INVALID_CAPTIONS"
    assert "video" in r.json["error"]["message"]
    pending = make_media(staff.org.id, staff.creator.id, ready=False)
    r = put(client, staff.creator, pending.id)
    assert r.status_code == 422 and r.json["error"]["code"] == "MEDIA_NOT_READY"
    assert count_captions(db_session) == 0


def test_label_is_validated(client: FlaskClient, staff: Staff, media: MediaItem) -> None:
    for query in ({"label": "x" * 101}, {"label": ""}, {"label": "bad\x01"}, {"lable": "typo"}):
        r = put(client, staff.creator, media.id, query_string=query)
        assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", query
    r = put(client, staff.creator, media.id, query_string={"label": "  English (CC)  "})
    assert r.status_code == 200 and r.json["label"] == "English (CC)"


# ---- DELETE ----------------------------------------------------------------------------------------


def test_delete_removes_the_row_and_queues_the_file(
    client: FlaskClient, db_session: Session, staff: Staff, media: MediaItem, storage: Storage, sent_tasks: Sent
) -> None:
    assert put(client, staff.creator, media.id, "de").status_code == 200
    [key] = stored_keys(storage, media)
    r = client.delete(url(media.id, "de"), headers=staff.admin.headers)
    assert r.status_code == 204 and r.data == b""
    assert sent_tasks == [(captions.DELETE_OBJECT_TASK, (key,), None)]
    assert count_captions(db_session) == 0
    again = client.delete(url(media.id, "de"), headers=staff.admin.headers)
    assert again.status_code == 404 and again.json["error"]["code"] == "CAPTION_NOT_FOUND"
    other = client.delete(url(uuid.uuid4(), "de"), headers=staff.admin.headers)
    assert other.status_code == 404 and other.json["error"]["code"] == "MEDIA_NOT_FOUND"
