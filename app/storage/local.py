"""Local filesystem backend (``STORAGE_BACKEND=local``): files under ``STORAGE_LOCAL_ROOT``.

Uploads and downloads go through the app's own signed routes (``/storage/upload/<token>``,
``/storage/download/<token>/<file name>``), so a fresh machine works with no object store. Every key is
resolved under the root and a path that would leave it is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from app.security import tokens
from app.storage.base import ObjectChanged, ObjectInfo, ObjectNotFound, ObjectTooLarge, StorageError, UploadTarget

CHUNK = 1024 * 1024


def download_name(key: str) -> str:
    """The last part of ``key``: the file name a download URL ends in (``…/<token>/seg_00001.ts``)."""
    return key.rsplit("/", 1)[-1]


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

    @staticmethod
    def _tmp_for(target: Path) -> Path:
        # Unique per write: two threads of one worker uploading the same key must not share a file.
        return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        target = self.path_for(key)
        tmp = self._tmp_for(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError as exc:
            raise StorageError(f"write failed: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self.path_for(key)
        tmp = self._tmp_for(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            raise StorageError(f"write failed: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        content_type: str,
        max_bytes: int | None = None,
        *,
        before_replace: Callable[[], None] | None = None,
    ) -> int:
        """Copy ``stream`` to ``key``; raise ObjectTooLarge (and leave nothing) past ``max_bytes``.

        The object appears atomically (temporary file + rename), so a reader never sees a partial
        upload and a failed one leaves the previous object, if any, in place. ``before_replace``
        runs once every byte is written, just before the rename; whatever it raises leaves the
        previous object in place (the upload route re-checks the media's state there).
        """
        target = self.path_for(key)
        tmp = self._tmp_for(target)
        written = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as out:
                while chunk := stream.read(CHUNK):
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        raise ObjectTooLarge("more bytes than allowed")
                    out.write(chunk)
            if before_replace is not None:
                before_replace()
            os.replace(tmp, target)
        except OSError as exc:
            raise StorageError(f"write failed: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return written

    # ---- reads ------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"missing object {key}") from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0:
            raise ValueError("start must not be negative")
        if length <= 0:  # read(-1) would return the whole rest of the file
            return b""
        try:
            with self.path_for(key).open("rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(f"missing object {key}") from None

    def download_file(self, key: str, path: Path, *, if_match: str | None = None) -> None:
        """Copy the object; the ETag is taken from the opened file, so the check and the bytes copied
        are the same file even if an upload replaces the object meanwhile (writes are renames)."""
        try:
            with self.path_for(key).open("rb") as source:
                if if_match is not None and self.etag_of(os.fstat(source.fileno())) != if_match:
                    raise ObjectChanged(f"object {key} changed")
                with path.open("wb") as target:
                    shutil.copyfileobj(source, target, CHUNK)
        except FileNotFoundError:
            raise ObjectNotFound(f"missing object {key}") from None

    def head(self, key: str) -> ObjectInfo | None:
        path = self.path_for(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        if not path.is_file():
            return None
        return ObjectInfo(key=key, size=stat.st_size, content_type=None, etag=self.etag_of(stat))

    @staticmethod
    def etag_of(stat: os.stat_result) -> str:
        """Changes whenever the file is replaced: every write is a rename of a new file, whose inode
        differs from the one it replaces (the old file still exists when the new one is created), so
        two writes of the same size within one tick of the file-time clock still differ."""
        fingerprint = f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
        return hashlib.md5(fingerprint.encode(), usedforsecurity=False).hexdigest()

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

    def presign_download(
        self, key: str, ttl_seconds: int, *, content_type: str | None = None, cache_control: str | None = None
    ) -> str:
        # The download route derives Content-Type from the key and Cache-Control from the expiry.
        # The URL ends in the object's own file name: players pick the demuxer (and HLS players
        # accept a segment at all) by the extension at the end of the URL's path.
        self.path_for(key)
        token = tokens.sign(self.secret, "download", {"k": key}, time.time() + ttl_seconds)
        return f"{self.public_base_url}/storage/download/{token}/{quote(download_name(key), safe='')}"

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StorageError("storage root is not writable")
