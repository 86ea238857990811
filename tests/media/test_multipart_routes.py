"""Multipart upload routes on local storage (api.md §6.1), through the app's test client.

The part size is the spec's (16 MiB at least), so these files have three parts of 16, 16 and 8 MiB.
The big uploads through real processes, and on moto's S3, are in test_multipart_e2e.py.
"""

from __future__ import annotations

import fcntl
import io
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from celery.schedules import crontab
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, update
from sqlalchemy.orm import Session

import tasks.maintenance  # noqa: F401 - registers maintenance.cleanup (a worker imports every task module)
from app.logging import mask_path
from app.media import multipart, sweepers
from app.media.models import MediaItem
from app.storage import local as local_storage
from app.storage.local import MULTIPART_DIR
from tasks.schedule import beat_schedule
from tests.content.helpers import Staff, make_staff
from tests.factories import MediaItemFactory
from tests.media.test_tasks import task

MIB = 1024 * 1024
SIZE = 40 * MIB
WAV = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes((i * 13 + 5) % 251 for i in range(SIZE - 16))
CHUNKS = [WAV[:16 * MIB], WAV[16 * MIB : 32 * MIB], WAV[32 * MIB :]]  # fmt: skip


@pytest.fixture()
def staff(db_session: Session) -> Staff:
    return make_staff()


def create(client: FlaskClient, staff: Staff, **overrides: Any) -> Any:
    body = {"title": "Long talk", "media_type": "audio", "mime_type": "audio/wav", "file_size_bytes": SIZE}
    body.update({"upload_mode": "multipart", **overrides})
    return client.post(f"/api/v1/orgs/{staff.org.id}/media", json=body, headers=staff.creator.headers)


def sign(client: FlaskClient, media_id: str, headers: dict[str, str], numbers: list[int]) -> dict[int, str]:
    r = client.post(f"/api/v1/media/{media_id}/upload/parts", json={"part_numbers": numbers}, headers=headers)
    assert r.status_code == 200, r.json
    return {part["part_number"]: part["url"] for part in r.json["parts"]}


def put(client: FlaskClient, url: str, data: bytes) -> Any:
    return client.put(urlsplit(url).path, data=data, headers={"Content-Type": "application/octet-stream"})


def complete(client: FlaskClient, media_id: str, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"/api/v1/media/{media_id}/upload-complete", json=body, headers=headers)


def listed(client: FlaskClient, media_id: str, headers: dict[str, str]) -> list[tuple[int, int, str]]:
    r = client.get(f"/api/v1/media/{media_id}/upload/parts", headers=headers)
    assert r.status_code == 200, r.json
    return [(p["part_number"], p["size_bytes"], p["etag"]) for p in r.json["parts"]]


def test_part_size_follows_the_spec() -> None:
    assert multipart.part_size_for(1) == 16 * MIB and multipart.part_count_for(1) == 1
    assert multipart.part_size_for(16 * MIB * 10_000) == 16 * MIB
    assert multipart.part_size_for(16 * MIB * 10_000 + 1) == 17 * MIB
    big = 200 * 1024**3
    assert multipart.part_size_for(big) == 21 * MIB and multipart.part_count_for(big) == 9753
    assert multipart.expected_part_size(SIZE, 3) == 8 * MIB and multipart.expected_part_size(SIZE, 1) == 16 * MIB


def test_create_multipart_and_the_single_put_ceiling(client: FlaskClient, staff: Staff) -> None:
    r = create(client, staff)
    assert r.status_code == 201, r.json
    upload = r.json["upload"]
    assert (upload["method"], upload["part_size_bytes"], upload["part_count"]) == ("MULTIPART", 16 * MIB, 3)
    assert upload["expires_at"].endswith("Z") and "url" not in upload
    five_gib = {"media_type": "video", "mime_type": "video/mp4", "file_size_bytes": 5 * 1024**3}
    r = create(client, staff, upload_mode="single", **five_gib)
    assert r.status_code == 400 and "upload_mode" in r.json["error"]["details"]
    r = create(client, staff, upload_mode="single", **{**five_gib, "file_size_bytes": 5 * 1024**3 - 1})
    assert r.status_code == 201 and r.json["upload"]["method"] == "PUT"
    r = create(client, staff, **five_gib)
    assert r.status_code == 201 and (r.json["upload"]["part_size_bytes"], r.json["upload"]["part_count"]) == (
        16 * MIB,
        320,
    )
    assert create(client, staff, upload_mode="chunked").status_code == 400


def test_parts_missing_wrong_size_and_stale_etag_then_complete(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Any
) -> None:
    headers = staff.creator.headers
    media_id = create(client, staff).json["id"]
    urls = sign(client, media_id, headers, [3, 1, 2])
    assert put(client, urls[3], CHUNKS[2]).status_code == 200
    first = put(client, urls[1], CHUNKS[0])
    assert first.status_code == 200 and first.headers["ETag"].startswith('"')
    assert "ETag" in first.headers["Access-Control-Expose-Headers"]  # browsers (Uppy) read it

    r = complete(client, media_id, headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "UPLOAD_INCOMPLETE"
    assert r.json["error"]["details"]["missing"] == ["2"]
    short = put(client, urls[2], CHUNKS[1][: 3 * MIB])  # a part cut short
    assert short.status_code == 200
    r = complete(client, media_id, headers)
    assert r.status_code == 422 and r.json["error"]["details"]["wrong_size"] == ["2"]
    assert put(client, urls[2], CHUNKS[1] + b"x").status_code == 413  # more than the part's size
    # Refused from its Content-Length before a byte was written: the stored part 2 is unchanged.
    assert [(n, size) for n, size, _ in listed(client, media_id, headers)] == [
        (1, 16 * MIB),
        (2, 3 * MIB),
        (3, 8 * MIB),
    ]
    again = sign(client, media_id, headers, [2])  # a fresh URL works as well as the first
    second = put(client, again[2], CHUNKS[1])
    assert second.status_code == 200
    stored = listed(client, media_id, headers)
    assert [(n, size) for n, size, _ in stored] == [(1, 16 * MIB), (2, 16 * MIB), (3, 8 * MIB)]
    etags = {n: etag for n, _, etag in stored}
    assert etags[2] == second.headers["ETag"].strip('"')

    stale = [{"part_number": n, "etag": short.headers["ETag"] if n == 2 else etags[n]} for n in (1, 2, 3)]
    r = complete(client, media_id, headers, parts=stale)
    assert r.status_code == 422 and r.json["error"]["details"]["stale"] == ["2"]
    r = complete(client, media_id, headers, parts=stale[:2])
    assert r.status_code == 422 and r.json["error"]["details"]["missing"] == ["3"]
    assert db_session.get(MediaItem, uuid.UUID(media_id)).status == "uploading"  # still retryable

    quoted = [{"part_number": n, "etag": f'"{etags[n]}"'} for n in (1, 2, 3)]  # as the ETag headers carry them
    r = complete(client, media_id, headers, parts=quoted)
    assert r.status_code == 202 and r.json["status"] == "uploaded", r.json
    db_session.expire_all()
    row = db_session.get(MediaItem, uuid.UUID(media_id))
    assert row.multipart_upload_id is None and row.upload_etag
    storage = client.application.extensions["storage"]
    assert storage.get_bytes(row.original_key) == WAV
    assert storage.head(row.original_key).etag == row.upload_etag
    uploads = storage.root / MULTIPART_DIR / media_id
    # No upload directory is left; a ".gone-*" one may still be being emptied in the background.
    assert not uploads.exists() or all(path.name.startswith(".gone-") for path in uploads.iterdir())
    assert ("media.ingest", (media_id,), None) in sent_tasks

    # Pinned: no part is taken any more, and the multipart endpoints answer 409.
    r = put(client, urls[1], CHUNKS[0])
    assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT"
    assert storage.get_bytes(row.original_key) == WAV
    for r in (
        client.get(f"/api/v1/media/{media_id}/upload/parts", headers=headers),
        client.post(f"/api/v1/media/{media_id}/upload/parts", json={"part_numbers": [1]}, headers=headers),
        client.delete(f"/api/v1/media/{media_id}/upload", headers=headers),
    ):
        assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT"
    assert complete(client, media_id, headers).status_code == 202  # uploaded: re-enqueued, as before


def test_parts_read_from_a_server_terminated_stream(client: FlaskClient, staff: Staff) -> None:
    """Under a server that ends wsgi.input itself (gunicorn: ``wsgi.input_terminated``) the route
    reads that stream directly; a body that ends before its Content-Length (the client went away)
    is refused and leaves no part, as werkzeug's stream does."""
    media_id = create(client, staff).json["id"]
    urls = sign(client, media_id, staff.creator.headers, [1, 2])

    def send(url: str, body: bytes, length: int) -> Any:
        # The test client would set CONTENT_LENGTH from the stream: the environ says what the client announced.
        environ = {"wsgi.input_terminated": True, "CONTENT_LENGTH": str(length)}
        octets = {"Content-Type": "application/octet-stream"}
        stream = io.BytesIO(body)
        return client.put(urlsplit(url).path, input_stream=stream, headers=octets, environ_overrides=environ)

    assert send(urls[1], CHUNKS[0], len(CHUNKS[0])).status_code == 200
    cut = send(urls[2], CHUNKS[1][: 3 * MIB], len(CHUNKS[1]))
    assert cut.status_code == 400, cut.json
    assert [(n, size) for n, size, _ in listed(client, media_id, staff.creator.headers)] == [(1, 16 * MIB)]


@pytest.mark.parametrize(
    "numbers",
    [[], [1, 1], [4], [0], ["1"], list(range(1, 102))],
    ids=["empty", "duplicate", "past-count", "zero", "string", "over-100"],
)
def test_part_numbers_are_validated(client: FlaskClient, staff: Staff, numbers: list[Any]) -> None:
    media_id = create(client, staff).json["id"]
    r = client.post(
        f"/api/v1/media/{media_id}/upload/parts", json={"part_numbers": numbers}, headers=staff.creator.headers
    )
    assert r.status_code == 400 and any(k.startswith("part_numbers") for k in r.json["error"]["details"]), r.json


def test_single_uploads_have_no_parts_and_others_may_not_touch(client: FlaskClient, staff: Staff) -> None:
    single = create(client, staff, upload_mode="single").json["id"]
    headers = staff.creator.headers
    r = client.post(f"/api/v1/media/{single}/upload/parts", json={"part_numbers": [1]}, headers=headers)
    assert r.status_code == 409
    assert client.get(f"/api/v1/media/{single}/upload/parts", headers=headers).status_code == 409
    assert client.delete(f"/api/v1/media/{single}/upload", headers=headers).status_code == 409
    r = complete(client, single, headers, parts=[{"part_number": 1, "etag": "x"}])
    assert r.status_code == 400 and "parts" in r.json["error"]["details"]

    media_id = create(client, staff).json["id"]
    other = staff.other_creator.headers
    assert client.get(f"/api/v1/media/{media_id}/upload/parts", headers=other).status_code == 403
    assert client.delete(f"/api/v1/media/{media_id}/upload", headers=other).status_code == 403
    assert client.get(f"/api/v1/media/{media_id}/upload/parts", headers=staff.admin.headers).status_code == 200
    assert client.get(f"/api/v1/media/{uuid.uuid4()}/upload/parts", headers=headers).status_code == 404


def test_restart_aborts_and_opens_a_fresh_upload(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    headers = staff.creator.headers
    media_id = create(client, staff).json["id"]
    old = sign(client, media_id, headers, [1])
    assert put(client, old[1], CHUNKS[0]).status_code == 200
    before = db_session.get(MediaItem, uuid.UUID(media_id)).multipart_upload_id
    assert client.delete(f"/api/v1/media/{media_id}/upload", headers=headers).status_code == 204
    db_session.expire_all()
    row = db_session.get(MediaItem, uuid.UUID(media_id))
    assert row.status == "uploading" and row.multipart_upload_id not in (None, before)
    assert listed(client, media_id, headers) == []
    r = put(client, old[1], CHUNKS[0])  # a URL of the aborted upload
    assert r.status_code == 404
    fresh = sign(client, media_id, headers, [1, 2, 3])
    for number, chunk in enumerate(CHUNKS, start=1):
        assert put(client, fresh[number], chunk).status_code == 200
    assert complete(client, media_id, headers).status_code == 202


def test_a_bad_file_type_after_assembly_is_retried_with_a_restart(client: FlaskClient, staff: Staff) -> None:
    headers = staff.creator.headers
    media_id = create(client, staff, file_size_bytes=3 * MIB).json["id"]
    url = sign(client, media_id, headers, [1])[1]
    assert put(client, url, b"not a wav file".ljust(3 * MIB, b"\0")).status_code == 200
    for _ in range(2):  # assembled on the first try; the second checks the same object
        r = complete(client, media_id, headers)
        assert r.status_code == 422 and r.json["error"]["code"] == "UPLOAD_TYPE_MISMATCH"
    assert client.delete(f"/api/v1/media/{media_id}/upload", headers=headers).status_code == 204
    url = sign(client, media_id, headers, [1])[1]
    assert put(client, url, WAV[: 3 * MIB]).status_code == 200
    assert complete(client, media_id, headers).status_code == 202


def test_cleanup_runs_daily_at_three(app: Flask) -> None:
    entry = beat_schedule(app.extensions["codex_config"])["maintenance.cleanup"]
    assert entry["schedule"] == crontab(minute=0, hour=3) and task(app, "maintenance.cleanup").soft_time_limit == 300


def test_abandoned_uploads_are_swept_daily(app: Flask, client: FlaskClient, db_session: Session, staff: Staff) -> None:
    headers = staff.creator.headers
    stale_id = create(client, staff).json["id"]
    active_id = create(client, staff).json["id"]
    url = sign(client, stale_id, headers, [1])[1]
    assert put(client, url, CHUNKS[0]).status_code == 200
    sign(client, active_id, headers, [1])  # asked for a part URL just now
    day_ago = func.now() - timedelta(hours=25)
    db_session.execute(
        update(MediaItem)
        .where(MediaItem.id.in_([uuid.UUID(stale_id), uuid.UUID(active_id)]))
        .values(created_at=day_ago)
    )
    db_session.execute(update(MediaItem).where(MediaItem.id == uuid.UUID(stale_id)).values(updated_at=day_ago))
    single_old = MediaItemFactory(status="uploading", created_at=day_ago)

    # The hourly reaper leaves multipart uploads to the daily sweep.
    assert sweepers.reap_abandoned_uploads(db_session) == [single_old.id]
    with app.app_context():
        assert task(app, "maintenance.cleanup").apply().get()["abandoned_uploads"] == 1
    db_session.expire_all()
    stale = db_session.get(MediaItem, uuid.UUID(stale_id))
    assert (stale.status, stale.error_message, stale.multipart_upload_id) == ("failed", multipart.ABANDONED, None)
    assert db_session.get(MediaItem, uuid.UUID(active_id)).status == "uploading"
    storage = app.extensions["storage"]
    assert not any((storage.root / MULTIPART_DIR / stale_id).glob("[0-9a-f]*"))  # parts gone
    assert put(client, url, CHUNKS[0]).status_code == 409
    r = client.get(f"/api/v1/media/{stale_id}", headers=headers)
    assert r.json["status"] == "failed" and r.json["error_message"] == "The upload was abandoned."


def test_part_route_cors_tokens_and_logs(client: FlaskClient, staff: Staff) -> None:
    media_id = create(client, staff).json["id"]
    url = sign(client, media_id, staff.creator.headers, [1])[1]
    path = urlsplit(url).path
    preflight = client.options(path, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"})
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
    token = path.rsplit("/", 1)[1]
    body, signature = token.split(".")
    r = client.put(f"/storage/upload-part/{body}.{signature[::-1]}", data=b"x")
    assert r.status_code == 403 and r.json["error"]["code"] == "INVALID_SIGNED_URL"
    upload_token = urlsplit(create(client, staff, upload_mode="single").json["upload"]["url"]).path.rsplit("/", 1)[1]
    r = client.put(f"/storage/upload-part/{upload_token}", data=b"x")  # a single-upload token is not a part's
    assert r.status_code == 403
    assert token not in mask_path(path) and mask_path(path).endswith("/upload-part/[token]")


def test_the_daily_sweep_removes_discarded_directories_an_exit_left_behind(app: Flask) -> None:
    storage = app.extensions["storage"]
    media_dir = storage.root / MULTIPART_DIR / str(uuid.uuid4())
    old, fresh = media_dir / ".gone-old", media_dir / ".gone-fresh"
    for trash in (old, fresh):
        (trash / "upload").mkdir(parents=True)
        (trash / "upload" / "data").write_bytes(b"x" * 1024)
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))  # the removal a process exit interrupted
    with app.app_context():
        assert task(app, "maintenance.cleanup").apply().get()["storage_leftovers"] >= 1
    assert not old.exists()
    assert fresh.exists()  # (its own thread may still be removing it)


def test_a_part_held_by_a_stuck_request_is_refused_not_waited_on(
    client: FlaskClient, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier request for the same part that never finishes (its client vanished mid-body and
    the connection is half-open: the server's read does not return) keeps the part's lock. A retry
    waits a bounded time for it, then gets 409 instead of holding a server thread as long; other
    parts and a fresh upload (DELETE …/upload) are unaffected."""
    monkeypatch.setattr(local_storage, "PART_WAIT_SECONDS", 0.3)
    media_id = create(client, staff).json["id"]
    urls = sign(client, media_id, staff.creator.headers, [1, 2])
    [directory] = (Path(client.application.config["STORAGE_LOCAL_ROOT"]) / MULTIPART_DIR / media_id).iterdir()
    (directory / "00001.lock").touch()
    with (directory / "upload.lock").open("rb") as upload, (directory / "00001.lock").open("rb") as stuck:
        fcntl.flock(upload, fcntl.LOCK_SH)  # the stuck request's holds, as a part write takes them
        fcntl.flock(stuck, fcntl.LOCK_EX)
        started = time.monotonic()
        retry = put(client, urls[1], CHUNKS[0])
        assert time.monotonic() - started < 5
        assert retry.status_code == 409 and retry.json["error"]["code"] == "STATE_CONFLICT"
        assert "Part 1 is still being received" in retry.json["error"]["message"]
        assert put(client, urls[2], CHUNKS[1]).status_code == 200  # another part goes in meanwhile
        assert [n for n, _, _ in listed(client, media_id, staff.creator.headers)] == [2]
        restarted = client.delete(f"/api/v1/media/{media_id}/upload", headers=staff.creator.headers)
        assert restarted.status_code == 204
        fresh = sign(client, media_id, staff.creator.headers, [1])
        assert put(client, fresh[1], CHUNKS[0]).status_code == 200
    # Once the holder lets go, the same part goes in on the first try.
    urls = sign(client, media_id, staff.creator.headers, [1])
    assert put(client, urls[1], CHUNKS[0]).status_code == 200
