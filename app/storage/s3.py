"""S3-compatible backend (``STORAGE_BACKEND=s3``): AWS, versitygw, MinIO or moto through boto3.

Clients upload and fetch directly with presigned URLs; the app only signs, inspects and deletes.
The app talks to ``S3_ENDPOINT_URL``; the URLs it hands out name ``S3_PUBLIC_ENDPOINT_URL`` (the
same server as seen from browsers, when that differs: docker-compose, a proxy in front).
Every boto3/botocore failure becomes ``StorageError`` (``ObjectNotFound`` for a missing key on
reads; ``head`` answers None instead). Timeouts follow security.md §14: connect 5 s, read 60 s
for transfers and 10 s for metadata calls (HEAD, list, delete).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from app.storage.base import (
    InvalidParts,
    ObjectChanged,
    ObjectInfo,
    ObjectNotFound,
    ObjectTooLarge,
    PartInfo,
    StorageError,
    UploadNotFound,
    UploadTarget,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

DELETE_BATCH = 1000  # the S3 limit per DeleteObjects call
DOWNLOAD_CHUNK = 1024 * 1024
# HEAD answers carry no body, so a missing key (or bucket) shows up as a bare "404".
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
# If-Match on a replaced object: "PreconditionFailed" with a body (GET), a bare "412" without (HEAD).
_PRECONDITION_CODES = {"412", "PreconditionFailed"}
_BOTO_ERRORS = (BotoCoreError, ClientError, Boto3Error)
# CompleteMultipartUpload's answers for a part list it will not assemble (the client's fault, not an outage).
_INVALID_PARTS_CODES = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall"}


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "")
    return ""


def _describe(action: str, exc: BaseException) -> str:
    # Class and S3 code only: botocore messages can echo request details we do not want in logs.
    code = _error_code(exc)
    return f"s3 {action} failed: {type(exc).__name__}{f' ({code})' if code else ''}"


class _LimitedReader:
    """File-like wrapper counting bytes read; raises ObjectTooLarge past ``limit`` (upload never completes)."""

    def __init__(self, stream: BinaryIO, limit: int | None) -> None:
        self._stream = stream
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self.count += len(chunk)
        if self._limit is not None and self.count > self._limit:
            raise ObjectTooLarge("more bytes than allowed")
        return chunk


class S3Storage:
    """``client`` moves bytes, ``meta`` makes the short metadata calls (both to the internal endpoint),
    ``presigner`` only signs the URLs handed to browsers and players (the public endpoint)."""

    name = "s3"

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        meta_client: S3Client | None = None,
        presign_client: S3Client | None = None,
    ) -> None:
        self.client = client
        # Metadata calls get the shorter read timeout; defaults to the transfer client.
        self.meta = meta_client or client
        self.presigner = presign_client or self.meta
        self.bucket = bucket

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> S3Storage:
        """S3_BUCKET, S3_ENDPOINT_URL (empty = AWS), S3_PUBLIC_ENDPOINT_URL (empty = the same),
        S3_REGION; AWS_* keys when set, else the default chain."""
        endpoint = (config.get("S3_ENDPOINT_URL") or "").strip().rstrip("/") or None
        public = (config.get("S3_PUBLIC_ENDPOINT_URL") or "").strip().rstrip("/") or endpoint
        region = config.get("S3_REGION") or "us-east-1"
        key_id = config.get("AWS_ACCESS_KEY_ID") or None
        secret = config.get("AWS_SECRET_ACCESS_KEY") or None
        # A session of our own: boto3's module-level default session is not safe to share across threads.
        if key_id and secret:
            session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region)
        else:
            session = boto3.session.Session(region_name=region)

        def make(read_timeout: int, endpoint_url: str | None) -> S3Client:
            boto_config = BotoConfig(
                signature_version="s3v4",
                connect_timeout=5,
                read_timeout=read_timeout,
                retries={"total_max_attempts": 3, "mode": "standard"},
                # S3-compatible servers (versitygw, MinIO, moto) serve buckets under the path, not as virtual hosts.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
            )
            return session.client("s3", region_name=region, endpoint_url=endpoint_url, config=boto_config)

        meta = make(10, endpoint)
        # SigV4 signs the Host header: a URL is only valid at the host it was signed for, so URLs
        # for browsers are signed by a client of the public endpoint (e.g. http://localhost:7070
        # for a server the app reaches as http://s3:7070). Signing is local: no request is made.
        presigner = make(10, public) if public != endpoint else meta
        return cls(make(60, endpoint), config["S3_BUCKET"], meta_client=meta, presign_client=presigner)

    def _call(self, action: str, func: Callable[[], Any]) -> Any:
        try:
            return func()
        except _BOTO_ERRORS as exc:
            if _error_code(exc) == "NoSuchUpload":
                raise UploadNotFound(_describe(action, exc)) from exc
            if _error_code(exc) in _INVALID_PARTS_CODES:
                raise InvalidParts(_describe(action, exc)) from exc
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise ObjectNotFound(_describe(action, exc)) from exc
            if _error_code(exc) in _PRECONDITION_CODES:
                raise ObjectChanged(_describe(action, exc)) from exc
            raise StorageError(_describe(action, exc)) from exc

    # ---- writes -----------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._call(
            "put",
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type),
        )

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        # upload_file switches to multipart for large files (and aborts it on failure).
        self._call(
            "upload",
            lambda: self.client.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type}),
        )

    def put_stream(self, key: str, stream: BinaryIO, content_type: str, max_bytes: int | None = None) -> int:
        """Upload a stream; past ``max_bytes`` raise ObjectTooLarge and the object is not created."""
        reader = _LimitedReader(stream, max_bytes)
        self._call(
            "upload",
            lambda: self.client.upload_fileobj(
                reader,  # type: ignore[arg-type]  # only .read() is needed
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type},
            ),
        )
        return reader.count

    # ---- reads ------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        def fetch() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return body.read()
            finally:
                body.close()

        data: bytes = self._call("get", fetch)
        return data

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0:
            raise ValueError("start must not be negative")
        if length <= 0:
            return b""

        def fetch() -> bytes:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
            body = response["Body"]
            try:
                return body.read()
            finally:
                body.close()

        try:
            data: bytes = self._call("get range", fetch)
        except StorageError as exc:
            # Past the end: same answer as reading past EOF of a local file.
            if _error_code(exc.__cause__ or exc) == "InvalidRange":
                return b""
            raise
        return data

    def download_file(self, key: str, path: Path, *, if_match: str | None = None) -> None:
        """With ``if_match``: one GetObject with ``If-Match`` streamed to ``path`` (boto3's transfer
        manager does not accept IfMatch), so a replaced object answers 412 (ObjectChanged) and the
        bytes written are that version's or none."""
        if if_match is None:
            self._call("download", lambda: self.client.download_file(self.bucket, key, str(path)))
            return

        def fetch() -> None:
            body = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{if_match}"')["Body"]
            try:
                with path.open("wb") as out:
                    for chunk in body.iter_chunks(DOWNLOAD_CHUNK):
                        out.write(chunk)
            finally:
                body.close()

        try:
            self._call("download", fetch)
        except StorageError:
            path.unlink(missing_ok=True)  # never leave part of an object behind
            raise

    def head(self, key: str) -> ObjectInfo | None:
        try:
            response = self._call("head", lambda: self.meta.head_object(Bucket=self.bucket, Key=key))
        except ObjectNotFound:
            return None
        etag = response.get("ETag")
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            content_type=response.get("ContentType"),
            etag=etag.strip('"') if etag else None,
        )

    def list_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.meta.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        while True:
            page = self._call("list", lambda: next(pages, None))
            if page is None:
                return
            for item in page.get("Contents", []):
                yield item["Key"]

    # ---- deletes ----------------------------------------------------------------------

    def delete(self, key: str) -> None:
        self._call("delete", lambda: self.meta.delete_object(Bucket=self.bucket, Key=key))

    def delete_prefix(self, prefix: str, *, batch_size: int = DELETE_BATCH) -> int:
        """Delete every object under ``prefix`` (a "directory": a trailing ``/`` is implied).

        Aborts unfinished multipart uploads first, so none can complete into the prefix after the
        listing; then lists page by page and deletes in batches of ``batch_size`` (≤ 1000).
        Returns the number of objects deleted. Safe to run again.
        """
        if not prefix.strip("/"):
            raise StorageError("refusing to delete the whole bucket")
        if not 1 <= batch_size <= DELETE_BATCH:
            raise ValueError(f"batch_size must be 1..{DELETE_BATCH}")
        prefix = prefix if prefix.endswith("/") else f"{prefix}/"
        self._abort_multipart_uploads(prefix)
        deleted = 0
        batch: list[ObjectIdentifierTypeDef] = []
        for key in self.list_keys(prefix):
            batch.append({"Key": key})
            if len(batch) == batch_size:
                deleted += self._delete_batch(batch)
                batch = []
        if batch:
            deleted += self._delete_batch(batch)
        return deleted

    def _delete_batch(self, batch: list[ObjectIdentifierTypeDef]) -> int:
        response = self._call(
            "delete batch",
            lambda: self.meta.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}),
        )
        errors = response.get("Errors") or []
        if errors:
            codes = sorted({str(e.get("Code")) for e in errors})
            raise StorageError(f"s3 delete batch failed for {len(errors)} objects ({', '.join(codes)})")
        return len(batch)

    def _abort_multipart_uploads(self, prefix: str) -> None:
        paginator = self.meta.get_paginator("list_multipart_uploads")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        while True:
            page = self._call("list uploads", lambda: next(pages, None))
            if page is None:
                return
            for upload in page.get("Uploads", []):
                self._abort_upload(upload["Key"], upload["UploadId"])

    def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.meta.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":  # completed or aborted meanwhile: nothing to do
                raise StorageError(_describe("abort upload", exc)) from exc
        except _BOTO_ERRORS as exc:
            raise StorageError(_describe("abort upload", exc)) from exc

    # ---- signed URLs ------------------------------------------------------------------

    def presign_upload(self, key: str, content_type: str, max_bytes: int, ttl_seconds: int) -> UploadTarget:
        # A presigned PUT binds key and Content-Type but cannot bound the size: upload-complete
        # checks it (security.md §7).
        expires = time.time() + ttl_seconds
        url = self._call(
            "presign upload",
            lambda: self.presigner.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
                ExpiresIn=ttl_seconds,
                HttpMethod="PUT",
            ),
        )
        return UploadTarget(
            method="PUT",
            url=url,
            headers={"Content-Type": content_type},
            expires_at=datetime.fromtimestamp(int(expires), UTC),
        )

    def presign_download(
        self, key: str, ttl_seconds: int, *, content_type: str | None = None, cache_control: str | None = None
    ) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if content_type:
            params["ResponseContentType"] = content_type
        if cache_control:
            params["ResponseCacheControl"] = cache_control
        url: str = self._call(
            "presign download",
            lambda: self.presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_seconds),
        )
        return url

    # ---- multipart uploads (api.md §6.1) --------------------------------------------------

    def create_multipart(self, key: str, content_type: str) -> str:
        response = self._call(
            "create multipart",
            lambda: self.meta.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type),
        )
        return str(response["UploadId"])

    def presign_part(
        self, key: str, upload_id: str, part_number: int, max_bytes: int, ttl_seconds: int, *, offset: int = 0
    ) -> UploadTarget:
        # Like a presigned PUT, an UploadPart URL cannot bound the size: upload-complete checks
        # every part's size (ListParts) before it asks S3 to assemble them.
        expires = time.time() + ttl_seconds
        url = self._call(
            "presign part",
            lambda: self.presigner.generate_presigned_url(
                "upload_part",
                Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number},
                ExpiresIn=ttl_seconds,
                HttpMethod="PUT",
            ),
        )
        return UploadTarget(method="PUT", url=url, headers={}, expires_at=datetime.fromtimestamp(int(expires), UTC))

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """Every stored part (``ListParts`` pages of 1000; an upload has at most 10 000)."""
        parts: list[PartInfo] = []
        marker = 0
        while True:
            page = self._call(
                "list parts",
                lambda marker=marker: self.meta.list_parts(  # type: ignore[misc]
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker, MaxParts=1000
                ),
            )
            for part in page.get("Parts", []):
                parts.append(PartInfo(int(part["PartNumber"]), int(part["Size"]), str(part["ETag"]).strip('"')))
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        listed = [{"PartNumber": number, "ETag": f'"{etag}"'} for number, etag in parts]
        # Assembling gigabytes can take S3 a while (it keeps the connection alive): the transfer client.
        self._call(
            "complete multipart",
            lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},  # type: ignore[typeddict-item]
            ),
        )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._abort_upload(key, upload_id)

    def sweep_leftovers(self, older_than_seconds: float) -> int:
        """Nothing: incomplete uploads are the bucket's lifecycle rule's (docs/operations.md)."""
        return 0

    # ---- health and set-up ------------------------------------------------------------

    def check(self) -> None:
        self._call("head bucket", lambda: self.meta.head_bucket(Bucket=self.bucket))

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (tests, compose's createbucket, `make stack`)."""
        try:
            self.check()
            return
        except ObjectNotFound:
            pass
        region = self.meta.meta.region_name
        try:
            if region and region != "us-east-1":
                self.meta.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                )
            else:
                self.meta.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise StorageError(_describe("create bucket", exc)) from exc
        except _BOTO_ERRORS as exc:
            raise StorageError(_describe("create bucket", exc)) from exc
