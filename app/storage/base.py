"""The storage protocol every backend implements (local filesystem, S3-compatible)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol


class StorageError(Exception):
    """A backend failure (network, permissions). Callers treat it as transient."""


class ObjectNotFound(StorageError):
    """The key does not exist (reads); lets callers tell a missing object from an outage."""


class ObjectTooLarge(StorageError):
    """``put_stream`` read more than ``max_bytes``; nothing was stored (not transient)."""


class ObjectChanged(StorageError):
    """The object's ETag is not the one asked for (``if_match``): it was replaced (not transient)."""


class UploadNotFound(StorageError):
    """The multipart upload does not exist (completed, aborted or never started; not transient)."""


class InvalidParts(StorageError):
    """CompleteMultipartUpload refused the part list: a part missing, replaced or too small (not transient)."""


class UploadBusy(StorageError):
    """A part of this multipart upload is still being written (local backend; try again shortly)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str | None
    etag: str | None = None


@dataclass(frozen=True)
class UploadTarget:
    """Where the client PUTs the bytes (api.md ``Upload``)."""

    method: str
    url: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class PartInfo:
    """One stored part of a multipart upload (S3 ``ListParts``)."""

    part_number: int
    size: int
    etag: str


class Storage(Protocol):
    name: str

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    def put_stream(self, key: str, stream: BinaryIO, content_type: str, max_bytes: int | None = None) -> int:
        """Store ``stream`` and return its size; past ``max_bytes`` raise ObjectTooLarge, storing nothing."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def read_range(self, key: str, start: int, length: int) -> bytes: ...

    def download_file(self, key: str, path: Path, *, if_match: str | None = None) -> None:
        """Copy the object to ``path``; with ``if_match``, only if its ETag is that one, else ObjectChanged."""
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def list_keys(self, prefix: str) -> Iterator[str]: ...

    def presign_upload(self, key: str, content_type: str, max_bytes: int, ttl_seconds: int) -> UploadTarget: ...

    def presign_download(
        self, key: str, ttl_seconds: int, *, content_type: str | None = None, cache_control: str | None = None
    ) -> str:
        """A GET URL for ``key``; ``content_type``/``cache_control`` override the served headers where supported."""
        ...

    def check(self) -> None:
        """Raise StorageError when the backend is not usable (readiness probe)."""
        ...

    # ---- multipart uploads (api.md §6.1) ------------------------------------------------------

    def create_multipart(self, key: str, content_type: str) -> str:
        """Start a multipart upload of ``key``; returns its upload id."""
        ...

    def presign_part(
        self, key: str, upload_id: str, part_number: int, max_bytes: int, ttl_seconds: int, *, offset: int = 0
    ) -> UploadTarget:
        """A PUT URL for one part (S3 ``UploadPart``) starting at byte ``offset`` of the object;
        ``max_bytes`` bounds it where the backend can (local; S3 cannot, upload-complete checks)."""
        ...

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """The parts stored now, by part number; UploadNotFound when the upload is gone."""
        ...

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Assemble ``(part_number, etag)`` in order into ``key``; InvalidParts / UploadNotFound."""
        ...

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop the upload and its parts; an upload already gone is not an error."""
        ...

    def sweep_leftovers(self, older_than_seconds: float) -> int:
        """Remove what an interrupted clean-up left behind, untouched for ``older_than_seconds``
        (local storage: discarded upload directories; S3 has its lifecycle rule). How many."""
        ...
