"""The CLI's part bodies (``app.upload_client``): the block-by-block path used over TLS.

Plain HTTP (``socket.sendfile``) is what the real-process tests in ``test_multipart_e2e.py`` run.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from app.upload_client import SEND_BLOCK, _send_blocks


def _receive_all(sock: socket.socket, into: bytearray) -> None:
    while chunk := sock.recv(1 << 16):
        into += chunk


def _send(path: Path, offset: int, length: int) -> tuple[int, bytes]:
    sender, receiver = socket.socketpair()
    received = bytearray()
    reader = threading.Thread(target=_receive_all, args=(receiver, received))
    reader.start()
    try:
        with path.open("rb", buffering=0) as handle:
            sent = _send_blocks(sender, handle, offset, length)
    finally:
        sender.close()
        reader.join(timeout=30)
        receiver.close()
    return sent, bytes(received)


def test_a_range_goes_in_blocks_and_whole(tmp_path: Path) -> None:
    data = os.urandom(2 * SEND_BLOCK + 12345)
    path = tmp_path / "part.bin"
    path.write_bytes(data)
    offset, length = 1000, 2 * SEND_BLOCK + 7  # more than one block, from inside the file
    assert _send(path, offset, length) == (length, data[offset : offset + length])


def test_a_file_that_shrank_sends_what_is_left(tmp_path: Path) -> None:
    path = tmp_path / "part.bin"
    path.write_bytes(b"x" * 100)
    assert _send(path, 60, 100) == (40, b"x" * 40)  # the caller sees 40 != 100 and fails the part
