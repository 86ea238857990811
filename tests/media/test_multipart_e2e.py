"""Multipart uploads through real processes (api.md §6.1): gunicorn and a Celery media worker on the
test database, a real HTTP client, local storage and moto's S3 server.

A 211 MiB WAV (stereo, 32-bit, 192 kHz: many bytes for few seconds, so ffmpeg ingests it quickly;
made once per run) goes up in parallel 16 MiB parts, one part twice; the client "crashes" after half
the parts and a second one resumes from the part list. A missing part, a part cut short and a
completion naming a stale ETag each answer 422 UPLOAD_INCOMPLETE and leave the upload open; then it
completes, ingests to ``ready``, and the stored original is byte-identical to the file. A second
item shows the pin holds for multipart originals: replaced after upload-complete, its ingest fails.
The worker starts only after both completions, so the replacement happens before the ingest.

``flask codex upload`` is tested here too: stopped after one part (``--stop-after``), then resumed;
``test_upload_cli`` kills it (SIGKILL) mid-part and resumes it, on local storage and on S3.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from sqlalchemy import func, update

from app import db
from app.media import multipart
from app.media.job import UPLOAD_CHANGED
from app.media.models import MediaItem
from app.storage.base import Storage, UploadNotFound
from app.storage.local import LocalStorage
from app.storage.s3 import S3Storage
from tests.conftest import ROOT
from tests.e2e.harness import Stack, running_stack
from tests.identity.helpers import make_org, make_user, signed_in
from tests.media.conftest import _ffmpeg
from tests.media.test_tasks import committed
from tests.storage.test_s3 import s3_config

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="session")
def big_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("multipart") / "big.wav"
    _ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=192000:duration=144",
        "-af", "aformat=channel_layouts=stereo", "-c:a", "pcm_s32le", str(path),
    )  # fmt: skip
    assert path.stat().st_size > 200 * MIB
    return path


@pytest.fixture(scope="session")
def small_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("multipart-small") / "small.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:duration=3", "-c:a", "pcm_s16le", str(path))
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


class Client:
    """One API client (a browser tab, say): its own HTTP connections and what it has learnt."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self.http = base_url, requests.Session()
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        r = self.http.request(method, self.base_url + path, headers=self.headers, timeout=120, **kwargs)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r.json() if r.content else None

    def sign(self, media_id: str, numbers: list[int]) -> dict[int, dict[str, Any]]:
        body = self.call("POST", f"/api/v1/media/{media_id}/upload/parts", 200, json={"part_numbers": numbers})
        return {part["part_number"]: part for part in body["parts"]}

    def complete(self, media_id: str, expect: int, parts: list[dict[str, Any]] | None = None) -> Any:
        body = {} if parts is None else {"parts": parts}
        return self.call("POST", f"/api/v1/media/{media_id}/upload-complete", expect, json=body)

    def stored(self, media_id: str) -> dict[int, tuple[int, str]]:
        parts = self.call("GET", f"/api/v1/media/{media_id}/upload/parts", 200)["parts"]
        return {p["part_number"]: (p["size_bytes"], p["etag"]) for p in parts}


def put_part(part: dict[str, Any], data: bytes) -> str:
    """PUT one part to its URL (the app's route or a presigned S3 URL); returns its ETag, bare."""
    r = requests.put(part["url"], data=data, headers={**OCTETS, **part["headers"]}, timeout=120)
    assert r.status_code == 200, f"part {part['part_number']}: {r.status_code} {r.text[:300]}"
    return r.headers["ETag"].strip('"')


def read_part(path: Path, number: int, part_size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek((number - 1) * part_size)
        return handle.read(part_size)


def wait_status(client: Client, media_id: str, status: str, stack: Stack, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    media: dict[str, Any] = {}
    while time.monotonic() < deadline:
        media = client.call("GET", f"/api/v1/media/{media_id}", 200)
        if media["status"] == status:
            return media
        if media["status"] == "failed":
            break
        time.sleep(0.5)
    raise AssertionError(f"{media_id} not {status}: {media}\n{stack.report()}")


def owner_token(flask_app: Flask) -> tuple[str, str]:
    def make() -> tuple[str, str]:
        user = make_user()
        return str(make_org(user).id), signed_in(user)

    result: tuple[str, str] = committed(flask_app, make)
    return result


def original_sha(storage: Storage, key: str, tmp_path: Path) -> str:
    copy = tmp_path / f"original-{uuid.uuid4().hex}"
    storage.download_file(key, copy)
    try:
        return sha256(copy)
    finally:
        copy.unlink()


def big_upload_and_pinning(
    stack: Stack, flask_app: Flask, storage: Storage, big_wav: Path, small_wav: Path, tmp_path: Path
) -> None:
    org_id, token = owner_token(flask_app)
    size = big_wav.stat().st_size
    first = Client(stack.base_url, token)
    body = {"title": "Big", "media_type": "audio", "mime_type": "audio/wav", "file_size_bytes": size}
    created = first.call("POST", f"/api/v1/orgs/{org_id}/media", 201, json={**body, "upload_mode": "multipart"})
    media_id, upload = created["id"], created["upload"]
    part_size, count = upload["part_size_bytes"], upload["part_count"]
    assert (upload["method"], part_size, count) == ("MULTIPART", 16 * MIB, -(-size // (16 * MIB)))
    half = count // 2

    # Client 1: the first half in parallel, part 2 twice (first with other bytes of the right size).
    urls = first.sign(media_id, list(range(1, half + 1)))
    stale = put_part(urls[2], b"\x5a" * part_size)
    numbers = list(range(1, half + 1))
    with ThreadPoolExecutor(4) as pool:
        sent = pool.map(lambda n: put_part(urls[n], read_part(big_wav, n, part_size)), numbers)
        etags = dict(zip(numbers, sent, strict=True))
    assert stale != etags[2]
    # ... and crashes. Client 2 knows only the media id: it asks storage what is there.
    second = Client(stack.base_url, token)
    stored = second.stored(media_id)
    assert sorted(stored) == list(range(1, half + 1)) and {s for s, _ in stored.values()} == {part_size}
    assert {n: etag for n, (_, etag) in stored.items()} == etags
    r = second.complete(media_id, 422)
    assert r["error"]["code"] == "UPLOAD_INCOMPLETE" and r["error"]["details"]["missing"][0] == str(half + 1)
    rest = list(range(half + 1, count + 1))
    urls = second.sign(media_id, rest)
    put_part(urls[half + 1], read_part(big_wav, half + 1, part_size)[: part_size // 2])  # cut short
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: put_part(urls[n], read_part(big_wav, n, part_size)), rest[1:]))
    r = second.complete(media_id, 422)
    assert r["error"]["code"] == "UPLOAD_INCOMPLETE" and r["error"]["details"] == {"wrong_size": [str(half + 1)]}
    put_part(second.sign(media_id, [half + 1])[half + 1], read_part(big_wav, half + 1, part_size))
    stored = second.stored(media_id)
    named = [{"part_number": n, "etag": stale if n == 2 else stored[n][1]} for n in range(1, count + 1)]
    r = second.complete(media_id, 422, named)
    assert r["error"]["code"] == "UPLOAD_INCOMPLETE" and r["error"]["details"] == {"stale": ["2"]}
    assert second.call("GET", f"/api/v1/media/{media_id}", 200)["status"] == "uploading"
    named[1]["etag"] = stored[2][1]
    assert second.complete(media_id, 202, named)["status"] == "uploaded"

    # Pinning: a multipart original replaced after upload-complete fails its ingest.
    small = small_wav.read_bytes()
    pin = first.call(
        "POST",
        f"/api/v1/orgs/{org_id}/media",
        201,
        json={**body, "title": "Pinned", "file_size_bytes": len(small), "upload_mode": "multipart"},
    )
    put_part(first.sign(pin["id"], [1])[1], small)
    first.complete(pin["id"], 202)
    with flask_app.app_context():
        row = db.session.get(MediaItem, uuid.UUID(pin["id"]))
        assert row is not None and row.multipart_upload_id is None and row.upload_etag
        storage.put_bytes(row.original_key, small[:-1] + bytes([small[-1] ^ 1]), "audio/wav")
        big_key = db.session.get(MediaItem, uuid.UUID(media_id)).original_key  # type: ignore[union-attr]
    # The part URLs no longer write to the completed upload.
    late = requests.put(urls[count]["url"], data=b"late", headers=OCTETS, timeout=30)
    assert late.status_code >= 400  # local: 409 STATE_CONFLICT; S3: the upload is gone

    stack.start_worker("media", queues="media", concurrency=1)
    ready = wait_status(second, media_id, "ready", stack)
    assert ready["duration_seconds"] == 144 and ready["waveform_url"]
    assert original_sha(storage, big_key, tmp_path) == sha256(big_wav)
    failed = wait_status(second, pin["id"], "failed", stack)
    assert failed["error_message"] == UPLOAD_CHANGED


def abandoned_upload_is_swept(stack: Stack, flask_app: Flask, storage: Storage) -> None:
    org_id, token = owner_token(flask_app)
    client = Client(stack.base_url, token)
    body = {"title": "Left", "media_type": "audio", "mime_type": "audio/wav", "file_size_bytes": 20 * MIB}
    media_id = client.call("POST", f"/api/v1/orgs/{org_id}/media", 201, json={**body, "upload_mode": "multipart"})["id"]
    put_part(client.sign(media_id, [1])[1], b"RIFF" + bytes(16 * MIB - 4))
    with flask_app.app_context():
        db.session.execute(
            update(MediaItem)
            .where(MediaItem.id == uuid.UUID(media_id))
            .values(updated_at=func.now() - timedelta(hours=25))
        )
        row = db.session.get(MediaItem, uuid.UUID(media_id))
        assert row is not None and row.multipart_upload_id
        key, upload_id = row.original_key, row.multipart_upload_id
        assert multipart.abandon_stale_uploads(db.session, storage) == [row.id]
        db.session.commit()
    with pytest.raises(UploadNotFound):
        storage.list_parts(key, upload_id)
    media = client.call("GET", f"/api/v1/media/{media_id}", 200)
    assert (media["status"], media["error_message"]) == ("failed", "The upload was abandoned.")


@pytest.fixture()
def local_stack(committed_db: Flask, database_url: str, storage_root: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, database_url, storage_root) as stack:
        stack.start_web(workers=2, threads=4)
        yield stack


def test_big_multipart_upload_local(
    local_stack: Stack, committed_db: Flask, big_wav: Path, small_wav: Path, tmp_path: Path
) -> None:
    storage = committed_db.extensions["storage"]
    assert isinstance(storage, LocalStorage)
    big_upload_and_pinning(local_stack, committed_db, storage, big_wav, small_wav, tmp_path)
    abandoned_upload_is_swept(local_stack, committed_db, storage)


def test_big_multipart_upload_s3(
    committed_db: Flask,
    app_factory: Any,
    s3_server: str,
    database_url: str,
    storage_root: Path,
    tmp_path: Path,
    big_wav: Path,
    small_wav: Path,
) -> None:
    with s3_stack(app_factory, s3_server, database_url, storage_root, tmp_path) as (stack, s3_app, storage):
        big_upload_and_pinning(stack, s3_app, storage, big_wav, small_wav, tmp_path)
        abandoned_upload_is_swept(stack, s3_app, storage)


@contextmanager
def s3_stack(
    app_factory: Any, s3_server: str, database_url: str, storage_root: Path, tmp_path: Path, **config: Any
) -> Iterator[tuple[Stack, Flask, S3Storage]]:
    """A web stack (2 workers x 4 threads) on moto's S3 (``config``: settings over ``s3_config``'s),
    with an app of the same settings in this process and its storage (the bucket made)."""
    settings = s3_config(s3_server, **config)
    s3_app: Flask = app_factory(STORAGE_BACKEND="s3", **settings)
    storage = s3_app.extensions["storage"]
    assert isinstance(storage, S3Storage)
    storage.ensure_bucket()
    env = {"STORAGE_BACKEND": "s3", **{k: str(v) for k, v in settings.items()}}
    with running_stack(tmp_path, database_url, storage_root, **env) as stack:
        stack.start_web(workers=2, threads=4)
        yield stack, s3_app, storage


# ---- flask codex upload ------------------------------------------------------------------------


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "flask", "--app", "app", "codex", "upload", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cli_upload_resumes_after_an_interruption(
    local_stack: Stack, committed_db: Flask, big_wav: Path, tmp_path: Path
) -> None:
    org_id, token = owner_token(committed_db)
    file = tmp_path / "talk.wav"
    with big_wav.open("rb") as source:
        file.write_bytes(source.read(40 * MIB))  # three parts; a WAV header, so the magic check passes
    state_dir = tmp_path / "state"
    common = [str(file), "--org", org_id, "--api-url", local_stack.base_url, "--state-dir", str(state_dir)]

    stopped = run_cli(local_stack, *common, "--token", token, "--parallel", "2", "--stop-after", "1")
    assert stopped.returncode == 1 and "stopped after 1 parts" in stopped.stderr, stopped.stderr
    [state] = list(state_dir.iterdir())
    media_id = json.loads(state.read_text())["media_id"]
    client = Client(local_stack.base_url, token)
    assert len(client.stored(media_id)) == 1
    assert "%" in stopped.stderr and "MiB/s" in stopped.stderr  # the progress bar

    resumed = run_cli(local_stack, *common, "--token", token, "--title", "Talk")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == media_id and not list(state_dir.iterdir())
    media = client.call("GET", f"/api/v1/media/{media_id}", 200)
    assert (media["status"], media["file_size_bytes"], media["title"]) == ("uploaded", 40 * MIB, "talk")
    with committed_db.app_context():
        row = db.session.get(MediaItem, uuid.UUID(media_id))
        assert row is not None
        key = row.original_key
    assert original_sha(committed_db.extensions["storage"], key, tmp_path) == sha256(file)
    os.utime(file)  # a changed file is a new upload
    missing = run_cli(local_stack, *common)  # no token, no login
    assert missing.returncode == 2 and "--token" in missing.stderr


# ---- a body that stops arriving ------------------------------------------------------------------


def test_a_stalled_part_is_given_up_and_its_thread_freed(
    committed_db: Flask, database_url: str, storage_root: Path, tmp_path: Path
) -> None:
    """Parts whose client stops sending mid-body without closing the connection, on every thread of
    the only web process (``UPLOAD_BODY_IDLE_SECONDS``, 1 s here): gunicorn's reads time out, each
    request answers 400 and its connection closes, no part is recorded, and the same part sent
    again goes in at once (no 409 after waiting for the stalled write). Without the bound, neither
    stalled request is ever answered and the process serves no one else."""
    with running_stack(tmp_path, database_url, storage_root, UPLOAD_BODY_IDLE_SECONDS="1") as stack:
        stack.start_web(workers=1, threads=2)
        org_id, token = owner_token(committed_db)
        client = Client(stack.base_url, token)
        size = 2 * 16 * MIB
        body = {"title": "Stalled", "media_type": "audio", "mime_type": "audio/wav", "file_size_bytes": size}
        created = client.call("POST", f"/api/v1/orgs/{org_id}/media", 201, json={**body, "upload_mode": "multipart"})
        media_id = created["id"]
        urls = client.sign(media_id, [1, 2])
        targets = [urlsplit(urls[n]["url"]) for n in (1, 2)]
        stalled = [socket.create_connection((t.hostname, t.port), timeout=30) for t in targets]
        try:
            for sock, target in zip(stalled, targets, strict=True):  # each holds a thread and stops sending
                head = (
                    f"PUT {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {16 * MIB}\r\n\r\n"
                )
                sock.sendall(head.encode() + b"\0" * MIB)
            started = time.monotonic()
            answers = []
            for sock in stalled:
                received = b""
                while chunk := sock.recv(65536):  # until the server closes the connection
                    received += chunk
                answers.append(received)
            assert time.monotonic() - started < 15, "the stalled bodies were not given up"
            assert all(answer.startswith(b"HTTP/1.1 400") for answer in answers), answers
        finally:
            for sock in stalled:
                sock.close()
        client = Client(stack.base_url, token)  # (new connections: gunicorn closed the idle keep-alive one)
        assert client.stored(media_id) == {}  # nothing recorded for the cut-short writes
        started = time.monotonic()
        data = b"\x01" * (16 * MIB)
        put_part(urls[1], data)  # the part's lock was released with the thread: no wait, no 409
        assert time.monotonic() - started < 5
        assert client.stored(media_id)[1][0] == 16 * MIB
