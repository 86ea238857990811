"""Storage routes: signed upload/download for the local backend, public logos for both (api.md §6).

The token in the path is the credential (security.md §7); the request logger masks it
(``app.logging.mask_path``) and nothing here logs it. CORS ``*`` for ``/storage/*`` is applied by
``app.http``. Errors use the app's one error shape (``AppError`` subclasses).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from flask import Blueprint, Response, current_app, redirect, request
from sqlalchemy.orm import Session
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Response as BaseResponse

from app import db, errors
from app.http import body_limit, raw_body
from app.ratelimit import blueprint_limit
from app.security import tokens
from app.speed.gunicorn_body import socket_body
from app.storage import get_storage, keys
from app.storage.base import ObjectTooLarge, StorageError, UploadBusy, UploadNotFound
from app.storage.local import CHUNK, UPLOAD_PART_PURPOSE, LocalStorage, download_name

bp = Blueprint("storage", __name__, url_prefix="/storage")

RATE_LIMIT = "1200 per minute"  # security.md §3, per client IP, shared by every /storage route
PUBLIC_CACHE_CONTROL = "public, max-age=86400"
PUBLIC_MAX_AGE = 86400
# The presigned logo URL outlives the cached redirect (86 400 s) by an hour, so a browser that
# replays a cached 302 never lands on an expired signature.
PUBLIC_REDIRECT_TTL = PUBLIC_MAX_AGE + 3600
# Static ceiling checked from Content-Length by ``app.http._check_body`` before the view runs; the
# real limit is the token's ``n``, enforced in the view (header and stream).
UPLOAD_BODY_CEILING = 64 * 1024**3

_RANGE = re.compile(r"bytes\s*=\s*(\d{0,19})\s*-\s*(\d{0,19})\s*", re.IGNORECASE)


blueprint_limit(bp, RATE_LIMIT, key="ip", scope="storage")


# ---- helpers ----------------------------------------------------------------------------


def _local_storage() -> LocalStorage:
    """The local backend, or 404: the signed upload/download routes exist only for it."""
    storage = get_storage()
    if not isinstance(storage, LocalStorage):
        raise errors.NotFound()
    return storage


def _claims(purpose: str, token: str) -> dict[str, Any]:
    return tokens.verify(current_app.config["SECRET_KEY"], purpose, token)


def _claim_str(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise errors.InvalidSignedUrl()
    return value


UploadGuard = Callable[[Session, str, bool], None]
"""``guard(session, key, lock)``: raise unless the object at ``key`` may still be written."""

_upload_guard: UploadGuard | None = None


def guard_uploads(guard: UploadGuard) -> None:
    """Install the check every local upload passes (the media domain supplies it at start-up, so
    this adapter knows no table: ``create_app`` calls ``app.media.service.supply_upload_guard``)."""
    global _upload_guard
    _upload_guard = guard


def _require_uploading(key: str, *, lock: bool) -> None:
    if _upload_guard is None:
        raise RuntimeError("no upload guard installed (create_app installs media's)")
    _upload_guard(db.session, key, lock)


class _ServerBody:
    """The request body read straight from the server's ``wsgi.input``.

    Only for a server that ends that stream at the body's end itself (``wsgi.input_terminated``,
    as gunicorn does for Content-Length and chunked bodies alike). werkzeug's ``request.stream``
    would fill its caller's buffer with a copy of each block the server's stream returns
    (gunicorn's has no ``readinto``): one more pass over every byte, about an eighth of the
    server's CPU for an upload part. Failures as werkzeug's: a read error, or a body that ends
    before its Content-Length (the client went away), is ``ClientDisconnected``, never a short write.
    The caller bounds the size (``max_bytes``), as before.
    """

    def __init__(self, raw: IO[bytes], length: int | None) -> None:
        self.raw = raw
        self.length = length
        self.received = 0

    def read(self, size: int) -> bytes:
        try:
            data = self.raw.read(size)
        except (OSError, ValueError) as exc:
            raise ClientDisconnected() from exc
        if not data and self.length is not None and self.received < self.length:
            raise ClientDisconnected()
        self.received += len(data)
        return data


def _request_body() -> BinaryIO:
    """The upload's body: from gunicorn's socket where it can be (``app.speed.gunicorn_body``),
    else the server's own stream where the server bounds it, else werkzeug's."""
    environ = request.environ
    _bound_idle(environ, current_app.config["UPLOAD_BODY_IDLE_SECONDS"])
    if environ.get("wsgi.input_terminated"):
        direct = socket_body(environ)  # (a body cut short raises ClientDisconnected, as below)
        if direct is not None:
            return cast(BinaryIO, direct)
        return cast(BinaryIO, _ServerBody(environ["wsgi.input"], request.content_length))
    return cast(BinaryIO, request.stream)


def _bound_idle(environ: dict[str, Any], seconds: int) -> None:
    """Give up a body that stops arriving for ``seconds`` (0: never), as a proxy's body timeout would.

    gunicorn reads a request body from a blocking socket without a timeout, so a part whose client
    vanished without closing its connection (a laptop lid shut, a dropped Wi-Fi), or an attacker
    sending nothing on purpose, holds its server thread, and the part's lock, for as long as the
    connection stays half-open: a few such requests would stop a web process. With the socket's
    timeout set (gunicorn gives the application its socket as ``gunicorn.socket``), a read that
    waits ``seconds`` without a byte fails: the write stops, no part is recorded, the request gets
    400, and the connection is closed, since gunicorn cannot drain the rest of its body. gunicorn
    sets the socket blocking again before the connection's next request. Under another server
    (no such socket), its own settings, or the proxy's, apply (README, "Resumable uploads").
    """
    sock = environ.get("gunicorn.socket")
    if sock is None or not seconds:
        return
    with contextlib.suppress(OSError):  # (the connection is already gone: the read will say so)
        sock.settimeout(float(seconds))


def _open_local(storage: LocalStorage, key: str) -> tuple[IO[bytes], os.stat_result]:
    """Open the object for reading, or 404 NOT_FOUND (missing, not a file, or an invalid key).

    Size and ETag come from the opened file, so they describe the bytes sent even if an upload
    replaces the object meanwhile.
    """
    try:
        path: Path = storage.path_for(key)
    except StorageError:
        raise errors.NotFound() from None
    try:
        handle = path.open("rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise errors.NotFound() from None
    except OSError:
        raise errors.ServiceUnavailable("storage") from None
    return handle, os.fstat(handle.fileno())


class _FileRange:
    """WSGI body: ``length`` bytes of an open file from ``start``, in chunks.

    The WSGI server calls ``close()`` on the body whether or not it was iterated (client gone,
    error), which closes the file; a bare generator would only clean up once started.
    """

    def __init__(self, handle: IO[bytes], start: int, length: int) -> None:
        self.handle, self.start, self.length = handle, start, length

    def __iter__(self) -> Iterator[bytes]:
        try:
            self.handle.seek(self.start)
            remaining = self.length
            while remaining > 0:
                chunk = self.handle.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            self.handle.close()  # also when fully sent, for servers/clients that skip close()

    def close(self) -> None:
        self.handle.close()


def _file_response(handle: IO[bytes], start: int, length: int, status: int, content_type: str, size: int) -> Response:
    """``length`` bytes of ``handle`` (an object of ``size`` bytes) from ``start``.

    A body that runs to the end of the file (a whole object, or a range up to its end: every HLS
    segment a player fetches) goes out through the server's ``wsgi.file_wrapper`` (PEP 3333), from
    the handle's position: gunicorn then sends it with ``sendfile(2)``, from the page cache straight
    to the socket, where reading it into Python and writing it out again cost twice the bytes in
    copies. A range that stops short of the end is sent in chunks (a file wrapper may read to the
    end), as is everything under a server that offers no wrapper (werkzeug's own servers: there
    ``_FileRange`` also closes the file at its end, for clients that never call ``close``).
    """
    if request.method == "HEAD":
        # werkzeug sends no body for HEAD and never closes it: release the file now.
        handle.close()
        response = Response(status=status, mimetype=content_type)
    elif start + length == size and (wrapper := request.environ.get("wsgi.file_wrapper")) is not None:
        handle.seek(start)
        body = wrapper(handle, CHUNK)  # (the server closes it, and so the file, when done)
        response = Response(body, status=status, mimetype=content_type, direct_passthrough=True)
    else:
        body = _FileRange(handle, start, length)
        response = Response(body, status=status, mimetype=content_type, direct_passthrough=True)
    response.content_length = length
    return response


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range ``(start, end_inclusive)`` to serve, or None for the whole file.

    RFC 9110 §14: a missing, malformed or multi-range header is ignored (200 with everything);
    a syntactically valid single range that cannot be satisfied raises a 416.
    """
    if not header:
        return None
    if "," in header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        suffix = int(last)
        if suffix == 0:
            raise _unsatisfiable(size)
        if size == 0:
            return None
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid range-spec: ignore the header
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> errors.AppError:
    return errors.AppError(
        "The requested range cannot be satisfied.",
        status=416,
        code="NOT_FOUND",
        headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
    )


# ---- routes -----------------------------------------------------------------------------


@bp.put("/upload/<token>")
@raw_body
@body_limit(UPLOAD_BODY_CEILING)
def upload(token: str) -> Response:
    """Receive the bytes of a signed local upload (the local stand-in for an S3 presigned PUT).

    Only while the media item is ``uploading``: afterwards 409, and the stored file is unchanged.
    """
    storage = _local_storage()
    claims = _claims("upload", token)
    key = _claim_str(claims, "k")
    content_type = _claim_str(claims, "t")
    max_bytes = claims.get("n")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise errors.InvalidSignedUrl()
    try:
        storage.path_for(key)
    except StorageError:
        raise errors.NotFound() from None
    # Check order (README §3.4): size before Content-Type.
    length = request.content_length
    if length is not None and length > max_bytes:
        raise errors.PayloadTooLarge()
    if request.mimetype != content_type.lower():
        raise errors.UnsupportedMediaType("The Content-Type does not match the signed upload.")
    _require_uploading(key, lock=False)  # refuse before reading a body that cannot be kept
    db.session.rollback()  # no transaction (or pooled connection) held while the body streams in
    # Where werkzeug's stream is used (a server that does not end wsgi.input itself: see
    # ``_request_body``), bound it for chunked bodies (no Content-Length) too. One byte of slack: werkzeug
    # raises on any read once the maximum is reached, even at the end of a body of exactly n bytes;
    # put_stream counts the bytes and rejects the (n+1)th itself.
    request.max_content_length = max_bytes + 1
    try:
        storage.put_stream(
            key,
            _request_body(),
            content_type,
            max_bytes,
            # Checked again under a row lock just before the rename: upload-complete may have run meanwhile.
            before_replace=lambda: _require_uploading(key, lock=True),
        )
    except ObjectTooLarge:
        raise errors.PayloadTooLarge() from None
    except StorageError:
        raise errors.ServiceUnavailable("storage") from None
    finally:
        db.session.rollback()  # read-only: releases the row lock
    info = storage.head(key)
    response = Response(status=200)
    del response.headers["Content-Type"]
    if info is not None and info.etag:
        response.set_etag(info.etag)
    return response


def _claim_int(claims: dict[str, Any], name: str, minimum: int) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise errors.InvalidSignedUrl()
    return value


@bp.put("/upload-part/<token>")
@raw_body
@body_limit(UPLOAD_BODY_CEILING)
def upload_part(token: str) -> Response:
    """Receive one part of a signed local multipart upload (the local stand-in for S3 ``UploadPart``).

    Same protections as ``upload``: only while the media item is ``uploading`` (409 afterwards),
    at most the part's size (413), 404 once the multipart upload was completed or aborted, 409
    when an earlier request for the same part still holds it after ``PART_WAIT_SECONDS`` (10 s).
    Any ``Content-Type`` is accepted, as S3 accepts any for a part. Answers 200 with the part's ETag.
    """
    storage = _local_storage()
    claims = _claims(UPLOAD_PART_PURPOSE, token)
    key = _claim_str(claims, "k")
    upload_id = _claim_str(claims, "u")
    part_number = _claim_int(claims, "pn", 1)
    offset = _claim_int(claims, "o", 0)
    max_bytes = _claim_int(claims, "n", 0)
    try:
        storage.path_for(key)
    except StorageError:
        raise errors.NotFound() from None
    length = request.content_length
    if length is not None and length > max_bytes:
        raise errors.PayloadTooLarge()
    _require_uploading(key, lock=False)  # refuse before reading a body that cannot be kept
    db.session.rollback()  # no transaction held while the body streams in
    request.max_content_length = max_bytes + 1  # see ``upload``: write_part counts the bytes itself
    try:
        part = storage.write_part(key, upload_id, part_number, offset, _request_body(), max_bytes)
    except ObjectTooLarge:
        raise errors.PayloadTooLarge() from None
    except UploadNotFound:
        _require_uploading(key, lock=False)  # completed meanwhile: the same 409 as before the body
        raise errors.NotFound("The multipart upload does not exist (completed or aborted).") from None
    except UploadBusy:
        raise errors.Conflict(
            f"Part {part_number} is still being received by an earlier request; retry once it has finished,"
            " or start the upload afresh (DELETE …/upload)."
        ) from None
    except StorageError:
        raise errors.ServiceUnavailable("storage") from None
    finally:
        db.session.rollback()
    response = Response(status=200)
    del response.headers["Content-Type"]
    response.set_etag(part.etag)
    return response


@bp.get("/download/<token>/<filename>")
def download(token: str, filename: str) -> Response:
    """Serve a signed local object, whole or one byte range.

    ``filename`` is the key's last part (the URL ends in the object's real extension, which HLS
    players require of segment URLs); another name is a URL that was not signed: 403.
    """
    storage = _local_storage()
    claims = _claims("download", token)
    key = _claim_str(claims, "k")
    if filename != download_name(key):
        raise errors.InvalidSignedUrl()
    handle, stat = _open_local(storage, key)
    size, etag = stat.st_size, LocalStorage.etag_of(stat)
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if range_header and if_range and if_range.strip() != f'"{etag}"':
        range_header = None  # the object changed since the client's partial copy: send it whole
    try:
        selected = parse_range(range_header, size)
    except errors.AppError:
        handle.close()
        raise
    if selected is None:
        response = _file_response(handle, 0, size, 200, keys.content_type_for(key), size)
    else:
        start, end = selected
        response = _file_response(handle, start, end - start + 1, 206, keys.content_type_for(key), size)
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    remaining = max(0, int(claims["exp"]) - int(time.time()))
    response.headers["Cache-Control"] = f"private, max-age={remaining}"
    response.headers["Accept-Ranges"] = "bytes"
    response.set_etag(etag)
    return response


@bp.get("/public/<path:key>")
def public(key: str) -> BaseResponse:
    """Serve an organization logo (the only public objects), or redirect to it on S3."""
    if not keys.is_public_logo_key(key):
        raise errors.NotFound()
    storage = get_storage()
    content_type = keys.content_type_for(key)
    response: BaseResponse
    if isinstance(storage, LocalStorage):
        handle, stat = _open_local(storage, key)
        response = _file_response(handle, 0, stat.st_size, 200, content_type, stat.st_size)
        response.set_etag(LocalStorage.etag_of(stat))
    else:
        try:
            if storage.head(key) is None:
                raise errors.NotFound()
            url = storage.presign_download(
                key, PUBLIC_REDIRECT_TTL, content_type=content_type, cache_control=PUBLIC_CACHE_CONTROL
            )
        except StorageError:
            raise errors.ServiceUnavailable("storage") from None
        response = redirect(url, code=302)
    response.headers["Cache-Control"] = PUBLIC_CACHE_CONTROL
    return response
