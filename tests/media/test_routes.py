"""Media routes (api.md §6): create + upload target, upload-complete checks, list/get/patch/delete, retry."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.media.magic import magic_matches
from app.media.models import MediaItem
from app.storage import keys
from tests.content.helpers import Staff, caller, make_content, make_media, make_staff
from tests.identity.conftest import limited_app, limited_client
from tests.media.conftest import FTYP_GARBAGE, Sent

__all__ = ["limited_app", "limited_client"]  # fixtures used below

MP4_HEAD = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100


def hls_playlist(target: str, size: int | None = None) -> bytes:
    """An HLS playlist pointing at ``target``; with ``size``, padded with a comment line to exactly that."""
    text = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3.0,\n{target}\n#EXT-X-ENDLIST\n".encode()
    if size is None:
        return text
    assert size > len(text) + 1, "target path too long for the padding"
    return text + b"#" * (size - len(text) - 1) + b"\n"


GOOD = MP4_HEAD.ljust(1000, b"\1")  # passes the magic check


@pytest.fixture()
def staff(db_session: Session) -> Staff:
    return make_staff()


def media_url(org_id: Any) -> str:
    return f"/api/v1/orgs/{org_id}/media"


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Lesson 1",
        "media_type": "video",
        "mime_type": "video/mp4",
        "file_size_bytes": len(MP4_HEAD),
    }
    body.update(overrides)
    return body


def count_media(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(MediaItem)) or 0


def put_upload(client: FlaskClient, upload: dict[str, Any], data: bytes) -> None:
    parts = urlsplit(upload["url"])
    r = client.put(parts.path, data=data, headers=upload["headers"])
    assert r.status_code == 200, r.json


# ---- create -----------------------------------------------------------------------------------


def test_create_returns_media_and_a_signed_upload_target(
    client: FlaskClient, db_session: Session, staff: Staff
) -> None:
    r = client.post(media_url(staff.org.id), json=create_body(description="  "), headers=staff.creator.headers)
    assert r.status_code == 201, r.json
    body = r.json
    assert body["status"] == "uploading" and body["attempts"] == 0 and body["max_attempts"] == 3
    assert body["renditions"] == [] and body["thumbnail_url"] is None and body["has_preview"] is False
    assert body["description"] is None and body["created_by"] == str(staff.creator.id)
    upload = body.pop("upload")
    assert set(body) == {
        "id", "organization_id", "created_by", "title", "description", "media_type", "mime_type",
        "file_size_bytes", "status", "attempts", "max_attempts", "error_message", "duration_seconds", "width",
        "height", "renditions", "has_preview", "thumbnail_url", "waveform_url", "uploaded_at", "ready_at",
        "created_at", "updated_at",
    }  # fmt: skip
    assert upload["method"] == "PUT" and upload["headers"] == {"Content-Type": "video/mp4"}
    assert upload["url"].startswith("http://localhost:5000/storage/upload/") and upload["expires_at"].endswith("Z")
    row = db_session.get(MediaItem, uuid.UUID(body["id"]))
    assert row is not None and row.original_key == keys.original_key(staff.org.id, row.id, "video/mp4")
    # The URL accepts exactly the declared type for that key.
    put_upload(client, upload, MP4_HEAD)
    assert client.application.extensions["storage"].head(row.original_key).size == len(MP4_HEAD)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"mime_type": "video/x-msvideo"}, "mime_type"),
        ({"mime_type": "audio/mpeg"}, "mime_type"),
        ({"media_type": "audio", "mime_type": "video/mp4"}, "mime_type"),
        ({"media_type": "image"}, "media_type"),
        ({"file_size_bytes": 5368709121}, "file_size_bytes"),
        ({"media_type": "audio", "mime_type": "audio/mpeg", "file_size_bytes": 524288001}, "file_size_bytes"),
        ({"file_size_bytes": 0}, "file_size_bytes"),
        ({"file_size_bytes": "12"}, "file_size_bytes"),
        ({"title": ""}, "title"),
        ({"title": "x" * 256}, "title"),
        ({"title": "bad\x00title"}, "title"),
        ({"description": "x" * 5001}, "description"),
        ({"status": "ready"}, "status"),
        ({"original_key": "orgs/x/evil.mp4"}, "original_key"),
    ],
)
def test_create_rejects_bad_input_and_writes_nothing(
    client: FlaskClient, db_session: Session, staff: Staff, overrides: dict[str, Any], field: str
) -> None:
    before = count_media(db_session)
    r = client.post(media_url(staff.org.id), json=create_body(**overrides), headers=staff.creator.headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR"
    assert field in r.json["error"]["details"]
    assert count_media(db_session) == before


def test_audio_size_limit_allows_the_limit_itself(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    body = create_body(media_type="audio", mime_type="audio/wav", file_size_bytes=524288000)
    r = client.post(media_url(staff.org.id), json=body, headers=staff.creator.headers)
    assert r.status_code == 201 and r.json["upload"]["headers"] == {"Content-Type": "audio/wav"}
    assert r.json["id"] in db_session.get(MediaItem, uuid.UUID(r.json["id"])).original_key
    assert db_session.get(MediaItem, uuid.UUID(r.json["id"])).original_key.endswith("/original.wav")


def test_create_needs_membership(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    outsider = caller()
    r = client.post(media_url(staff.org.id), json=create_body(), headers=outsider.headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"
    assert client.post(media_url(staff.org.id), json=create_body()).status_code == 401
    missing = client.post(media_url(uuid.uuid4()), json=create_body(), headers=staff.creator.headers)
    assert missing.json == r.json
    assert count_media(db_session) == 0


# ---- upload-complete --------------------------------------------------------------------------


def created(client: FlaskClient, staff: Staff, **overrides: Any) -> dict[str, Any]:
    r = client.post(media_url(staff.org.id), json=create_body(**overrides), headers=staff.creator.headers)
    assert r.status_code == 201, r.json
    return dict(r.json)


def complete(client: FlaskClient, media_id: Any, headers: dict[str, str]) -> Any:
    return client.post(f"/api/v1/media/{media_id}/upload-complete", headers=headers)


def test_upload_complete_checks_the_object_then_queues_ingest(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent
) -> None:
    body = created(client, staff)
    r = complete(client, body["id"], staff.creator.headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "UPLOAD_MISSING" and sent_tasks == []

    put_upload(client, body["upload"], MP4_HEAD)
    r = complete(client, body["id"], staff.creator.headers)
    assert r.status_code == 202 and r.json["status"] == "uploaded" and r.json["uploaded_at"] is not None
    assert sent_tasks == [("media.ingest", (body["id"],), None)]

    # Again on an ``uploaded`` row: 202 and the message is sent again (a lost one is re-sent).
    r = complete(client, body["id"], staff.creator.headers)
    assert r.status_code == 202 and len(sent_tasks) == 2

    db_session.get(MediaItem, uuid.UUID(body["id"])).status = "processing"
    db_session.flush()
    r = complete(client, body["id"], staff.creator.headers)
    assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT" and len(sent_tasks) == 2


def test_upload_complete_pins_the_etag_and_the_upload_url_refuses_new_bytes(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent
) -> None:
    """security.md §8: the pinned ETag is the one the local PUT answered; afterwards the same signed
    URL answers 409 and the checked file stays (no HLS playlist can be swapped in for the worker)."""
    body = created(client, staff, file_size_bytes=len(GOOD))
    upload = body["upload"]
    r = client.put(urlsplit(upload["url"]).path, data=GOOD, headers=upload["headers"])
    assert r.status_code == 200
    answered = r.headers["ETag"].strip('"')
    assert complete(client, body["id"], staff.creator.headers).status_code == 202
    row = db_session.get(MediaItem, uuid.UUID(body["id"]))
    assert row is not None and row.upload_etag == answered

    storage = client.application.extensions["storage"]
    other_org_original = storage.path_for(keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4"))
    playlist = hls_playlist(str(other_org_original), len(GOOD))
    again = client.put(urlsplit(upload["url"]).path, data=playlist, headers=upload["headers"])
    assert again.status_code == 409 and again.json["error"]["code"] == "STATE_CONFLICT"
    assert storage.get_bytes(row.original_key) == GOOD and storage.head(row.original_key).etag == answered


@pytest.mark.parametrize(
    ("declared", "stored", "code"),
    [
        (len(MP4_HEAD), MP4_HEAD + b"extra", "UPLOAD_SIZE_MISMATCH"),
        (len(b"just some text, not a video at all\n"), b"just some text, not a video at all\n", "UPLOAD_TYPE_MISMATCH"),
    ],
)
def test_upload_complete_refuses_wrong_bytes_and_writes_nothing(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent, declared: int, stored: bytes, code: str
) -> None:
    body = created(client, staff, file_size_bytes=declared)
    row = db_session.get(MediaItem, uuid.UUID(body["id"]))
    client.application.extensions["storage"].put_bytes(row.original_key, stored, "video/mp4")
    r = complete(client, body["id"], staff.creator.headers)
    assert r.status_code == 422 and r.json["error"]["code"] == code
    db_session.expire_all()
    row = db_session.get(MediaItem, uuid.UUID(body["id"]))
    assert (row.status, row.uploaded_at) == ("uploading", None) and sent_tasks == []


def test_upload_complete_is_for_the_creator_or_a_manager(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent
) -> None:
    body = created(client, staff)
    put_upload(client, body["upload"], MP4_HEAD)
    r = complete(client, body["id"], staff.other_creator.headers)
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    r = complete(client, body["id"], caller().headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "MEDIA_NOT_FOUND"
    assert complete(client, "not-a-uuid", staff.admin.headers).json["error"]["code"] == "MEDIA_NOT_FOUND"
    assert complete(client, body["id"], staff.admin.headers).status_code == 202


@pytest.mark.parametrize(
    ("mime", "head", "ok"),
    [
        ("video/mp4", MP4_HEAD, True),
        ("audio/mp4", FTYP_GARBAGE[:64], True),
        ("video/mp4", b"hello world, this is text", False),
        ("video/quicktime", b"\x00\x00\x00\x08wide", True),
        ("video/quicktime", b"\x00\x00\x00\x08junk", False),
        ("video/webm", b"\x1a\x45\xdf\xa3rest", True),
        ("audio/webm", b"RIFF....", False),
        ("audio/mpeg", b"ID3\x04", True),
        ("audio/mpeg", b"\xff\xfb\x90\x00", True),
        ("audio/mpeg", b"\xff\x1b", False),
        ("audio/wav", b"RIFF\x00\x00\x00\x00WAVEfmt ", True),
        ("audio/wav", b"RIFF\x00\x00\x00\x00AVI ", False),
        ("audio/ogg", b"OggS\x00", True),
        ("audio/ogg", b"", False),
    ],
)
def test_magic_table(mime: str, head: bytes, ok: bool) -> None:
    assert magic_matches(mime, head) is ok


# ---- list, get, patch -------------------------------------------------------------------------


def test_list_filters_sorts_and_pages(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    org_id = staff.org.id
    a = make_media(org_id, staff.creator.id, title="Alpha")
    b = make_media(org_id, staff.admin.id, ready=False, status="failed", title="Beta", error_message="x")
    c = make_media(org_id, staff.creator.id, media_type="audio", title="Gamma")
    make_media(org_id, staff.creator.id, title="Deleted", deleted_at=func.now())
    make_media(make_staff().org.id, staff.creator.id, title="Elsewhere")

    r = client.get(media_url(org_id) + "?sort=title&order=asc", headers=staff.creator.headers)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert [m["title"] for m in r.json["items"]] == ["Alpha", "Beta", "Gamma"]
    assert (r.json["total"], r.json["pages"], r.json["page"], r.json["per_page"]) == (3, 1, 1, 20)
    thumb = r.json["items"][0]["thumbnail_url"]
    assert thumb.startswith("http://localhost:5000/storage/download/") and r.json["items"][0]["has_preview"]
    assert r.json["items"][2]["waveform_url"] and r.json["items"][2]["thumbnail_url"] is None

    r = client.get(media_url(org_id) + "?status=failed", headers=staff.creator.headers)
    assert [m["id"] for m in r.json["items"]] == [str(b.id)]
    r = client.get(media_url(org_id) + "?media_type=audio", headers=staff.creator.headers)
    assert [m["id"] for m in r.json["items"]] == [str(c.id)]
    r = client.get(media_url(org_id) + "?sort=title&order=desc&per_page=2&page=2", headers=staff.creator.headers)
    assert [m["id"] for m in r.json["items"]] == [str(a.id)] and r.json["pages"] == 2

    for bad in ("?sort=size", "?status=gone", "?order=up", "?per_page=101", "?page=0", "?foo=1", "?page=1&page=2"):
        r = client.get(media_url(org_id) + bad, headers=staff.creator.headers)
        assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", bad


def test_get_hides_other_tenants_and_deleted_rows(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    media = make_media(staff.org.id, staff.creator.id)
    r = client.get(f"/api/v1/media/{media.id}", headers=staff.other_creator.headers)
    assert r.status_code == 200 and r.json["id"] == str(media.id) and r.json["renditions"] == ["360p"]
    foreign = client.get(f"/api/v1/media/{media.id}", headers=caller().headers)
    missing = client.get(f"/api/v1/media/{uuid.uuid4()}", headers=staff.creator.headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json == missing.json and foreign.json["error"]["code"] == "MEDIA_NOT_FOUND"
    media.deleted_at = func.now()
    db_session.flush()
    assert client.get(f"/api/v1/media/{media.id}", headers=staff.creator.headers).status_code == 404


def test_patch_changes_only_title_and_description(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    media = make_media(staff.org.id, staff.creator.id, title="Old")
    url = f"/api/v1/media/{media.id}"
    r = client.patch(url, json={"title": " New ", "description": "Line\nTwo"}, headers=staff.creator.headers)
    assert r.status_code == 200 and (r.json["title"], r.json["description"]) == ("New", "Line\nTwo")
    assert client.patch(url, json={}, headers=staff.creator.headers).json["title"] == "New"
    r = client.patch(url, json={"description": None}, headers=staff.admin.headers)
    assert r.status_code == 200 and r.json["description"] is None

    for bad in ({"status": "ready"}, {"hls_master_key": "x"}, {"original_key": "x"}, {"title": None}, {"title": ""}):
        r = client.patch(url, json=bad, headers=staff.owner.headers)
        assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", bad
    r = client.patch(url, json={"title": "Theirs"}, headers=staff.other_creator.headers)
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    db_session.expire_all()
    row = db_session.get(MediaItem, media.id)
    assert (row.title, row.status) == ("New", "ready")


# ---- delete -----------------------------------------------------------------------------------


def test_delete_is_refused_while_content_uses_it(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent
) -> None:
    media = make_media(staff.org.id, staff.creator.id)
    content = make_content(staff.org.id, staff.creator.id, media=media)
    url = f"/api/v1/media/{media.id}"
    r = client.delete(url, headers=staff.creator.headers)
    assert r.status_code == 409 and r.json["error"]["code"] == "MEDIA_IN_USE" and sent_tasks == []
    assert client.delete(url, headers=staff.other_creator.headers).status_code == 403

    content.deleted_at = func.now()  # deleted content no longer holds it
    db_session.flush()
    r = client.delete(url, headers=staff.creator.headers)
    assert r.status_code == 204 and r.data == b""
    assert sent_tasks == [("media.purge_storage", (str(media.id),), None)]
    db_session.expire_all()
    row = db_session.get(MediaItem, media.id)
    assert row.deleted_at is not None and row.status == "ready"
    assert client.get(url, headers=staff.creator.headers).status_code == 404
    assert client.delete(url, headers=staff.creator.headers).status_code == 404


def test_delete_while_processing_is_allowed(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent
) -> None:
    media = make_media(staff.org.id, staff.creator.id, ready=False, status="processing", attempts=1, job_id="j")
    assert client.delete(f"/api/v1/media/{media.id}", headers=staff.admin.headers).status_code == 204
    assert [name for name, _, _ in sent_tasks] == ["media.purge_storage"]


# ---- retry ------------------------------------------------------------------------------------


def test_retry_within_the_attempt_limit(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent
) -> None:
    media = make_media(
        staff.org.id, staff.creator.id, ready=False, status="failed", attempts=2, error_message="Transcoding failed."
    )
    storage = client.application.extensions["storage"]
    storage.put_bytes(media.original_key, MP4_HEAD.ljust(media.file_size_bytes, b"\0"), media.mime_type)
    media.upload_etag = storage.head(media.original_key).etag
    db_session.flush()
    url = f"/api/v1/media/{media.id}/retry"
    assert client.post(url, headers=staff.other_creator.headers).status_code == 403
    r = client.post(url, headers=staff.creator.headers)
    assert r.status_code == 202 and (r.json["status"], r.json["error_message"], r.json["attempts"]) == (
        "uploaded",
        None,
        2,
    )
    assert sent_tasks == [("media.ingest", (str(media.id),), None)]
    r = client.post(url, headers=staff.creator.headers)
    assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT" and len(sent_tasks) == 1


def failed_after_upload(client: FlaskClient, db_session: Session, staff: Staff, data: bytes) -> MediaItem:
    """Created, PUT and completed through the API (ETag pinned), then failed by an ingest attempt."""
    body = created(client, staff, file_size_bytes=len(data))
    put_upload(client, body["upload"], data)
    assert complete(client, body["id"], staff.creator.headers).status_code == 202
    media = db_session.get(MediaItem, uuid.UUID(body["id"]))
    assert media is not None and media.upload_etag
    media.status, media.attempts, media.error_message = "failed", 1, "The file could not be read as audio or video."
    db_session.flush()
    return media


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ("same size, still ftyp", "UPLOAD_MISSING", "The upload changed after it was completed."),
        ("a playlist of the same size", "UPLOAD_MISSING", "The upload changed after it was completed."),
        ("a playlist of another size", "UPLOAD_SIZE_MISMATCH", None),
        ("deleted", "UPLOAD_MISSING", "The uploaded file was not found in storage."),
    ],
)
def test_retry_repeats_the_upload_checks_against_the_pinned_etag(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent, change: str, code: str, message: str
) -> None:
    """security.md §8: an object replaced after upload-complete (a second PUT with a still-valid S3
    presigned URL) is never handed to the worker by a retry."""
    media = failed_after_upload(client, db_session, staff, GOOD)
    sent_tasks.clear()
    storage = client.application.extensions["storage"]
    other_org_original = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    if change == "deleted":
        storage.delete(media.original_key)
    else:
        replacement = {
            "same size, still ftyp": MP4_HEAD.ljust(len(GOOD), b"\2"),
            "a playlist of the same size": hls_playlist(str(storage.path_for(other_org_original)), len(GOOD)),
            "a playlist of another size": hls_playlist(str(storage.path_for(other_org_original))),
        }[change]
        storage.put_bytes(media.original_key, replacement, "video/mp4")

    r = client.post(f"/api/v1/media/{media.id}/retry", headers=staff.creator.headers)
    assert r.status_code == 422 and r.json["error"]["code"] == code, r.json
    if message:
        assert r.json["error"]["message"] == message
    db_session.expire_all()
    row = db_session.get(MediaItem, media.id)
    assert (row.status, row.attempts, row.error_message) == (
        "failed",
        1,
        "The file could not be read as audio or video.",
    )
    assert sent_tasks == []


def test_retry_with_the_pinned_object_unchanged_is_accepted(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent
) -> None:
    media = failed_after_upload(client, db_session, staff, GOOD)
    pinned = media.upload_etag
    sent_tasks.clear()
    r = client.post(f"/api/v1/media/{media.id}/retry", headers=staff.creator.headers)
    assert r.status_code == 202 and r.json["status"] == "uploaded"
    assert sent_tasks == [("media.ingest", (str(media.id),), None)]
    db_session.expire_all()
    assert db_session.get(MediaItem, media.id).upload_etag == pinned


def test_retry_of_a_row_without_a_pinned_etag_checks_the_magic_bytes_then_pins(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent
) -> None:
    """Rows uploaded before ETags were pinned: size and magic are checked, and the checked object is pinned."""
    media = make_media(
        staff.org.id, staff.creator.id, ready=False, status="failed", attempts=1, file_size_bytes=len(GOOD)
    )
    storage = client.application.extensions["storage"]
    storage.put_bytes(media.original_key, hls_playlist("/etc/passwd.mp4", len(GOOD)), "video/mp4")
    r = client.post(f"/api/v1/media/{media.id}/retry", headers=staff.creator.headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "UPLOAD_TYPE_MISMATCH" and sent_tasks == []

    storage.put_bytes(media.original_key, GOOD, "video/mp4")
    assert client.post(f"/api/v1/media/{media.id}/retry", headers=staff.creator.headers).status_code == 202
    db_session.expire_all()
    assert db_session.get(MediaItem, media.id).upload_etag == storage.head(media.original_key).etag


def test_retry_limit_reached(client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Sent) -> None:
    media = make_media(staff.org.id, staff.creator.id, ready=False, status="failed", attempts=3, error_message="x")
    r = client.post(f"/api/v1/media/{media.id}/retry", headers=staff.creator.headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "RETRY_LIMIT_REACHED" and sent_tasks == []
    db_session.expire_all()
    assert db_session.get(MediaItem, media.id).status == "failed"


def test_every_media_operation_is_documented(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    paths = spec["paths"]
    for path, methods in {
        "/api/v1/orgs/{org_id}/media": {"get": {"400", "401", "404"}, "post": {"400", "401", "403", "404", "429"}},
        "/api/v1/media/{media_id}": {"get": {"404"}, "patch": {"400", "403", "404"}, "delete": {"403", "404", "409"}},
        "/api/v1/media/{media_id}/upload-complete": {"post": {"403", "404", "409", "422", "503"}},
        "/api/v1/media/{media_id}/retry": {"post": {"403", "404", "409", "422"}},
    }.items():
        for method, statuses in methods.items():
            operation = paths[path][method]
            assert operation["summary"] and statuses <= set(operation["responses"]), (path, method)


def test_signed_thumbnail_urls_are_reused_briefly(
    client: FlaskClient, db_session: Session, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.media import service

    media = make_media(staff.org.id, staff.creator.id)
    first = client.get(f"/api/v1/media/{media.id}", headers=staff.creator.headers).json["thumbnail_url"]
    assert client.get(f"/api/v1/media/{media.id}", headers=staff.creator.headers).json["thumbnail_url"] == first
    monkeypatch.setattr(service, "PRESIGN_REUSE_SECONDS", 0.0)
    fresh = client.get(f"/api/v1/media/{media.id}", headers=staff.creator.headers).json["thumbnail_url"]
    assert fresh.startswith("http://localhost:5000/storage/download/")
    # A valid token for a key whose file is absent here: 404 NOT_FOUND (a bad token would be 403).
    r = client.get(urlsplit(fresh).path)
    assert r.status_code == 404 and r.json["error"]["code"] == "NOT_FOUND"


def test_create_is_rate_limited_per_user(limited_client: FlaskClient, db_session: Session, staff: Staff) -> None:
    url = media_url(staff.org.id)
    for _ in range(30):
        assert limited_client.post(url, json=create_body(), headers=staff.creator.headers).status_code == 201
    r = limited_client.post(url, json=create_body(), headers=staff.creator.headers)
    assert r.status_code == 429 and r.json["error"]["code"] == "RATE_LIMITED" and r.headers["Retry-After"]
    # Another user of the same org has its own budget.
    assert limited_client.post(url, json=create_body(), headers=staff.admin.headers).status_code == 201
    assert count_media(db_session) == 31
