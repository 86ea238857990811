"""Local storage downloads through a real gunicorn (the Procfile's server): a body that runs to the
end of the object goes out through gunicorn's ``wsgi.file_wrapper`` (``sendfile``), a range that
stops short in chunks; every answer carries exactly its bytes, and a keep-alive connection stays in
step across them (app/storage/routes.py ``_file_response``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import pytest
from flask import Flask

from tests.e2e.harness import running_stack

pytestmark = pytest.mark.e2e


def read_answer(reader: BinaryIO, *, body: bool = True) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response off a socket file: status, headers (lower-case names), body (none
    for an answer to HEAD: ``body=False``)."""
    status = int(reader.readline().split()[1])
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0")) if body else 0
    return status, headers, reader.read(length)


def test_whole_objects_and_ranges_arrive_byte_for_byte(
    committed_db: Flask, database_url: str, storage_root: Path, tmp_path: Path
) -> None:
    storage = committed_db.extensions["storage"]
    key = f"orgs/{os.urandom(4).hex()}/media/m/hls/720p/seg_00001.ts"
    data = os.urandom(3 * 1024 * 1024 + 11)  # (more than gunicorn's and the chunked path's blocks)
    path = storage.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with running_stack(tmp_path, database_url, storage_root) as stack:
        stack.start_web(workers=1, threads=2)
        with committed_db.app_context():
            url = urlsplit(storage.presign_download(key, 600))
        target = url.path
        asked = [
            ("", 200, data),
            ("Range: bytes=1000-\r\n", 206, data[1000:]),  # to the end: the file wrapper, from an offset
            ("Range: bytes=10-99\r\n", 206, data[10:100]),  # short of the end: chunks
            ("Range: bytes=-5\r\n", 206, data[-5:]),
            ("", 200, data),
        ]
        port = int(stack.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            reader = sock.makefile("rb")
            for extra, status, expected in asked:  # one keep-alive connection for all of them
                sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
                got_status, headers, body = read_answer(reader)
                assert (got_status, len(body)) == (status, len(expected)), (extra, headers)
                assert body == expected, extra
            sock.sendall(f"HEAD {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, headers, _ = read_answer(reader, body=False)
            assert status == 200 and headers["content-length"] == str(len(data))
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nRange: bytes=5-\r\n\r\n".encode())
            assert read_answer(reader)[2] == data[5:]  # no body bytes were left behind by the HEAD
