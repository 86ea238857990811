"""``flask codex upload`` killed mid-upload and run again, through real processes (api.md §6.1).

The CLI runs as a subprocess against gunicorn (local storage) or the app on moto's S3 server. Its
traffic goes through ``SlowLink``, a TCP proxy in this process that passes the client's bytes at a
bounded rate (a slow uplink, so parts are really in flight when the CLI is killed) and counts them.
The first run is SIGKILLed once storage lists a part (no stop flag: the process just dies, with
parts half sent); the same command run again resumes from its state file and the part list, sends
only the parts that are missing (the proxy's byte count and the CLI's own resume line say so),
completes, and prints the media id; the stored original is byte-identical to the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import db
from app.media.models import MediaItem
from app.storage.base import Storage
from tests.conftest import ROOT
from tests.e2e.harness import Stack, running_stack, wait_until
from tests.media.test_multipart_e2e import Client, original_sha, owner_token, s3_stack, sha256

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
SIZE = 40 * MIB  # three parts (16 + 16 + 8 MiB): the minimum part size is 16 MiB
PART = 16 * MIB
RATE = 8 * MIB  # bytes per second per connection, client to server: a part takes ~2 s
BLOCK = 64 * 1024


class SlowLink:
    """A TCP proxy to ``upstream`` that passes client-to-server bytes at ``RATE`` per connection
    and counts them (``sent``); server-to-client bytes pass freely. The upstream may be set after
    the proxy starts (the stack's port is known only then)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream: tuple[str, int] | None = None
        self.sent = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            assert self.upstream is not None
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, slow: bool) -> None:
        try:
            while data := source.recv(BLOCK):
                if slow:
                    with self._lock:
                        self.sent += len(data)
                    time.sleep(len(data) / RATE)
                target.sendall(data)
        except OSError:
            pass
        finally:  # one side gone (a killed client): end both, so the server sees the body cut short
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)  # close() alone would not wake the other pipe's recv
                end.close()


@pytest.fixture()
def link() -> Iterator[SlowLink]:
    proxy = SlowLink()
    yield proxy
    proxy.close()


@pytest.fixture()
def wav(tmp_path: Path) -> Path:
    """40 MiB: a WAV header (the magic check upload-complete makes), then random bytes."""
    path = tmp_path / "lesson.wav"
    with path.open("wb") as out:
        out.write(b"RIFF" + (SIZE - 8).to_bytes(4, "little") + b"WAVEfmt ")
        out.write(os.urandom(SIZE - 16))
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "app", "codex", "upload", *args]


def killed_then_resumed(
    stack: Stack, app: Flask, storage: Storage, api_url: str, link: SlowLink, wav: Path, tmp_path: Path
) -> None:
    """``link`` carries the part PUTs (and the API calls too when ``api_url`` is its URL)."""
    org_id, token = owner_token(app)
    state_dir = tmp_path / "state"
    args = [str(wav), "--org", org_id, "--api-url", api_url, "--token", token, "--state-dir", str(state_dir)]
    env = {**stack.env, "PYTHONPATH": str(ROOT)}
    client = Client(stack.base_url, token)  # straight to the app: not counted by the link

    # Run 1: killed once storage holds a part, with the others still in flight.
    log = tmp_path / "first-run.log"
    with log.open("wb") as output:
        first = subprocess.Popen(cli(*args, "--parallel", "2"), cwd=ROOT, env=env, stderr=output)
    try:
        wait_until(lambda: any(state_dir.glob("*.json")), 60, "the state file", poll=0.02)
        state = next(state_dir.glob("*.json"))
        media_id = json.loads(state.read_text())["media_id"]
        wait_until(lambda: bool(client.stored(media_id)), 60, "a stored part", poll=0.02)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait(30)
    assert first.returncode == -signal.SIGKILL, log.read_text()
    # A part whose body was all sent may still be stored after the kill: wait until the list is still.
    stored = client.stored(media_id)
    while True:
        time.sleep(0.5)
        again = client.stored(media_id)
        if again == stored:
            break
        stored = again
    kept = {n for n, (size, _) in stored.items() if size == min(PART, SIZE - (n - 1) * PART)}
    assert kept and len(kept) < 3, stored  # killed while parts were in flight
    assert set(stored) == kept, stored  # a part cut short by the kill is not listed
    assert client.call("GET", f"/api/v1/media/{media_id}", 200)["status"] == "uploading"
    assert state.exists()

    # Run 2: the same command resumes, sends only the missing parts, completes.
    link.sent = 0
    second = subprocess.run(cli(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == media_id and not list(state_dir.iterdir())
    assert f"Resuming {media_id}: {len(kept)} of 3 parts already stored." in second.stderr, second.stderr
    missing = sum(min(PART, SIZE - (n - 1) * PART) for n in range(1, 4) if n not in kept)
    assert missing <= link.sent < missing + MIB, (missing, link.sent)  # the stored parts were not sent again

    media = client.call("GET", f"/api/v1/media/{media_id}", 200)
    assert (media["status"], media["file_size_bytes"], media["title"]) == ("uploaded", SIZE, "lesson")
    with app.app_context():
        row = db.session.get(MediaItem, uuid.UUID(media_id))
        assert row is not None and row.multipart_upload_id is None and row.upload_etag
        key = row.original_key
    assert original_sha(storage, key, tmp_path) == sha256(wav)


def test_cli_killed_mid_upload_resumes_local(
    committed_db: Flask, database_url: str, storage_root: Path, tmp_path: Path, link: SlowLink, wav: Path
) -> None:
    with running_stack(tmp_path, database_url, storage_root, PUBLIC_BASE_URL=link.url) as stack:
        link.upstream = ("127.0.0.1", stack.web_port)  # part URLs name the link too (PUBLIC_BASE_URL)
        stack.start_web(workers=2, threads=4)
        storage = committed_db.extensions["storage"]
        killed_then_resumed(stack, committed_db, storage, link.url, link, wav, tmp_path)


def test_cli_killed_mid_upload_resumes_s3(
    committed_db: Flask,
    app_factory: Any,
    s3_server: str,
    database_url: str,
    storage_root: Path,
    tmp_path: Path,
    link: SlowLink,
    wav: Path,
) -> None:
    link.upstream = ("127.0.0.1", int(s3_server.rsplit(":", 1)[1]))
    # The app reaches moto directly; the part URLs it signs name the link (the public endpoint).
    stacked = s3_stack(app_factory, s3_server, database_url, storage_root, tmp_path, S3_PUBLIC_ENDPOINT_URL=link.url)
    with stacked as (stack, s3_app, storage):
        killed_then_resumed(stack, s3_app, storage, stack.base_url, link, wav, tmp_path)
