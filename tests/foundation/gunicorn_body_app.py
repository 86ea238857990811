"""A WSGI app for tests/foundation/test_gunicorn_body.py, served by a real gunicorn: ``PUT /read``
reads its body with ``app.speed.gunicorn_body`` (or ``wsgi.input`` when that declines) into a
small buffer, and answers how it read it, the byte count and the SHA-256; ``GET /ping`` answers
``pong``. A body cut short answers 400 ``cut``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from app.speed.gunicorn_body import BodyCutShort, socket_body


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/ping":
        return _answer(start_response, "200 OK", b"pong")
    direct = socket_body(environ)
    digest, count = hashlib.sha256(), 0
    buffer = bytearray(64 * 1024)  # (smaller than the bodies: many reads, across the read-ahead)
    try:
        if direct is not None:
            while n := direct.readinto(buffer):
                digest.update(buffer[:n])
                count += n
        else:
            while chunk := environ["wsgi.input"].read(len(buffer)):
                digest.update(chunk)
                count += len(chunk)
    except BodyCutShort:
        return _answer(start_response, "400 Bad Request", b"cut")
    how = "socket" if direct is not None else "wsgi.input"
    return _answer(start_response, "200 OK", f"{how} {count} {digest.hexdigest()}".encode())


def _answer(start_response: Callable[..., Any], status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
