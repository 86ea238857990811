"""Local filesystem backend (``STORAGE_BACKEND=local``): files under ``STORAGE_LOCAL_ROOT``.

Uploads and downloads go through the app's own signed routes (``/storage/upload/<token>``,
``/storage/download/<token>``), so a fresh machine works with no object store. Every key is
resolved under the root and a path that would leave it is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from app.security import tokens
from app.storage.base import ObjectInfo, StorageError, UploadTarget

CHUNK = 1024 * 1024


class LocalStorage:
    name = "local"

    def __init__(self, root: Path, secret: str, public_base_url: str) -> None:
        self.root = root.resolve()
        self.secret = secret
        self.public_base_url = public_base_url.rstrip("/")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LocalStorage:
        return cls(Path(config["STORAGE_LOCAL_ROOT"]), config["SECRET_KEY"], config["PUBLIC_BASE_URL"])

    # ---- paths ------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        if not key or key.startswith("/") or "\\" in key or "\x00" in key:
            raise StorageError("invalid key")
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StorageError("key leaves the storage root")
        return path

    # ---- writes -----------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self.path_for(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def put_stream(self, key: str, stream: BinaryIO, content_type: str, max_bytes: int | None = None) -> int:
        """Copy ``stream`` to ``key``; raise StorageError (and leave nothing) past ``max_bytes``."""
        target = self.path_for(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        written = 0
        try:
            with tmp.open("wb") as out:
                while chunk := stream.read(CHUNK):
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        raise StorageError("more bytes than allowed")
                    out.write(chunk)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return written

    # ---- reads ------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"missing object {key}") from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self.path_for(key).open("rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError:
            raise StorageError(f"missing object {key}") from None

    def download_file(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self.path_for(key), path)
        except FileNotFoundError:
            raise StorageError(f"missing object {key}") from None

    def head(self, key: str) -> ObjectInfo | None:
        path = self.path_for(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        if not path.is_file():
            return None
        etag = hashlib.md5(f"{stat.st_size}:{stat.st_mtime_ns}".encode(), usedforsecurity=False).hexdigest()
        return ObjectInfo(key=key, size=stat.st_size, content_type=None, etag=etag)

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self.path_for(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()

    # ---- deletes ----------------------------------------------------------------------

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.strip("/"):
            raise StorageError("refusing to delete the whole root")
        base = self.path_for(prefix.rstrip("/"))
        if not base.exists():
            return 0
        if base.is_file():
            base.unlink()
            return 1
        count = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base)
        return count

    # ---- signed URLs ------------------------------------------------------------------

    def presign_upload(self, key: str, content_type: str, max_bytes: int, ttl_seconds: int) -> UploadTarget:
        self.path_for(key)
        expires = time.time() + ttl_seconds
        token = tokens.sign(self.secret, "upload", {"k": key, "t": content_type, "n": max_bytes}, expires)
        return UploadTarget(
            method="PUT",
            url=f"{self.public_base_url}/storage/upload/{token}",
            headers={"Content-Type": content_type},
            expires_at=datetime.fromtimestamp(int(expires), UTC),
        )

    def presign_download(self, key: str, ttl_seconds: int) -> str:
        self.path_for(key)
        token = tokens.sign(self.secret, "download", {"k": key}, time.time() + ttl_seconds)
        return f"{self.public_base_url}/storage/download/{token}"

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StorageError("storage root is not writable")
