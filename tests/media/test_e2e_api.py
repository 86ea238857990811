"""End to end through the API with a real Celery worker (api.md §6, jobs.md §6).

POST media -> PUT the bytes to the returned upload URL -> POST upload-complete -> the worker
ingests -> ``ready``/``failed``. Runs once with local storage (the upload URL is the app's own
``/storage/upload/<token>``) and once against moto's S3 server (a presigned PUT).
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app import db
from app.media import ffmpeg
from app.media.job import UNREADABLE
from app.notifications.models import EmailOutbox
from app.storage import keys
from tests.conftest import running_worker
from tests.identity.helpers import auth, make_org, make_user, signed_in
from tests.media.conftest import Clips
from tests.media.test_tasks import committed, emails, wait_for

Put = Callable[[dict[str, Any], bytes], None]


def owner(flask_app: Flask) -> tuple[Any, Any, dict[str, str]]:
    def make() -> tuple[Any, Any, str]:
        user = make_user()
        return user, make_org(user), signed_in(user)

    user, org, token = committed(flask_app, make)
    return user, org, auth(token)


def local_put(client: FlaskClient) -> Put:
    def put(upload: dict[str, Any], data: bytes) -> None:
        assert upload["url"].startswith("http://localhost:5000/storage/upload/")
        r = client.put(urlsplit(upload["url"]).path, data=data, headers=upload["headers"])
        assert r.status_code == 200, r.json

    return put


def http_put(upload: dict[str, Any], data: bytes) -> None:
    request = urllib.request.Request(upload["url"], data=data, method=upload["method"], headers=upload["headers"])
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def create_and_upload(
    client: FlaskClient, org_id: Any, headers: dict[str, str], data: bytes, mime: str, put: Put
) -> dict[str, Any]:
    media_type = mime.split("/")[0]
    body = {"title": f"{media_type} upload", "media_type": media_type, "mime_type": mime, "file_size_bytes": len(data)}
    r = client.post(f"/api/v1/orgs/{org_id}/media", json=body, headers=headers)
    assert r.status_code == 201, r.json
    put(r.json["upload"], data)
    return dict(r.json)


def complete(client: FlaskClient, media_id: str, headers: dict[str, str]) -> Any:
    return client.post(f"/api/v1/media/{media_id}/upload-complete", headers=headers)


def api_media(client: FlaskClient, media_id: str, headers: dict[str, str]) -> dict[str, Any]:
    r = client.get(f"/api/v1/media/{media_id}", headers=headers)
    assert r.status_code == 200, r.json
    return dict(r.json)


def master_renditions(storage: Any, master_key: str) -> list[str]:
    return re.findall(r"^([0-9a-z]+)/index\.m3u8$", storage.get_bytes(master_key).decode(), flags=re.MULTILINE)


def check_video_outputs(flask_app: Flask, media_id: str, source: Path) -> None:
    storage = flask_app.extensions["storage"]
    row = wait_for(flask_app, uuid.UUID(media_id), "ready")
    probed = ffmpeg.probe(source)
    assert (row.width, row.height) == (640, 360) and probed.duration is not None
    # Only rungs whose short side is not above the source's 360 lines.
    assert master_renditions(storage, row.hls_master_key) == ["360p"] == row.renditions
    assert "RESOLUTION=640x360" in storage.get_bytes(row.hls_master_key).decode()
    segments = list(storage.list_keys(keys.hls_rendition_prefix(row.organization_id, row.id, row.attempts, "360p")))
    assert any(key.endswith("seg_00001.ts") for key in segments) and any(key.endswith("index.m3u8") for key in segments)
    preview = storage.get_bytes(row.hls_preview_key).decode()
    assert "#EXT-X-ENDLIST" in preview and storage.head(row.thumbnail_key).size > 0


def check_audio_outputs(flask_app: Flask, media_id: str, source: Path) -> None:
    storage = flask_app.extensions["storage"]
    row = wait_for(flask_app, uuid.UUID(media_id), "ready")
    assert master_renditions(storage, row.hls_master_key) == ["128k", "64k"] == row.renditions
    assert storage.head(row.hls_preview_key) is not None and row.thumbnail_key is None
    doc = json.loads(storage.get_bytes(row.waveform_key))
    probed = ffmpeg.probe(source)
    assert probed.duration is not None
    assert set(doc) == {"version", "points_per_second", "duration_seconds", "peaks"}
    assert (doc["version"], doc["points_per_second"], doc["duration_seconds"]) == (1, 10, row.duration_seconds)
    assert len(doc["peaks"]) == math.ceil(probed.duration * 10)
    assert all(isinstance(p, float | int) and 0 <= p <= 1 for p in doc["peaks"]) and max(doc["peaks"]) > 0.05


def wait_sent(flask_app: Flask, outbox_id: uuid.UUID, timeout: float = 30) -> EmailOutbox:
    deadline = time.monotonic() + timeout
    while True:
        with flask_app.app_context():
            row = db.session.scalar(select(EmailOutbox).where(EmailOutbox.id == outbox_id))
            assert row is not None
            if row.status == "sent" or time.monotonic() > deadline:
                return row
        time.sleep(0.2)


@pytest.mark.e2e
def test_upload_to_ready_through_the_api_local(committed_db: Flask, celery_worker: Any, clips: Clips) -> None:
    flask_app = committed_db
    client = flask_app.test_client()
    user, org, headers = owner(flask_app)
    put = local_put(client)
    video_clip, tone_clip = clips.video(640, 360), clips.tone()

    video = create_and_upload(client, org.id, headers, video_clip.read_bytes(), "video/mp4", put)
    tone = create_and_upload(client, org.id, headers, tone_clip.read_bytes(), "audio/mpeg", put)
    broken = create_and_upload(client, org.id, headers, clips.garbage().read_bytes(), "video/mp4", put)
    text = create_and_upload(client, org.id, headers, b"this is plain text, not a video\n" * 4, "video/mp4", put)

    # A text file declared as video/mp4 never reaches the worker.
    r = complete(client, text["id"], headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "UPLOAD_TYPE_MISMATCH"
    assert api_media(client, text["id"], headers)["status"] == "uploading"

    for media in (video, tone, broken):
        r = complete(client, media["id"], headers)
        assert r.status_code == 202 and r.json["status"] == "uploaded", r.json

    check_video_outputs(flask_app, video["id"], video_clip)
    check_audio_outputs(flask_app, tone["id"], tone_clip)
    ready = api_media(client, video["id"], headers)
    assert ready["status"] == "ready" and ready["has_preview"] and ready["thumbnail_url"] and ready["attempts"] == 1
    assert api_media(client, tone["id"], headers)["waveform_url"]

    # ftyp header + garbage: passes the magic check, fails the probe with the spec's message and an email.
    wait_for(flask_app, uuid.UUID(broken["id"]), "failed")
    failed = api_media(client, broken["id"], headers)
    assert (failed["error_message"], failed["attempts"]) == (UNREADABLE, 1)
    [mail] = emails(flask_app, uuid.UUID(broken["id"]))
    assert (mail.template, mail.recipient, mail.context["attempts_left"]) == ("media-failed", user.email, 2)
    assert wait_sent(flask_app, mail.id).status == "sent"

    # Retry through the API: the pinned original is checked again and fails again (attempt 2).
    r = client.post(f"/api/v1/media/{broken['id']}/retry", headers=headers)
    assert r.status_code == 202 and (r.json["status"], r.json["error_message"]) == ("uploaded", None)
    wait_for(flask_app, uuid.UUID(broken["id"]), "failed")
    assert api_media(client, broken["id"], headers)["attempts"] == 2
    assert [m.context["attempts_left"] for m in emails(flask_app, uuid.UUID(broken["id"]))] == [2, 1]
    # The upload URL no longer takes bytes, and an original replaced behind its back is refused at
    # retry (security.md §8: the checked bytes are pinned): a new upload is a new media item.
    same_size = bytes(len(clips.garbage().read_bytes()))
    r = client.put(urlsplit(broken["upload"]["url"]).path, data=same_size, headers=broken["upload"]["headers"])
    assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT"
    replaced = keys.original_key(org.id, broken["id"], "video/mp4")
    flask_app.extensions["storage"].put_file(replaced, video_clip, "video/mp4")
    r = client.post(f"/api/v1/media/{broken['id']}/retry", headers=headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "UPLOAD_SIZE_MISMATCH"
    assert api_media(client, broken["id"], headers)["status"] == "failed"
    r = client.post(f"/api/v1/media/{video['id']}/retry", headers=headers)
    assert r.status_code == 409 and r.json["error"]["code"] == "STATE_CONFLICT"

    # A duplicate ingest message for a finished item does not run it again.
    before = wait_for(flask_app, uuid.UUID(video["id"]), "ready")
    flask_app.extensions["task_sender"]("media.ingest", (video["id"],), None)
    assert complete(client, video["id"], headers).status_code == 409
    time.sleep(1.5)
    after = wait_for(flask_app, uuid.UUID(video["id"]), "ready")
    assert (after.attempts, after.job_id, after.updated_at) == (before.attempts, before.job_id, before.updated_at)
    assert [m.template for m in emails(flask_app, uuid.UUID(video["id"]))] == ["media-ready"]

    # The ready video becomes sellable content and shows up in the public catalogue with a preview.
    body = {"title": "Test pattern", "content_type": "video", "media_id": video["id"], "price_cents": 999}
    r = client.post(f"/api/v1/orgs/{org.id}/content", json=body, headers=headers)
    assert r.status_code == 201 and r.json["media_status"] == "ready" and r.json["duration_seconds"] == 4
    content_id = r.json["id"]
    assert client.post(f"/api/v1/content/{content_id}/publish", headers=headers).json["status"] == "published"
    detail = client.get(f"/api/v1/catalog/{content_id}").json
    assert detail["preview"]["manifest_url"].endswith("/master.m3u8") and detail["duration_seconds"] == 4
    listing = client.get(f"/api/v1/orgs/{org.slug}/catalog").json
    assert [item["id"] for item in listing["items"]] == [content_id]


# ---- S3 (moto's server) with a worker of its own ----------------------------------------------


@pytest.fixture()
def s3_app(committed_db: Flask, app_factory: Any, s3_server: str) -> Flask:
    flask_app: Flask = app_factory(
        STORAGE_BACKEND="s3",
        S3_ENDPOINT_URL=s3_server,
        S3_BUCKET=f"codex-e2e-{uuid.uuid4().hex[:12]}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    flask_app.extensions["storage"].ensure_bucket()
    return flask_app


@pytest.fixture()
def s3_worker(s3_app: Flask) -> Iterator[Any]:
    with running_worker(s3_app) as worker:
        yield worker


@pytest.mark.e2e
def test_upload_to_ready_through_the_api_s3(s3_app: Flask, s3_worker: Any, clips: Clips) -> None:
    client = s3_app.test_client()
    _, org, headers = owner(s3_app)
    video_clip, tone_clip = clips.video(640, 360), clips.tone()

    video = create_and_upload(client, org.id, headers, video_clip.read_bytes(), "video/mp4", http_put)
    assert urlsplit(video["upload"]["url"]).netloc != "localhost:5000"  # a presigned S3 URL
    tone = create_and_upload(client, org.id, headers, tone_clip.read_bytes(), "audio/mpeg", http_put)
    text = create_and_upload(client, org.id, headers, b"plain text\n" * 10, "video/mp4", http_put)

    # S3 cannot bound the size of a presigned PUT: upload-complete compares it.
    short = create_and_upload(client, org.id, headers, b"x", "video/mp4", lambda u, d: None)
    with s3_app.app_context():
        s3_app.extensions["storage"].put_bytes(
            keys.original_key(org.id, short["id"], "video/mp4"), video_clip.read_bytes(), "video/mp4"
        )
    r = complete(client, short["id"], headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "UPLOAD_SIZE_MISMATCH"
    r = complete(client, text["id"], headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "UPLOAD_TYPE_MISMATCH"

    for media in (video, tone):
        assert complete(client, media["id"], headers).status_code == 202
    check_video_outputs(s3_app, video["id"], video_clip)
    check_audio_outputs(s3_app, tone["id"], tone_clip)
    ready = api_media(client, video["id"], headers)
    assert ready["thumbnail_url"] and urlsplit(ready["thumbnail_url"]).netloc == urlsplit(video["upload"]["url"]).netloc
    with urllib.request.urlopen(ready["thumbnail_url"], timeout=30) as response:
        assert response.read(3) == b"\xff\xd8\xff"  # the presigned GET serves the JPEG

    # Delete: 204 now, storage purged by the worker.
    assert client.delete(f"/api/v1/media/{tone['id']}", headers=headers).status_code == 204
    storage = s3_app.extensions["storage"]
    prefix = keys.media_prefix(org.id, tone["id"])
    deadline = time.monotonic() + 30
    while list(storage.list_keys(prefix)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(storage.list_keys(prefix)) == []
