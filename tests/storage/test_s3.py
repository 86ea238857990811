"""S3Storage against moto's S3 server over real HTTP (presigned URLs fetched with urllib)."""

from __future__ import annotations

import hashlib
import hmac
import io
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import pytest

from app.storage import keys
from app.storage.base import ObjectChanged, ObjectNotFound, ObjectTooLarge, StorageError
from app.storage.s3 import S3Storage


def s3_config(endpoint: str, bucket: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "S3_BUCKET": bucket or f"codex-test-{uuid.uuid4().hex[:12]}",
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **extra,
    }


@pytest.fixture()
def storage(s3_server: str) -> S3Storage:
    s3 = S3Storage.from_config(s3_config(s3_server))
    s3.ensure_bucket()
    return s3


def http(url: str, *, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(request, timeout=10)


def test_presigned_upload_then_read_back_and_purge(storage: S3Storage) -> None:
    org, media = uuid.uuid4(), uuid.uuid4()
    key = keys.original_key(org, media, "video/mp4")
    payload = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4

    target = storage.presign_upload(key, "video/mp4", len(payload), 900)
    assert target.method == "PUT" and target.headers == {"Content-Type": "video/mp4"}
    assert 890 <= target.expires_at.timestamp() - time.time() <= 900
    # The Content-Type is part of the signature (moto does not check signatures, so assert the binding).
    query = parse_qs(urlsplit(target.url).query)
    assert query["X-Amz-SignedHeaders"] == ["content-type;host"]
    assert query["X-Amz-Expires"] == ["900"]
    with http(target.url, method="PUT", data=payload, headers=target.headers) as response:
        assert response.status == 200

    info = storage.head(key)
    assert info is not None
    assert (info.size, info.content_type) == (len(payload), "video/mp4")
    assert info.etag and '"' not in info.etag
    assert storage.get_bytes(key) == payload
    assert storage.read_range(key, 0, 4096)[4:8] == b"ftyp"
    assert storage.read_range(key, 10, 5) == payload[10:15]
    assert storage.read_range(key, len(payload) + 10, 5) == b""

    url = storage.presign_download(key, 60, content_type="video/mp4")
    with http(url) as response:
        assert response.read() == payload
        assert response.headers["Content-Type"] == "video/mp4"

    thumb = keys.thumbnail_key(org, media, 1)
    storage.put_bytes(thumb, b"\xff\xd8\xff", "image/jpeg")
    assert sorted(storage.list_keys(keys.media_prefix(org, media))) == sorted([key, thumb])
    assert storage.delete_prefix(keys.media_prefix(org, media)) == 2
    assert storage.head(key) is None
    assert storage.head(thumb) is None


def test_delete_prefix_batches_and_aborts_multipart_uploads(storage: S3Storage) -> None:
    org, media, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    prefix = keys.media_prefix(org, media)
    mine = [keys.hls_segment_key(org, media, 1, "360p", i) for i in range(1, 4)]
    for key in mine:
        storage.put_bytes(key, b"ts", "video/mp2t")
    kept = keys.original_key(org, other, "video/mp4")
    storage.put_bytes(kept, b"keep", "video/mp4")
    pending = keys.original_key(org, media, "video/mp4")
    upload = storage.client.create_multipart_upload(Bucket=storage.bucket, Key=pending)
    storage.client.upload_part(
        Bucket=storage.bucket, Key=pending, UploadId=upload["UploadId"], PartNumber=1, Body=b"part"
    )

    batches: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        batches.append(len(params["Delete"]["Objects"]))

    storage.meta.meta.events.register("before-parameter-build.s3.DeleteObjects", record)
    assert storage.delete_prefix(prefix, batch_size=2) == 3
    assert batches == [2, 1]
    assert list(storage.list_keys(prefix)) == []
    uploads = storage.meta.list_multipart_uploads(Bucket=storage.bucket, Prefix=prefix)
    assert uploads.get("Uploads", []) == []
    assert storage.get_bytes(kept) == b"keep"
    assert storage.delete_prefix(prefix) == 0  # purging twice is harmless


def test_delete_prefix_refuses_the_whole_bucket_and_bad_batches(storage: S3Storage) -> None:
    with pytest.raises(StorageError):
        storage.delete_prefix("")
    with pytest.raises(StorageError):
        storage.delete_prefix("/")
    with pytest.raises(ValueError):
        storage.delete_prefix("orgs/", batch_size=1001)


def test_put_stream_respects_max_bytes(storage: S3Storage) -> None:
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "audio/ogg")
    with pytest.raises(ObjectTooLarge):
        storage.put_stream(key, io.BytesIO(b"O" * 11), "audio/ogg", 10)
    assert storage.head(key) is None
    assert storage.put_stream(key, io.BytesIO(b"OggS" + b"x" * 6), "audio/ogg", 10) == 10
    info = storage.head(key)
    assert info is not None and (info.size, info.content_type) == (10, "audio/ogg")


def test_files_round_trip(storage: S3Storage, tmp_path: Path) -> None:
    key = keys.waveform_key(uuid.uuid4(), uuid.uuid4(), 1)
    source = tmp_path / "waveform.json"
    source.write_bytes(b'{"version": 1}')
    storage.put_file(key, source, "application/json")
    storage.download_file(key, tmp_path / "back.json")
    assert (tmp_path / "back.json").read_bytes() == b'{"version": 1}'
    info = storage.head(key)
    assert info is not None and info.content_type == "application/json"
    storage.delete(key)
    assert storage.head(key) is None
    storage.delete(key)  # deleting a missing key is not an error on S3


def test_download_with_if_match_fails_once_the_object_was_replaced(storage: S3Storage, tmp_path: Path) -> None:
    """security.md §8: GetObject with If-Match of the pinned ETag; a replaced object answers 412."""
    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    storage.put_bytes(key, b"checked bytes", "video/mp4")
    pinned = storage.head(key)
    assert pinned is not None and pinned.etag
    storage.download_file(key, tmp_path / "ok.mp4", if_match=pinned.etag)
    assert (tmp_path / "ok.mp4").read_bytes() == b"checked bytes"

    storage.put_bytes(key, b"hostile bytes", "video/mp4")  # a second PUT with the still-valid presigned URL
    with pytest.raises(ObjectChanged):
        storage.download_file(key, tmp_path / "changed.mp4", if_match=pinned.etag)
    assert not (tmp_path / "changed.mp4").exists()
    storage.download_file(key, tmp_path / "any.mp4")
    assert (tmp_path / "any.mp4").read_bytes() == b"hostile bytes"


def test_missing_objects(storage: S3Storage, tmp_path: Path) -> None:
    key = keys.thumbnail_key(uuid.uuid4(), uuid.uuid4(), 1)
    assert storage.head(key) is None
    with pytest.raises(ObjectNotFound):
        storage.get_bytes(key)
    with pytest.raises(ObjectNotFound):
        storage.read_range(key, 0, 10)
    with pytest.raises(ObjectNotFound):
        storage.download_file(key, tmp_path / "nothing")


def test_missing_bucket_is_a_storage_error_until_ensured(s3_server: str) -> None:
    storage = S3Storage.from_config(s3_config(s3_server))
    with pytest.raises(StorageError):
        storage.check()
    with pytest.raises(StorageError) as excinfo:
        storage.put_bytes("orgs/x", b"x", "text/plain")
    assert not isinstance(excinfo.value, ObjectNotFound)
    storage.ensure_bucket()
    storage.ensure_bucket()  # idempotent
    storage.check()


def test_client_configuration(s3_server: str) -> None:
    local = S3Storage.from_config(s3_config(s3_server))
    config = local.client.meta.config
    assert local.client.meta.endpoint_url == s3_server
    assert config.signature_version == "s3v4"
    assert (config.connect_timeout, config.read_timeout) == (5, 60)
    assert local.meta.meta.config.read_timeout == 10
    assert config.s3 == {"addressing_style": "path"}
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}

    aws = S3Storage.from_config(s3_config("", S3_REGION="eu-west-1"))
    assert aws.client.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert aws.client.meta.region_name == "eu-west-1"
    assert aws.client.meta.config.s3 == {"addressing_style": "auto"}
    url = aws.presign_download("orgs/a/b.png", 60)  # signing needs no network
    assert url.startswith("https://")


def test_storage_errors_do_not_leak_request_details(storage: S3Storage) -> None:
    other = S3Storage.from_config(s3_config(storage.client.meta.endpoint_url))
    with pytest.raises(StorageError) as excinfo:
        other.get_bytes("orgs/secret-looking-key")
    assert "secret-looking-key" not in str(excinfo.value)


def _signing_key_id(storage: S3Storage) -> str:
    url = storage.presign_download("orgs/a/b.png", 60)
    return parse_qs(urlsplit(url).query)["X-Amz-Credential"][0].split("/")[0]


def test_credentials_from_config_win_and_default_chain_otherwise(
    s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    assert _signing_key_id(S3Storage.from_config(s3_config(s3_server))) == "testing"
    chained = S3Storage.from_config(s3_config(s3_server, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY=""))
    assert _signing_key_id(chained) == "from-env"


# ---- a public endpoint for browsers, an internal one for the app ----------------------------


def _sigv4_query_signature_valid(
    url: str, secret: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> bool:
    """Check a presigned URL as an S3 server does (SigV4 query auth), for a client that sends the
    request to the URL's own host: the Host header is the URL's ``host[:port]``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    signed_names = params["X-Amz-SignedHeaders"].split(";")
    sent = {"host": parts.netloc, **{name.lower(): value for name, value in (headers or {}).items()}}
    canonical_query = "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
        for name, value in sorted(query)
        if name != "X-Amz-Signature"
    )
    canonical_headers = "".join(f"{name}:{sent[name].strip()}\n" for name in signed_names)
    canonical_request = "\n".join(
        [method, parts.path, canonical_query, canonical_headers, ";".join(signed_names), "UNSIGNED-PAYLOAD"]
    )
    _key_id, day, region, service, terminal = params["X-Amz-Credential"].split("/")
    scope = f"{day}/{region}/{service}/{terminal}"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, terminal):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, params["X-Amz-Signature"])


@pytest.fixture()
def split_storage(s3_server: str) -> tuple[S3Storage, str, str]:
    """The app reaches moto as 127.0.0.1, browsers as localhost (both are the same server)."""
    internal = s3_server
    public = s3_server.replace("127.0.0.1", "localhost")
    assert internal != public
    s3 = S3Storage.from_config(s3_config(internal, S3_PUBLIC_ENDPOINT_URL=public))
    s3.ensure_bucket()
    return s3, internal, public


def test_presigned_urls_name_the_public_endpoint_and_the_app_calls_the_internal_one(
    split_storage: tuple[S3Storage, str, str],
) -> None:
    storage, internal, public = split_storage
    assert storage.client.meta.endpoint_url == internal
    assert storage.meta.meta.endpoint_url == internal
    assert storage.presigner.meta.endpoint_url == public
    assert storage.presigner.meta.config.s3 == {"addressing_style": "path"}

    key = keys.original_key(uuid.uuid4(), uuid.uuid4(), "video/mp4")
    target = storage.presign_upload(key, "video/mp4", 4, 600)
    assert urlsplit(target.url).netloc == urlsplit(public).netloc
    # What a SigV4-checking server (AWS, versitygw) computes for the request the browser sends.
    assert _sigv4_query_signature_valid(target.url, "testing", method="PUT", headers=target.headers)
    with http(target.url, method="PUT", data=b"\x00\x01\x02\x03", headers=target.headers) as response:
        assert response.status == 200
    info = storage.head(key)  # through the internal endpoint
    assert info is not None and info.size == 4

    url = storage.presign_download(key, 60, content_type="video/mp4")
    assert url.startswith(f"{public}/{storage.bucket}/")
    assert _sigv4_query_signature_valid(url, "testing")
    with http(url) as response:
        assert response.read() == b"\x00\x01\x02\x03"

    # Why the public endpoint's own client signs: SigV4 covers the Host header, so a URL signed
    # for the internal host and rewritten to the public one is refused by a checking server.
    internal_url = storage.meta.generate_presigned_url(
        "get_object", Params={"Bucket": storage.bucket, "Key": key}, ExpiresIn=60
    )
    assert _sigv4_query_signature_valid(internal_url, "testing")
    rewritten = internal_url.replace(urlsplit(internal).netloc, urlsplit(public).netloc, 1)
    assert not _sigv4_query_signature_valid(rewritten, "testing")


def test_without_a_public_endpoint_urls_name_the_internal_one(s3_server: str) -> None:
    storage = S3Storage.from_config(s3_config(s3_server, S3_PUBLIC_ENDPOINT_URL=""))
    assert storage.presigner is storage.meta
    url = storage.presign_download("orgs/a/b.png", 60)
    assert url.startswith(f"{s3_server}/")
    assert _sigv4_query_signature_valid(url, "testing")
