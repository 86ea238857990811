"""/storage routes through the app: signed local upload/download, public logos on both backends."""

from __future__ import annotations

import io
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.logging import mask_path
from app.media.models import MediaItem
from app.security import tokens
from app.storage import keys
from app.storage.local import LocalStorage
from app.storage.s3 import S3Storage
from tests.factories import MediaItemFactory

from .test_s3 import s3_config


@pytest.fixture()
def storage(app: Flask) -> LocalStorage:
    local = app.extensions["storage"]
    assert isinstance(local, LocalStorage)
    return local


def _token(url: str) -> str:
    """The token of a local upload (``…/upload/<token>``) or download (``…/download/<token>/<name>``) URL."""
    return url.split("/storage/", 1)[1].split("/")[1]


def _path(url: str) -> str:
    return "/storage/" + url.split("/storage/", 1)[1]


def _new_key(mime: str = "video/mp4") -> str:
    return keys.original_key(uuid.uuid4(), uuid.uuid4(), mime)


def _uploading_key(mime: str = "video/mp4") -> str:
    """The original key of a media item still ``uploading``: the only key the upload route writes."""
    media_type = mime.split("/")[0]
    return str(MediaItemFactory(status="uploading", media_type=media_type, mime_type=mime).original_key)


def _assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["details"] is not None
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# ---- upload -----------------------------------------------------------------------------


def test_upload_stores_the_bytes_and_returns_an_etag(client: FlaskClient, storage: LocalStorage) -> None:
    key = _uploading_key()
    target = storage.presign_upload(key, "video/mp4", 64, 600)
    assert target.url.startswith("http://localhost:5000/storage/upload/")
    response = client.put(_path(target.url), data=b"a" * 64, headers=target.headers)
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["ETag"].startswith('"')
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]
    assert storage.path_for(key).read_bytes() == b"a" * 64

    again = client.put(_path(target.url), data=b"b" * 10, headers={"Content-Type": "video/mp4"})
    assert again.status_code == 200  # overwrites
    assert storage.path_for(key).read_bytes() == b"b" * 10


def test_upload_accepts_a_charset_parameter_but_not_another_type(client: FlaskClient, storage: LocalStorage) -> None:
    key = _uploading_key("audio/mpeg")
    url = _path(storage.presign_upload(key, "audio/mpeg", 10, 600).url)
    _assert_error(client.put(url, data=b"ID3", headers={"Content-Type": "video/mp4"}), 415, "UNSUPPORTED_MEDIA_TYPE")
    _assert_error(client.put(url, data=b"ID3"), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert storage.head(key) is None
    assert client.put(url, data=b"ID3", headers={"Content-Type": "Audio/MPEG; x=1"}).status_code == 200


def test_upload_larger_than_signed_is_413_and_leaves_no_file(client: FlaskClient, storage: LocalStorage) -> None:
    key = _uploading_key()
    url = _path(storage.presign_upload(key, "video/mp4", 10, 600).url)
    _assert_error(client.put(url, data=b"x" * 11, headers={"Content-Type": "video/mp4"}), 413, "PAYLOAD_TOO_LARGE")
    assert storage.head(key) is None
    assert not storage.path_for(key).parent.exists() or not any(storage.path_for(key).parent.iterdir())


def test_streamed_upload_without_length_is_cut_at_the_signed_size(client: FlaskClient, storage: LocalStorage) -> None:
    """A chunked body (no Content-Length) is counted while streaming: 413 and nothing stored."""
    key = _uploading_key()
    url = _path(storage.presign_upload(key, "video/mp4", 10, 600).url)
    response = client.put(
        url,
        input_stream=io.BytesIO(b"x" * (3 * 1024 * 1024)),
        headers={"Content-Type": "video/mp4", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    _assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert storage.head(key) is None
    assert not any(p.is_file() for p in storage.path_for(key).parent.glob("*"))

    ok = client.put(
        url,
        input_stream=io.BytesIO(b"y" * 10),
        headers={"Content-Type": "video/mp4", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert ok.status_code == 200
    assert storage.get_bytes(key) == b"y" * 10


def test_upload_above_the_app_wide_body_limit(app: Flask, client: FlaskClient, storage: LocalStorage) -> None:
    size = app.config["MAX_CONTENT_LENGTH"] + 1
    key = _uploading_key()
    url = _path(storage.presign_upload(key, "video/mp4", size, 600).url)
    response = client.put(url, data=b"z" * size, headers={"Content-Type": "video/mp4"})
    assert response.status_code == 200
    info = storage.head(key)
    assert info is not None and info.size == size


@pytest.mark.parametrize("status", ["uploaded", "processing", "ready", "failed"])
def test_upload_is_refused_once_the_media_left_uploading(
    client: FlaskClient, db_session: Session, storage: LocalStorage, status: str
) -> None:
    """security.md §8: once upload-complete checked the bytes they are pinned; a new PUT with the
    still-valid token answers 409 and the stored file stays what was checked."""
    key = _uploading_key()
    target = storage.presign_upload(key, "video/mp4", 64, 600)
    first = client.put(_path(target.url), data=b"a" * 64, headers=target.headers)
    assert first.status_code == 200
    before = storage.head(key)
    media = db_session.scalars(select(MediaItem).where(MediaItem.original_key == key)).one()
    values: dict[str, Any] = {"status": status}
    if status == "ready":
        media_id, org_id = media.id, media.organization_id
        values.update(
            hls_master_key=keys.hls_master_key(org_id, media_id, 1),
            hls_preview_key=keys.hls_preview_playlist_key(org_id, media_id, 1),
            thumbnail_key=keys.thumbnail_key(org_id, media_id, 1),
            renditions=["360p"], duration_seconds=4, width=640, height=360, ready_at=func.now(),
        )  # fmt: skip
    db_session.execute(update(MediaItem).where(MediaItem.id == media.id).values(**values))
    db_session.flush()

    again = client.put(_path(target.url), data=b"#EXTM3U\n" + b"b" * 56, headers=target.headers)
    _assert_error(again, 409, "STATE_CONFLICT")
    assert storage.path_for(key).read_bytes() == b"a" * 64
    assert storage.head(key) == before  # same ETag: the pinned object was not replaced
    assert [p.name for p in storage.path_for(key).parent.iterdir()] == [storage.path_for(key).name]


def test_upload_for_a_deleted_or_unknown_media_item_is_404(
    client: FlaskClient, db_session: Session, storage: LocalStorage
) -> None:
    deleted = str(MediaItemFactory(status="uploading", deleted_at=func.now()).original_key)
    for key in (deleted, _new_key()):
        url = _path(storage.presign_upload(key, "video/mp4", 10, 600).url)
        _assert_error(client.put(url, data=b"x" * 10, headers={"Content-Type": "video/mp4"}), 404, "NOT_FOUND")
        assert storage.head(key) is None


def test_upload_checks_the_state_again_just_before_replacing_the_file(
    client: FlaskClient, db_session: Session, storage: LocalStorage
) -> None:
    """upload-complete commits while the body is still streaming: the new bytes are thrown away,
    so the object it checked (and pinned) is the one that stays."""
    key = _uploading_key()
    storage.put_bytes(key, b"checked" * 4, "video/mp4")
    before = storage.head(key)

    class CompletedMidway(io.BytesIO):
        def readinto(self, buffer: Any) -> int:  # how werkzeug's LimitedStream reads the body
            count = super().readinto(buffer)
            if self.tell() == len(self.getvalue()):  # the whole body arrived; meanwhile upload-complete ran
                db_session.execute(update(MediaItem).where(MediaItem.original_key == key).values(status="uploaded"))
                db_session.flush()
            return count

    url = _path(storage.presign_upload(key, "video/mp4", 64, 600).url)
    body = CompletedMidway(b"replaced" * 4)
    response = client.put(url, input_stream=body, content_length=32, headers={"Content-Type": "video/mp4"})
    _assert_error(response, 409, "STATE_CONFLICT")
    assert storage.get_bytes(key) == b"checked" * 4 and storage.head(key) == before
    assert [p.name for p in storage.path_for(key).parent.iterdir()] == [storage.path_for(key).name]  # no temp file


def test_bad_upload_tokens_are_403(app: Flask, client: FlaskClient, storage: LocalStorage) -> None:
    key = _new_key()
    token = _token(storage.presign_upload(key, "video/mp4", 10, 600).url)
    secret = app.config["SECRET_KEY"]
    body, sig = token.split(".")
    expired = tokens.sign(secret, "upload", {"k": key, "t": "video/mp4", "n": 10}, time.time() - 1)
    download = _token(storage.presign_download(key, 600))
    foreign = tokens.sign("another-secret", "upload", {"k": key, "t": "video/mp4", "n": 10}, time.time() + 60)
    # (tampered parts never equal the originals, which would make a valid token about once in a thousand runs)
    bad_sig = f"{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    bad_body = f"{body[:-2]}{'xx' if body[-2:] != 'xx' else 'yy'}.{sig}"
    for bad in [bad_sig, bad_body, expired, download, foreign, "nonsense", "a.b"]:
        response = client.put(f"/storage/upload/{bad}", data=b"x", headers={"Content-Type": "video/mp4"})
        _assert_error(response, 403, "INVALID_SIGNED_URL")
    assert storage.head(key) is None


def test_upload_tokens_with_bad_claims(app: Flask, client: FlaskClient, storage: LocalStorage) -> None:
    secret, later = app.config["SECRET_KEY"], time.time() + 60
    escaping = tokens.sign(secret, "upload", {"k": "../outside.mp4", "t": "video/mp4", "n": 10}, later)
    _assert_error(
        client.put(f"/storage/upload/{escaping}", data=b"x", headers={"Content-Type": "video/mp4"}), 404, "NOT_FOUND"
    )
    assert not (storage.root.parent / "outside.mp4").exists()
    for claims in [{"k": _new_key(), "t": "video/mp4", "n": "10"}, {"k": _new_key(), "n": 10}, {"t": "video/mp4"}]:
        token = tokens.sign(secret, "upload", claims, later)
        response = client.put(f"/storage/upload/{token}", data=b"x", headers={"Content-Type": "video/mp4"})
        _assert_error(response, 403, "INVALID_SIGNED_URL")


def test_storage_urls_mask_their_tokens_in_logs(storage: LocalStorage) -> None:
    key = _new_key()
    for url in (storage.presign_upload(key, "video/mp4", 1, 60).url, storage.presign_download(key, 60)):
        masked = mask_path(_path(url))
        assert _token(url) not in masked and "/[token]" in masked
        assert masked.endswith(("/upload/[token]", f"/download/[token]/{key.rsplit('/', 1)[1]}"))


def test_preflight_is_open_to_any_origin(client: FlaskClient) -> None:
    response = client.options(
        "/storage/upload/abc",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "PUT"},
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "PUT" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers


# ---- download ---------------------------------------------------------------------------


@pytest.fixture()
def segment(storage: LocalStorage) -> tuple[str, bytes]:
    key = keys.hls_segment_key(uuid.uuid4(), uuid.uuid4(), 1, "720p", 1)
    data = bytes(range(256)) * 4  # 1024 bytes
    storage.put_bytes(key, data, "video/mp2t")
    return key, data


def test_download_whole_object(client: FlaskClient, storage: LocalStorage, segment: tuple[str, bytes]) -> None:
    key, data = segment
    response = client.get(_path(storage.presign_download(key, 300)))
    assert response.status_code == 200
    assert response.data == data
    assert response.headers["Content-Type"] == "video/mp2t"
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    cache = response.headers["Cache-Control"]
    assert cache.startswith("private, max-age=")
    assert 295 <= int(cache.rsplit("=", 1)[1]) <= 300


def test_download_urls_end_in_the_objects_file_name(
    client: FlaskClient, storage: LocalStorage, segment: tuple[str, bytes]
) -> None:
    # HLS players (ffmpeg, mpv) accept a segment only by the extension its URL ends in.
    key, data = segment
    url = _path(storage.presign_download(key, 60))
    assert url == f"/storage/download/{_token(url)}/seg_00001.ts" and key.endswith("/seg_00001.ts")
    assert client.get(url).data == data


def test_download_with_another_file_name_is_403(
    client: FlaskClient, storage: LocalStorage, segment: tuple[str, bytes]
) -> None:
    key, _ = segment
    token = _token(storage.presign_download(key, 60))
    for other in ["seg_00002.ts", "seg_00001.TS", "index.m3u8", "original.mp4", "seg_00001.ts.mp4"]:
        _assert_error(client.get(f"/storage/download/{token}/{other}"), 403, "INVALID_SIGNED_URL")
    # The token alone (the old form) is no route at all.
    _assert_error(client.get(f"/storage/download/{token}"), 404, "NOT_FOUND")


def test_download_content_type_comes_from_the_extension(client: FlaskClient, storage: LocalStorage) -> None:
    org, media = uuid.uuid4(), uuid.uuid4()
    for key, expected in [
        (keys.hls_master_key(org, media, 1), "application/vnd.apple.mpegurl"),
        (keys.thumbnail_key(org, media, 1), "image/jpeg"),
        (keys.waveform_key(org, media, 1), "application/json"),
    ]:
        storage.put_bytes(key, b"{}", "x/ignored")
        response = client.get(_path(storage.presign_download(key, 60)))
        assert response.status_code == 200
        assert response.mimetype == expected


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, 1023),
        ("bytes=1000-5000", 1000, 1023),
        ("bytes=-24", 1000, 1023),
        ("bytes=-5000", 0, 1023),
        ("bytes=1023-1023", 1023, 1023),
    ],
)
def test_download_single_range_is_206(
    client: FlaskClient, storage: LocalStorage, segment: tuple[str, bytes], header: str, start: int, end: int
) -> None:
    key, data = segment
    response = client.get(_path(storage.presign_download(key, 60)), headers={"Range": header})
    assert response.status_code == 206
    assert response.data == data[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/1024"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.headers["Cache-Control"].startswith("private, max-age=")


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
def test_download_unsatisfiable_range_is_416(
    client: FlaskClient, storage: LocalStorage, segment: tuple[str, bytes], header: str
) -> None:
    key, _ = segment
    response = client.get(_path(storage.presign_download(key, 60)), headers={"Range": header})
    _assert_error(response, 416, "NOT_FOUND")
    assert response.headers["Content-Range"] == "bytes */1024"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=5-1", "items=0-1", "bytes=abc", "bytes=-"])
def test_download_multiple_or_malformed_ranges_send_everything(
    client: FlaskClient, storage: LocalStorage, segment: tuple[str, bytes], header: str
) -> None:
    key, data = segment
    response = client.get(_path(storage.presign_download(key, 60)), headers={"Range": header})
    assert response.status_code == 200
    assert response.data == data
    assert "Content-Range" not in response.headers


def test_download_if_range_mismatch_sends_everything(
    client: FlaskClient, storage: LocalStorage, segment: tuple[str, bytes]
) -> None:
    key, data = segment
    url = _path(storage.presign_download(key, 60))
    etag = client.get(url).headers["ETag"]
    matching = client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert matching.status_code == 206 and matching.data == data[:10]
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status_code == 200 and stale.data == data


def test_download_head_has_headers_and_no_body(
    client: FlaskClient, storage: LocalStorage, segment: tuple[str, bytes]
) -> None:
    key, _ = segment
    response = client.head(_path(storage.presign_download(key, 60)))
    assert response.status_code == 200
    assert response.headers["Content-Length"] == "1024"
    assert response.data == b""


def test_download_missing_object_is_404(client: FlaskClient, storage: LocalStorage) -> None:
    response = client.get(_path(storage.presign_download(_new_key(), 60)))
    _assert_error(response, 404, "NOT_FOUND")


def test_download_empty_object(client: FlaskClient, storage: LocalStorage) -> None:
    key = keys.waveform_key(uuid.uuid4(), uuid.uuid4(), 1)
    storage.put_bytes(key, b"", "application/json")
    url = _path(storage.presign_download(key, 60))
    assert client.get(url).status_code == 200
    _assert_error(client.get(url, headers={"Range": "bytes=0-"}), 416, "NOT_FOUND")


def test_bad_download_tokens_are_403(
    app: Flask, client: FlaskClient, storage: LocalStorage, segment: tuple[str, bytes]
) -> None:
    key, _ = segment
    secret = app.config["SECRET_KEY"]
    expired = tokens.sign(secret, "download", {"k": key}, time.time() - 1)
    upload = _token(storage.presign_upload(key, "video/mp2t", 10, 60).url)
    stream = tokens.sign(secret, "stream", {"k": key}, time.time() + 60)
    valid = _token(storage.presign_download(key, 60))
    tampered = valid[:-3] + ("abc" if valid[-3:] != "abc" else "xyz")
    for bad in [expired, upload, stream, tampered]:
        _assert_error(client.get(f"/storage/download/{bad}/{key.rsplit('/', 1)[1]}"), 403, "INVALID_SIGNED_URL")


# ---- public logos -----------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def test_public_logo_is_served_with_public_caching(client: FlaskClient, storage: LocalStorage) -> None:
    key = keys.logo_key(uuid.uuid4(), uuid.uuid4(), "png")
    storage.put_bytes(key, PNG, "image/png")
    response = client.get(f"/storage/public/{key}")
    assert response.status_code == 200
    assert response.data == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_public_route_serves_nothing_but_logos(client: FlaskClient, storage: LocalStorage) -> None:
    org, media = uuid.uuid4(), uuid.uuid4()
    original = keys.original_key(org, media, "video/mp4")
    storage.put_bytes(original, b"secret video", "video/mp4")
    logo = keys.logo_key(org, uuid.uuid4(), "png")
    storage.put_bytes(logo, PNG, "image/png")
    outside = Path(storage.root).parent / "outside.png"
    outside.write_bytes(PNG)
    for path in [
        original,
        keys.thumbnail_key(org, media, 1),
        keys.logo_key(org, uuid.uuid4(), "png"),  # right shape, no such object
        f"orgs/{org}/branding/../media/{media}/original.mp4",
        f"orgs/{org}/branding/%2e%2e/%2e%2e/%2e%2e/outside.png",
        f"{logo}/../../../../outside.png",
        "../outside.png",
        "%2e%2e/outside.png",
        f"{logo}%00.png",
    ]:
        response = client.get(f"/storage/public/{path}")
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "NOT_FOUND"
        assert response.data != PNG
    # werkzeug folds the double slash with a redirect to the canonical URL; nothing is served as is.
    doubled = client.get(f"/storage/public//{logo}")
    assert doubled.status_code == 308 and doubled.data != PNG


def test_unknown_storage_route_is_404(client: FlaskClient) -> None:
    _assert_error(client.get("/storage/elsewhere"), 404, "NOT_FOUND")


# ---- with the s3 backend ----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_app(app_factory: Any, s3_server: str) -> Flask:
    config = s3_config(s3_server)
    flask_app: Flask = app_factory(STORAGE_BACKEND="s3", **config)
    s3 = flask_app.extensions["storage"]
    assert isinstance(s3, S3Storage)
    s3.ensure_bucket()
    return flask_app


def test_signed_local_routes_do_not_exist_with_s3(s3_app: Flask, storage: LocalStorage) -> None:
    key = _new_key()
    upload = _path(storage.presign_upload(key, "video/mp4", 10, 60).url)  # a valid token for this secret
    download = _path(storage.presign_download(key, 60))
    client = s3_app.test_client()
    _assert_error(client.put(upload, data=b"x", headers={"Content-Type": "video/mp4"}), 404, "NOT_FOUND")
    _assert_error(client.get(download), 404, "NOT_FOUND")


def test_public_logo_with_s3_redirects_to_a_presigned_url(s3_app: Flask) -> None:
    s3 = s3_app.extensions["storage"]
    key = keys.logo_key(uuid.uuid4(), uuid.uuid4(), "webp")
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8
    s3.put_bytes(key, webp, "image/webp")
    client = s3_app.test_client()
    response = client.get(f"/storage/public/{key}")
    assert response.status_code == 302
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    location = response.headers["Location"]
    assert location.startswith(s3.client.meta.endpoint_url) and "X-Amz-Signature=" in location
    assert "X-Amz-Expires=90000" in location  # outlives the cached redirect
    with urllib.request.urlopen(location, timeout=10) as fetched:
        assert fetched.read() == webp
        assert fetched.headers["Content-Type"] == "image/webp"
        assert fetched.headers["Cache-Control"] == "public, max-age=86400"

    _assert_error(client.get(f"/storage/public/{keys.logo_key(uuid.uuid4(), uuid.uuid4(), 'png')}"), 404, "NOT_FOUND")
    _assert_error(client.get(f"/storage/public/{_new_key()}"), 404, "NOT_FOUND")


# ---- rate limit -------------------------------------------------------------------------


def test_storage_routes_share_the_per_ip_limit(app_factory: Any, redis: Any) -> None:
    limited = app_factory(RATELIMIT_ENABLED=True)
    client = limited.test_client()
    first = client.get(f"/storage/public/{_new_key()}")
    second = client.get("/storage/download/abc/seg_00001.ts")
    assert first.status_code == 404 and second.status_code == 403
    assert first.headers["X-RateLimit-Limit"] == "1200"
    assert int(first.headers["X-RateLimit-Remaining"]) - int(second.headers["X-RateLimit-Remaining"]) == 1


@pytest.mark.parametrize(
    ("header", "start", "stop", "wrapped"),
    [
        (None, 0, 1024, True),
        ("bytes=100-", 100, 1024, True),
        ("bytes=-24", 1000, 1024, True),
        ("bytes=0-99", 0, 100, False),
        ("bytes=100-1022", 100, 1023, False),
    ],
)
def test_a_download_to_the_end_goes_through_the_servers_file_wrapper(
    client: FlaskClient,
    storage: LocalStorage,
    segment: tuple[str, bytes],
    header: str | None,
    start: int,
    stop: int,
    wrapped: bool,
) -> None:
    """A body that runs to the end of the object is handed to the server's ``wsgi.file_wrapper``
    (gunicorn sends it with sendfile), from its offset; a range short of the end is sent in chunks
    (a wrapper may read to the end). tests/storage/test_download_server.py runs both under gunicorn."""
    key, data = segment
    made: list[Any] = []

    class Wrapper:
        def __init__(self, handle: Any, block: int) -> None:
            self.handle, self.block = handle, block
            made.append(self)

        def __iter__(self) -> Any:
            return iter(lambda: self.handle.read(self.block), b"")

        def close(self) -> None:
            self.handle.close()

    headers = {"Range": header} if header else {}
    overrides = {"wsgi.file_wrapper": Wrapper}
    response = client.get(_path(storage.presign_download(key, 60)), headers=headers, environ_overrides=overrides)
    assert response.data == data[start:stop]
    assert len(made) == (1 if wrapped else 0)
    if wrapped:
        response.close()
        assert made[0].handle.closed  # closed once sent
