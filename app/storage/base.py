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
