"""Upload bodies read from gunicorn's socket (app/speed/gunicorn_body.py), against the installed
gunicorn: what the module relies on, then a real gunicorn serving tests/foundation/gunicorn_body_app.py.

If gunicorn changes its body reader, these fail before the upload route reads bodies wrongly: raise
the version bound in pyproject.toml only once they pass."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gunicorn
import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader, Unreader

from tests.conftest import ROOT, free_port

MIB = 1024 * 1024


def test_gunicorn_is_the_version_range_the_module_was_written_for() -> None:
    assert gunicorn.version_info[:1] == (27,), "app/speed/gunicorn_body.py was checked against gunicorn 27"


def test_the_reader_keeps_its_read_ahead_where_the_module_takes_it() -> None:
    left, right = socket.socketpair()
    try:
        unreader = SocketUnreader(left)
        reader = LengthReader(unreader, 10)
        body = Body(reader)
        assert (body.reader, reader.unreader, unreader.sock, reader.length) == (reader, unreader, left, 10)
        assert body.buf.tell() == 0 and body.failed is False
        unreader.unread(b"0123456789NEXT")  # read past the headers: the body and a pipelined request
        assert unreader.take_buffered() == b"0123456789NEXT"
        assert unreader.take_buffered() == b""  # taken: held no more
        unreader.unread(b"NEXT")
        assert unreader.read(4) == b"NEXT"  # put back, read first
        right.sendall(b"abc")
        reader.length = 3  # what the module sets: gunicorn reads no more than this for the body
        assert body.read(1024) == b"abc" and body.read(1024) == b""
        assert isinstance(unreader, Unreader)
    finally:
        left.close()
        right.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn-body") / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "tests.foundation.gunicorn_body_app:app", "--workers", "1",
               "--threads", "2", "--bind", f"127.0.0.1:{port}", "--timeout", "30"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(Path(log).read_text()) from None
                time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def put(body: bytes, path: str = "/read") -> bytes:
    return f"PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` responses read off ``sock``: (status, body) each."""
    reader = sock.makefile("rb")
    found = []
    for _ in range(count):
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        found.append((status, reader.read(length)))
    return found


def expected(body: bytes, how: str = "socket") -> tuple[int, bytes]:
    return 200, f"{how} {len(body)} {hashlib.sha256(body).hexdigest()}".encode()


def test_bodies_read_from_the_socket_and_the_requests_pipelined_behind_them(server: tuple[str, int]) -> None:
    """Several bodies on one keep-alive connection, each followed at once by the next request
    (gunicorn reads the next one's start with the body's end): every body arrives byte for byte
    and every request after it is parsed as sent."""
    small = os.urandom(1000)  # all of it in gunicorn's read-ahead
    big = os.urandom(3 * MIB + 7)  # mostly from the socket
    with socket.create_connection(server, timeout=30) as sock:
        sock.sendall(put(small) + put(big) + b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n" + put(b""))
        got = answers(sock, 4)
        assert got[:3] == [expected(small), expected(big), (200, b"pong")]
        assert got[3] == expected(b"", "socket")
        sock.sendall(put(small))  # the connection is still in step
        assert answers(sock, 1) == [expected(small)]


def test_a_chunked_body_is_left_to_wsgi_input(server: tuple[str, int]) -> None:
    body = os.urandom(5000)
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    head = b"PUT /read HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(server, timeout=30) as sock:
        sock.sendall(head + chunked + b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
        assert answers(sock, 2) == [expected(body, "wsgi.input"), (200, b"pong")]


def test_a_body_cut_short_closes_the_connection(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=30) as sock:
        sock.sendall(b"PUT /read HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
        sock.shutdown(socket.SHUT_WR)  # the client goes away mid-body
        received = b""
        while chunk := sock.recv(65536):  # until gunicorn closes the connection
            received += chunk
        assert received.startswith(b"HTTP/1.1 400") and received.endswith(b"cut")
    with socket.create_connection(server, timeout=30) as sock:  # and the server serves on
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
        assert answers(sock, 1) == [(200, b"pong")]


def test_other_servers_bodies_are_not_taken() -> None:
    from app.speed.gunicorn_body import socket_body

    assert socket_body({"wsgi.input": io.BytesIO(b"x"), "CONTENT_LENGTH": "1"}) is None
    left, right = socket.socketpair()
    try:
        body = Body(LengthReader(SocketUnreader(left), 4))
        body.buf.write(b"ab")  # already read from by someone: not ours to take
        assert socket_body({"wsgi.input": body, "gunicorn.socket": left}) is None
        fresh = Body(LengthReader(SocketUnreader(left), 4))
        assert socket_body({"wsgi.input": fresh, "gunicorn.socket": right}) is None  # another socket
        assert socket_body({"wsgi.input": fresh, "gunicorn.socket": left}) is not None
    finally:
        left.close()
        right.close()
