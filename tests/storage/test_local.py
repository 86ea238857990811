"""LocalStorage on a real directory: atomic writes, size limits, reads, prefix deletes, path refusal."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import pytest

from app.errors import InvalidSignedUrl
from app.security import tokens
from app.storage import keys
from app.storage.base import ObjectChanged, ObjectNotFound, ObjectTooLarge, StorageError
from app.storage.local import LocalStorage

SECRET = "test-secret"


@pytest.fixture()
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "root", SECRET, "http://api.test/")


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_put_stream_writes_atomically_and_reports_size(storage: LocalStorage) -> None:
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "audio/mpeg")
    assert storage.put_stream(key, io.BytesIO(b"ID3" + b"x" * 100), "audio/mpeg", 103) == 103
    assert storage.get_bytes(key) == b"ID3" + b"x" * 100
    info = storage.head(key)
    assert info is not None and info.size == 103 and info.etag
    assert _files(storage.root) == [key]  # no temporary file left behind


def test_put_stream_past_the_limit_leaves_nothing(storage: LocalStorage) -> None:
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    with pytest.raises(ObjectTooLarge):
        storage.put_stream(key, io.BytesIO(b"x" * 11), "video/mp4", 10)
    assert storage.head(key) is None
    assert _files(storage.root) == []


def test_failed_overwrite_keeps_the_previous_object(storage: LocalStorage) -> None:
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    storage.put_bytes(key, b"first", "video/mp4")
    with pytest.raises(ObjectTooLarge):
        storage.put_stream(key, io.BytesIO(b"y" * 50), "video/mp4", 10)
    assert storage.get_bytes(key) == b"first"


def test_download_with_if_match_copies_only_the_pinned_version(storage: LocalStorage, tmp_path: Path) -> None:
    """security.md §8: the worker downloads with the ETag upload-complete pinned (the one the PUT answered)."""
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    storage.put_stream(key, io.BytesIO(b"checked bytes"), "video/mp4", 100)
    pinned = storage.head(key)
    assert pinned is not None and pinned.etag
    storage.download_file(key, tmp_path / "ok.mp4", if_match=pinned.etag)
    assert (tmp_path / "ok.mp4").read_bytes() == b"checked bytes"

    # Replaced right away with as many bytes: the file-time clock may not even have ticked.
    storage.put_stream(key, io.BytesIO(b"hostile bytes"), "video/mp4", 100)
    assert storage.head(key).etag != pinned.etag  # type: ignore[union-attr]
    with pytest.raises(ObjectChanged):
        storage.download_file(key, tmp_path / "changed.mp4", if_match=pinned.etag)
    assert not (tmp_path / "changed.mp4").exists()
    storage.download_file(key, tmp_path / "any.mp4")  # no pin: whatever is there
    assert (tmp_path / "any.mp4").read_bytes() == b"hostile bytes"
    with pytest.raises(ObjectNotFound):
        storage.download_file(keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4"), tmp_path / "x", if_match="x")


def test_put_stream_before_replace_can_keep_the_previous_object(storage: LocalStorage) -> None:
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    storage.put_bytes(key, b"first", "video/mp4")

    def refuse() -> None:
        raise RuntimeError("state changed")

    with pytest.raises(RuntimeError):
        storage.put_stream(key, io.BytesIO(b"second"), "video/mp4", 10, before_replace=refuse)
    assert storage.get_bytes(key) == b"first"
    assert _files(storage.root) == [key]


def test_reads_and_missing_objects(storage: LocalStorage, tmp_path: Path) -> None:
    key = keys.waveform_key(uuid.uuid4(), uuid.uuid4(), 1)
    storage.put_bytes(key, b"0123456789", "application/json")
    assert storage.read_range(key, 2, 3) == b"234"
    assert storage.read_range(key, 8, 100) == b"89"
    assert storage.read_range(key, 100, 5) == b""
    assert storage.read_range(key, 0, 0) == b""
    storage.download_file(key, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"0123456789"
    missing = keys.waveform_key(uuid.uuid4(), uuid.uuid4(), 1)
    assert storage.head(missing) is None
    for call in (
        lambda: storage.get_bytes(missing),
        lambda: storage.read_range(missing, 0, 1),
        lambda: storage.download_file(missing, tmp_path / "x"),
    ):
        with pytest.raises(ObjectNotFound):
            call()


def test_delete_prefix_removes_the_media_directory_only(storage: LocalStorage) -> None:
    org, media, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    mine = [
        keys.original_key(org, media, "video/mp4"),
        keys.hls_segment_key(org, media, 1, "720p", 1),
        keys.thumbnail_key(org, media, 1),
    ]
    for key in mine:
        storage.put_bytes(key, b"x", "application/octet-stream")
    kept = keys.original_key(org, other, "video/mp4")
    storage.put_bytes(kept, b"x", "video/mp4")
    assert sorted(storage.list_keys(keys.media_prefix(org, media))) == sorted(mine)
    assert storage.delete_prefix(keys.media_prefix(org, media)) == 3
    assert list(storage.list_keys(keys.media_prefix(org, media))) == []
    assert storage.head(kept) is not None
    assert storage.delete_prefix(keys.media_prefix(org, media)) == 0  # again: harmless
    with pytest.raises(StorageError):
        storage.delete_prefix("/")


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/etc/passwd", "a\\b", "a\x00b", ""])
def test_keys_leaving_the_root_are_refused(storage: LocalStorage, key: str) -> None:
    with pytest.raises(StorageError):
        storage.put_bytes(key, b"x", "text/plain")
    assert not (storage.root.parent / "outside").exists()


def test_presigned_urls_carry_purpose_bound_tokens(storage: LocalStorage) -> None:
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/webm")
    target = storage.presign_upload(key, "video/webm", 1234, 600)
    assert target.method == "PUT" and target.headers == {"Content-Type": "video/webm"}
    assert target.url.startswith("http://api.test/storage/upload/")
    assert 590 <= target.expires_at.timestamp() - time.time() <= 600
    claims = tokens.verify(SECRET, "upload", target.url.rsplit("/", 1)[1])
    assert (claims["k"], claims["t"], claims["n"]) == (key, "video/webm", 1234)
    url = storage.presign_download(key, 60)
    assert url.startswith("http://api.test/storage/download/")
    token, name = url.removeprefix("http://api.test/storage/download/").split("/")
    assert name == key.rsplit("/", 1)[1] and name.endswith(".webm")  # players go by the URL's extension
    assert tokens.verify(SECRET, "download", token)["k"] == key
    with pytest.raises(InvalidSignedUrl):
        tokens.verify(SECRET, "upload", token)
