"""Multipart uploads on both backends (api.md §6.1): the local directory layout and moto's S3 over HTTP.

The same scenario runs on each: parts written out of order and one of them twice, listed,
refused when the list names a replaced part, assembled byte for byte, and aborted. Parts are
tiny here (S3 needs 5 MiB for all but the last; moto checks that at completion, so its parts are
5 MiB); the API tests use the real part size.
"""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.storage import keys
from app.storage.base import InvalidParts, ObjectTooLarge, Storage, UploadNotFound
from app.storage.local import MULTIPART_DIR, LocalStorage
from app.storage.s3 import S3Storage
from tests.storage.test_s3 import s3_config

MIB = 1024 * 1024
PART = 5 * MIB


def _put_part(storage: Storage, key: str, upload_id: str, number: int, data: bytes) -> str:
    """Upload one part the way a client would; returns its ETag (bare)."""
    target = storage.presign_part(key, upload_id, number, PART, 600, offset=(number - 1) * PART)
    if isinstance(storage, LocalStorage):  # the route's work, without an HTTP server (tests/media does HTTP)
        return storage.write_part(key, upload_id, number, (number - 1) * PART, io.BytesIO(data), PART).etag
    # urllib would label the body a form, which moto then parses and loses the query string with.
    headers = {"Content-Type": "application/octet-stream", **target.headers}
    request = urllib.request.Request(target.url, data=data, method="PUT", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers["ETag"]).strip('"')


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "root", "test-secret", "http://api.test")
    s3_server = request.getfixturevalue("s3_server")
    s3 = S3Storage.from_config(s3_config(s3_server))
    s3.ensure_bucket()
    return s3


def test_parts_out_of_order_and_twice_then_assembled(backend: Storage) -> None:
    org, media = uuid.uuid4(), uuid.uuid4()
    key = keys.original_key(org, media, "audio/wav")
    blob = bytes((i * 31 + 7) % 256 for i in range(2 * PART + 1234))
    chunks = [blob[:PART], blob[PART : 2 * PART], blob[2 * PART :]]
    upload_id = backend.create_multipart(key, "audio/wav")

    etag3 = _put_part(backend, key, upload_id, 3, chunks[2])
    stale = _put_part(backend, key, upload_id, 1, b"\xee" * PART)  # replaced below
    etag1 = _put_part(backend, key, upload_id, 1, chunks[0])
    assert stale != etag1
    listed = backend.list_parts(key, upload_id)
    assert [(p.part_number, p.size, p.etag) for p in listed] == [(1, PART, etag1), (3, len(chunks[2]), etag3)]
    assert backend.head(key) is None  # nothing visible before completion

    etag2 = _put_part(backend, key, upload_id, 2, chunks[1])
    with pytest.raises(InvalidParts):  # a list naming the replaced version of part 1
        backend.complete_multipart(key, upload_id, [(1, stale), (2, etag2), (3, etag3)])
    backend.complete_multipart(key, upload_id, [(1, etag1), (2, etag2), (3, etag3)])
    assert backend.get_bytes(key) == blob
    info = backend.head(key)
    assert info is not None and info.size == len(blob) and info.etag
    assert list(backend.list_keys(keys.media_prefix(org, media))) == [key]
    with pytest.raises(UploadNotFound):
        backend.list_parts(key, upload_id)


def test_abort_drops_the_parts(backend: Storage) -> None:
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    upload_id = backend.create_multipart(key, "video/mp4")
    _put_part(backend, key, upload_id, 1, b"x" * 1000)
    backend.abort_multipart(key, upload_id)
    backend.abort_multipart(key, upload_id)  # already gone: not an error
    with pytest.raises(UploadNotFound):
        backend.list_parts(key, upload_id)
    assert backend.head(key) is None


def test_s3_part_urls_are_presigned_upload_part(s3_server: str) -> None:
    s3 = S3Storage.from_config(s3_config(s3_server))
    s3.ensure_bucket()
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    upload_id = s3.create_multipart(key, "video/mp4")
    target = s3.presign_part(key, upload_id, 7, PART, 900)
    assert target.method == "PUT" and target.headers == {}
    assert "partNumber=7" in target.url and "uploadId=" in target.url and "X-Amz-Expires=900" in target.url
    s3.abort_multipart(key, upload_id)
    request = urllib.request.Request(
        target.url, data=b"late", method="PUT", headers={"Content-Type": "application/octet-stream"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:  # the upload is gone: S3 refuses the part
        urllib.request.urlopen(request, timeout=10)
    caught.value.close()  # (it holds the response: left open, its socket warns when collected)
    assert caught.value.code in (404, 500)  # S3 answers 404 NoSuchUpload; moto fails on the missing upload
    with pytest.raises(UploadNotFound):
        s3.list_parts(key, upload_id)
    assert s3.head(key) is None


def test_local_layout_limits_and_purge(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root", "test-secret", "http://api.test")
    org, media = uuid.uuid4(), uuid.uuid4()
    key = keys.original_key(org, media, "video/mp4")
    upload_id = storage.create_multipart(key, "video/mp4")
    directory = storage.root / MULTIPART_DIR / str(media) / upload_id
    assert directory.is_dir()
    storage.write_part(key, upload_id, 2, 100, io.BytesIO(b"b" * 50), 100)
    with pytest.raises(ObjectTooLarge):  # more than the part's size: the part is not recorded
        storage.write_part(key, upload_id, 1, 0, io.BytesIO(b"a" * 101), 100)
    assert [p.part_number for p in storage.list_parts(key, upload_id)] == [2]
    assert list(storage.list_keys("")) == []  # parts are never listed as objects
    with pytest.raises(UploadNotFound):
        storage.list_parts(key, uuid.uuid4().hex)
    with pytest.raises(UploadNotFound):
        storage.list_parts(key, "../../etc")
    target = storage.presign_part(key, upload_id, 2, 100, 60, offset=100)
    assert target.url.startswith("http://api.test/storage/upload-part/") and target.headers == {}

    storage.delete_prefix(keys.media_prefix(org, media))  # a purge takes the open upload with it
    assert not (storage.root / MULTIPART_DIR / str(media)).exists()
    with pytest.raises(UploadNotFound):
        storage.write_part(key, upload_id, 1, 0, io.BytesIO(b"a"), 100)


def test_local_completion_refuses_gaps(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root", "test-secret", "http://api.test")
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    upload_id = storage.create_multipart(key, "video/mp4")
    parts: dict[int, Any] = {}
    for number, size in ((1, 60), (2, 100)):  # part 1 short: part 2 would not follow it
        parts[number] = storage.write_part(key, upload_id, number, (number - 1) * 100, io.BytesIO(b"z" * size), 100)
    with pytest.raises(InvalidParts):
        storage.complete_multipart(key, upload_id, [(1, parts[1].etag), (2, parts[2].etag)])
    with pytest.raises(InvalidParts):
        storage.complete_multipart(key, upload_id, [(2, parts[2].etag)])
    assert storage.head(key) is None


class _ReadOnly:
    """A stream with ``read`` only (no ``readinto``), as a WSGI server's input may be."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 7))  # short reads, as a socket gives


def test_local_parts_are_durable_before_listed_and_completion_syncs_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part's bytes are fdatasync'ed before its record exists; completion fsyncs the object's directory."""
    storage = LocalStorage(tmp_path / "root", "test-secret", "http://api.test")
    media = uuid.uuid4()
    key = keys.original_key(uuid.uuid4(), media, "video/mp4")
    upload_id = storage.create_multipart(key, "video/mp4")
    directory = storage.root / MULTIPART_DIR / str(media) / upload_id
    synced: list[tuple[str, str, bool]] = []  # (call, path, part 1's record there at that moment)
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def record(call: str, fd: int) -> None:
        synced.append((call, os.readlink(f"/proc/self/fd/{fd}"), (directory / "00001.json").exists()))

    monkeypatch.setattr(os, "fdatasync", lambda fd: (record("fdatasync", fd), real_fdatasync(fd))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: (record("fsync", fd), real_fsync(fd))[1])

    part = storage.write_part(key, upload_id, 1, 0, _ReadOnly(b"p" * 100), 100)  # read() only: short reads
    assert part.size == 100
    assert synced[0] == ("fdatasync", str(directory / "data"), False)  # the bytes, before the record
    assert ("fsync", str(directory), True) in synced  # the record's rename
    synced.clear()
    storage.complete_multipart(key, upload_id, [(1, part.etag)])
    target = storage.path_for(key)
    assert target.read_bytes() == b"p" * 100
    calls = [(call, path) for call, path, _ in synced]
    assert ("fsync", str(target.parent)) in calls  # the rename into place
    assert ("fsync", str(storage.root)) in calls  # and the directories made for it
