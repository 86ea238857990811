"""Upload bodies read from gunicorn's socket into the caller's buffer, not through its Python reader.

Why: gunicorn's body stream (``wsgi.input``) passes every byte through three ``BytesIO`` buffers
(its socket reader's, its length reader's slices, the body's own), about six copies in Python per
byte. For a multipart upload part (16 MiB or more) that is most of the web process's CPU, and on
two cores the upload's throughput is bound by it. ``SocketBody`` hands the bytes gunicorn already
holds (read past the headers) and then fills the caller's buffer straight from the socket with
``recv_into``: one copy, into the buffer ``pwrite`` writes from (app/storage/local.py ``_copy_at``).

What it relies on, which gunicorn does not promise (hence ``gunicorn>=27,<28`` in pyproject):

- ``wsgi.input`` is ``gunicorn.http.body.Body`` over a ``LengthReader`` (a Content-Length body)
  over a ``SocketUnreader`` whose socket is ``environ["gunicorn.socket"]``;
- ``Unreader.take_buffered()`` returns (and forgets) the read-ahead it holds;
- gunicorn drains whatever ``LengthReader.length`` says is left before it reuses a keep-alive
  connection, and closes a connection whose ``Body.failed`` is set. Once the body is read here,
  ``length`` is set to 0; a body cut short (client gone, stalled past the socket's timeout) sets
  ``failed``, so the connection is closed rather than read out of step.

Anything else (another server, a chunked body, a body already partly read, other types) gets
None, and the caller reads ``wsgi.input`` as before. tests/foundation/test_gunicorn_body.py checks
each assumption against the installed gunicorn and, through a real gunicorn, that a part read
this way is stored byte for byte and the next request on the same connection is parsed right.
"""

from __future__ import annotations

import socket
from typing import Any

from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader
from werkzeug.exceptions import ClientDisconnected


class BodyCutShort(ClientDisconnected):
    """The body ended (or stalled past the socket's timeout) before its Content-Length: werkzeug's
    ``ClientDisconnected`` (400), as werkzeug's own request stream raises it, so a route answers
    it as any body cut short."""


class SocketBody:
    """A Content-Length request body: ``readinto`` fills a buffer from gunicorn's read-ahead, then
    from the socket; 0 at the body's end. ``BodyCutShort`` when it ends early."""

    def __init__(self, body: Body, reader: LengthReader, sock: socket.socket, held: bytes) -> None:
        self._body = body
        self._reader = reader
        self._sock = sock
        self._held = memoryview(held)
        self._left = reader.length  # bytes of the body still to come (read-ahead included)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._left)
        filled = 0
        if self._held and want:
            filled = min(len(self._held), want)
            view[:filled] = self._held[:filled]
            self._held = self._held[filled:]
        try:
            while filled < want:  # (a full buffer: fewer writes for the caller)
                count = self._sock.recv_into(view[filled:want])
                if not count:
                    break  # the client closed the connection mid-body
                filled += count
        except OSError as exc:  # (socket.timeout included: nothing came for the socket's timeout)
            self._body.failed = True  # where the next request starts is unknown: gunicorn closes
            raise BodyCutShort() from exc
        if filled < want:
            self._body.failed = True
            raise BodyCutShort()
        self._left -= filled
        self._reader.length = self._left  # what gunicorn still drains before the next request
        return filled


def socket_body(environ: dict[str, Any]) -> SocketBody | None:
    """The request's body read from gunicorn's socket, or None when this request's is not one
    this module knows how to read (the caller then reads ``wsgi.input``)."""
    body: Any = environ.get("wsgi.input")
    sock = environ.get("gunicorn.socket")
    if type(body) is not Body or not isinstance(sock, socket.socket):
        return None
    reader = body.reader
    if type(reader) is not LengthReader or type(reader.unreader) is not SocketUnreader:
        return None
    if body.buf.tell() or reader.unreader.sock is not sock:  # (already read from: not ours to take)
        return None
    held = reader.unreader.take_buffered()
    if len(held) > reader.length:  # (the start of a pipelined next request: gunicorn's to parse)
        reader.unreader.unread(held[reader.length :])
        held = held[: reader.length]
    return SocketBody(body, reader, sock, held)
