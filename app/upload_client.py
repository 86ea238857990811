"""The client behind ``flask codex upload``: a resumable, parallel multipart upload over the HTTP API.

It speaks only the public API (api.md §6.1), the way a browser with Uppy would, so it works against
any deployment and either storage backend, and goes through every check the API makes:

1. ``POST /api/v1/orgs/{org}/media`` with ``upload_mode=multipart`` (part size and count come back);
2. ``POST …/upload/parts`` for a batch of part numbers, then ``PUT`` each part to its URL, several at
   once (one keep-alive connection per thread);
3. ``POST …/upload-complete`` (the server assembles the stored parts and checks the file).

Resuming: a small state file (``<state dir>/<sha256 of path, size, mtime>.json``) remembers the media
id of a file being uploaded. Run the command again after an interruption (Ctrl-C, a crash, a lost
network): it asks ``GET …/upload/parts`` what storage already holds and sends only the rest. The
state file is removed once the upload is complete. A changed file (size or mtime) starts afresh.

Standard library only (``http.client``): nothing to install on an operator's machine.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from app.media import multipart

EXTENSION_TYPES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".weba": "audio/webm",
}
SIGN_BATCH = 100  # the API's limit per request for part URLs
TIMEOUT = 120.0
SEND_BLOCK = 1024 * 1024  # a part's body over TLS, block by block


class UploadError(Exception):
    """The API refused a step (message from its error body) or could not be reached."""


class Interrupted(UploadError):
    """Stopped on purpose after ``stop_after`` parts (to try resuming); the state file is kept."""


# ---- HTTP -----------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def error(self) -> str:
        try:
            error = self.json()["error"]
            return f"{error['code']}: {error['message']} {error.get('details') or ''}".strip()
        except (ValueError, KeyError, TypeError):
            return self.body[:200].decode(errors="replace")


class Http:
    """Keep-alive connections, one per thread and host (``http.client`` connections are not shared)."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        connection = pool.get((scheme, netloc))
        if connection is None:
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            connection = cls(netloc, timeout=self.timeout)
            pool[(scheme, netloc)] = connection
        return connection

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        file: FileRange | None = None,
    ) -> Reply:
        """Send one request; ``file`` (instead of ``body``) sends a byte range of a file as the body."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):  # a keep-alive connection the server closed meanwhile: reconnect once
            connection = self._connection(parts.scheme, parts.netloc)
            try:
                if file is None:
                    connection.request(method, target, body=body, headers=headers or {})
                else:
                    _send_file(connection, method, target, file, headers or {})
                response = connection.getresponse()
                data = response.read()
                return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
            except (http.client.HTTPException, ConnectionError) as exc:
                connection.close()
                if attempt == 2:
                    raise UploadError(f"{method} {parts.netloc}{parts.path}: {exc}") from exc
            except OSError as exc:
                connection.close()
                raise UploadError(f"{method} {parts.netloc}{parts.path}: {exc}") from exc
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class FileRange:
    """``length`` bytes of ``path`` from ``offset``: a part's body, sent straight from the file."""

    path: Path
    offset: int
    length: int


def _send_file(
    connection: http.client.HTTPConnection, method: str, target: str, file: FileRange, headers: dict[str, str]
) -> None:
    """Send a request whose body is ``file``, straight from the file.

    Over plain HTTP the kernel moves the bytes from the page cache to the socket (``sendfile(2)``):
    no copy through Python, no part-sized buffer per thread. Over TLS, which ``sendfile`` cannot
    encrypt, 1 MiB blocks read into one buffer (``socket.sendfile``'s own fallback, like
    ``http.client`` with a file body, would send 8 KiB at a time).
    """
    connection.putrequest(method, target)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(file.length))
    connection.endheaders()  # connects if needed; the body goes separately below
    sock = connection.sock
    assert sock is not None
    with file.path.open("rb", buffering=0) as handle:  # per request: no shared file position
        if not file.length:
            sent = 0
        elif isinstance(sock, ssl.SSLSocket):
            sent = _send_blocks(sock, handle, file.offset, file.length)
        else:
            sent = sock.sendfile(handle, file.offset, file.length)
    if sent != file.length:  # the file shrank meanwhile; the server would wait for the rest
        connection.close()
        raise UploadError(f"{file.path.name} changed while it was being uploaded")


def _send_blocks(sock: socket.socket, handle: io.RawIOBase, offset: int, length: int) -> int:
    """Send ``length`` bytes of ``handle`` from ``offset`` in 1 MiB blocks; returns the count sent
    (less if the file ends first)."""
    buffer = memoryview(bytearray(min(SEND_BLOCK, length)))
    handle.seek(offset)
    sent = 0
    while sent < length:
        count = handle.readinto(buffer[: min(SEND_BLOCK, length - sent)])
        if not count:
            break
        sock.sendall(buffer[:count])
        sent += count
    return sent


class Api:
    """The JSON API with a bearer token."""

    def __init__(self, base_url: str, token: str | None, http: Http | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = http or Http()

    def call(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,)) -> Reply:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        reply = self.http.request(method, f"{self.base_url}{path}", data, headers)
        if reply.status not in expect:
            raise UploadError(f"{method} {path} answered {reply.status} {reply.error()}")
        return reply

    def login(self, email: str, password: str) -> None:
        reply = self.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
        self.token = reply.json()["token"]


# ---- progress -------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr (redrawn at most 10 times a second)."""

    def __init__(self, total: int, stream: IO[str] | None = None, width: int = 30) -> None:
        self.total, self.width = max(total, 1), width
        self.stream = stream or sys.stderr
        self.done = 0
        self.sent = 0  # bytes sent in this run (for the rate)
        self.started = time.monotonic()
        self._drawn = 0.0
        self._lock = threading.Lock()

    def add(self, count: int, *, sent: bool = True) -> None:
        with self._lock:
            self.done += count
            self.sent += count if sent else 0
            now = time.monotonic()
            if now - self._drawn >= 0.1 or self.done >= self.total:
                self._drawn = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        share = min(self.done / self.total, 1.0)
        filled = int(share * self.width)
        rate = self.sent / max(now - self.started, 1e-6) / 2**20
        bar = "#" * filled + " " * (self.width - filled)
        line = f"\r{share * 100:5.1f}% |{bar}| {self.done / 2**20:,.1f}/{self.total / 2**20:,.1f} MiB {rate:6.1f} MiB/s"
        self.stream.write(line)
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


# ---- the upload ---------------------------------------------------------------------------------


def state_path(state_dir: Path, file: Path) -> Path:
    """Where the media id of ``file`` is kept while it uploads: keyed by path, size and mtime."""
    stat = file.stat()
    fingerprint = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return state_dir / f"{hashlib.sha256(fingerprint.encode()).hexdigest()}.json"


def mime_type_for(file: Path) -> str:
    try:
        return EXTENSION_TYPES[file.suffix.lower()]
    except KeyError:
        raise UploadError(f"cannot tell the type of {file.name}; pass --mime-type") from None


@dataclass
class Upload:
    api: Api
    file: Path
    org_id: str
    title: str
    description: str | None = None
    mime_type: str | None = None
    parallel: int = 4
    state_dir: Path = Path("var/uploads")
    stop_after: int | None = None
    progress: Callable[[int], Progress] = Progress

    def run(self) -> str:
        """Upload (or resume) and complete; returns the media id."""
        size = self.file.stat().st_size
        state = state_path(self.state_dir, self.file)
        media = self._resume(state)
        stored: list[dict[str, Any]] = []  # a fresh upload holds no parts: no need to ask
        if media is None:
            media = self._create(size)
            state.parent.mkdir(parents=True, exist_ok=True)
            saved = {"media_id": media["id"], "api_url": self.api.base_url, "file": str(self.file)}
            state.write_text(json.dumps(saved))
        elif media["status"] != "uploading":  # completed by an earlier run that stopped before cleaning up
            state.unlink(missing_ok=True)
            return str(media["id"])
        else:
            stored = self.api.call("GET", f"/api/v1/media/{media['id']}/upload/parts").json()["parts"]
        media_id = str(media["id"])
        part_size, count = _part_layout(size)
        done = {p["part_number"] for p in stored if p["size_bytes"] == _part_bytes(size, part_size, p["part_number"])}
        todo = [n for n in range(1, count + 1) if n not in done]
        if done:  # say what a resumed run skips: the operator sees the earlier run's work is kept
            print(f"Resuming {media_id}: {len(done)} of {count} parts already stored.", file=sys.stderr)
        bar = self.progress(size)
        bar.add(sum(_part_bytes(size, part_size, n) for n in done), sent=False)
        try:
            self._send(media_id, todo, size, part_size, bar)
        finally:
            bar.finish()
        self.api.call("POST", f"/api/v1/media/{media_id}/upload-complete", {}, expect=(202,))
        state.unlink(missing_ok=True)
        return media_id

    def _resume(self, state: Path) -> dict[str, Any] | None:
        try:
            saved = json.loads(state.read_text())
        except (OSError, ValueError):
            return None
        if saved.get("api_url") != self.api.base_url:
            return None
        reply = self.api.call("GET", f"/api/v1/media/{saved['media_id']}", expect=(200, 404))
        if reply.status == 404:
            return None
        media: dict[str, Any] = reply.json()
        return None if media["status"] == "failed" else media

    def _create(self, size: int) -> dict[str, Any]:
        mime = self.mime_type or mime_type_for(self.file)
        body = {
            "title": self.title,
            "description": self.description,
            "media_type": mime.split("/", 1)[0],
            "mime_type": mime,
            "file_size_bytes": size,
            "upload_mode": "multipart",
        }
        created: dict[str, Any] = self.api.call("POST", f"/api/v1/orgs/{self.org_id}/media", body, expect=(201,)).json()
        upload = created["upload"]
        if (upload["part_size_bytes"], upload["part_count"]) != _part_layout(size):
            raise UploadError("the server's part layout is not the one this client computes")
        return created

    def _send(self, media_id: str, todo: list[int], size: int, part_size: int, bar: Progress) -> None:
        sent = 0
        lock = threading.Lock()

        def put(part: dict[str, Any]) -> None:
            nonlocal sent
            number = part["part_number"]
            length = _part_bytes(size, part_size, number)
            with lock:
                if self.stop_after is not None and sent >= self.stop_after:
                    return
                sent += 1
            body = FileRange(self.file, (number - 1) * part_size, length)
            headers = {"Content-Type": "application/octet-stream", **part["headers"]}
            for attempt in range(3):
                reply = self.api.http.request("PUT", part["url"], headers=headers, file=body)
                if reply.status == 200:
                    bar.add(length)
                    return
                if reply.status < 500 or attempt == 2:
                    raise UploadError(f"part {number} answered {reply.status} {reply.error()}")
                time.sleep(1 + attempt)

        with ThreadPoolExecutor(max_workers=max(1, self.parallel)) as pool:
            for start in range(0, len(todo), SIGN_BATCH):
                # URLs are signed batch by batch, so none expires while earlier batches upload.
                numbers = todo[start : start + SIGN_BATCH]
                signed = self.api.call("POST", f"/api/v1/media/{media_id}/upload/parts", {"part_numbers": numbers})
                list(pool.map(put, signed.json()["parts"]))
                if self.stop_after is not None and sent >= self.stop_after:
                    raise Interrupted(f"stopped after {sent} parts; run the command again to resume")


def _part_layout(size: int) -> tuple[int, int]:
    """Part size and count, by the API's own rule (api.md §6.1)."""
    return multipart.part_size_for(size), multipart.part_count_for(size)


def _part_bytes(size: int, part_size: int, number: int) -> int:
    return min(part_size, size - (number - 1) * part_size)
