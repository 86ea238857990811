"""Real players against a real server: the app behind werkzeug's HTTP server in a thread, a real
Celery worker thread ingesting real ffmpeg-made clips, local storage or moto's S3 server.

``players_site`` builds the app for one storage backend with ``PUBLIC_BASE_URL`` and
``FRONTEND_URL`` pointing at the two live servers (the API and a stand-in frontend that serves
tests/browser/), an owner, a customer and a ready video (854x480: renditions 480p and 360p) and a
ready audio item (128k and 64k), each published as content. Everything committed is truncated
after the test (``committed_db``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from tests.conftest import ROOT, free_port, running_worker
from tests.identity.helpers import auth, make_org, make_user, signed_in
from tests.media.conftest import Clips
from tests.media.test_tasks import committed, wait_for

BROWSER_DIR = ROOT / "tests" / "browser"
CLIP_SECONDS = 3.0
VIDEO_SIZE = (854, 480)  # two renditions (480p, 360p) at a small cost
PRICE_CENTS = 999


class LiveServer:
    """A WSGI app on 127.0.0.1 behind werkzeug's threaded server, in a daemon thread."""

    def __init__(self, wsgi_app: Any, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server: BaseWSGIServer = make_server("127.0.0.1", port, wsgi_app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"live-{port}", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# ---- the stand-in frontend -------------------------------------------------------------------------

_FRONTEND_FILES = {
    "/player.html": ("player.html", "text/html; charset=utf-8"),
    "/player.js": ("player.js", "text/javascript"),
    "/player.css": ("player.css", "text/css"),
    "/hls.js": ("node_modules/hls.js/dist/hls.min.js", "text/javascript"),
}
_FRONTEND_PAGE = b"<!doctype html><html><head><title>Codex frontend</title></head><body><h1>Frontend</h1></body></html>"


class _FrontendHandler(BaseHTTPRequestHandler):
    """tests/browser's files by fixed name; any other path is a plain page (the checkout success
    and cancel URLs land there)."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in _FRONTEND_FILES:
            name, content_type = _FRONTEND_FILES[path]
            body = (BROWSER_DIR / name).read_bytes()
        else:
            body, content_type = _FRONTEND_PAGE, "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet test output


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A page closed mid-request (the browser drops its connections): not a test failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Frontend:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = _QuietServer(("127.0.0.1", port), _FrontendHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"frontend-{port}", daemon=True)

    def __enter__(self) -> Frontend:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# ---- the site: app + worker + ready media ---------------------------------------------------------


class Api:
    """JSON over real HTTP; each call checks the status."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.base_url, self.headers = base_url, headers

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        url = path if path.startswith("http") else self.base_url + path
        response = requests.request(method, url, headers=self.headers, timeout=30, allow_redirects=False, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json() if response.content else None


@dataclass
class Site:
    app: Flask
    server: LiveServer
    frontend: Frontend
    backend: str
    owner: Api
    customer: Api
    org_id: str
    video: dict[str, Any]  # the ready Media
    audio: dict[str, Any]
    video_content_id: str  # published, priced PRICE_CENTS
    audio_content_id: str

    @property
    def base_url(self) -> str:
        return self.server.url


def upload(site_api: Api, org_id: str, clip: Path, mime: str) -> dict[str, Any]:
    """POST media -> PUT the bytes to the URL it returned (the app's or S3's) -> upload-complete."""
    media_type = mime.split("/")[0]
    data = clip.read_bytes()
    body = {"title": f"Player {media_type}", "media_type": media_type, "mime_type": mime, "file_size_bytes": len(data)}
    media = site_api.call("POST", f"/api/v1/orgs/{org_id}/media", 201, json=body)
    target = media["upload"]
    put = requests.request(target["method"], target["url"], data=data, headers=target["headers"], timeout=30)
    assert put.status_code == 200, put.text
    site_api.call("POST", f"/api/v1/media/{media['id']}/upload-complete", 202)
    return dict(media)


def publish(site_api: Api, org_id: str, media: dict[str, Any], price_cents: int | None) -> str:
    body = {
        "title": f"Player {media['media_type']}",
        "content_type": media["media_type"],
        "media_id": media["id"],
        "price_cents": price_cents,
    }
    content = site_api.call("POST", f"/api/v1/orgs/{org_id}/content", 201, json=body)
    site_api.call("POST", f"/api/v1/content/{content['id']}/publish", 200)
    return str(content["id"])


@pytest.fixture(scope="session")
def player_clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    clips = Clips(tmp_path_factory.mktemp("player-clips"))
    return clips.video(*VIDEO_SIZE, seconds=CLIP_SECONDS), clips.tone(seconds=CLIP_SECONDS)


@pytest.fixture()
def make_site(committed_db: Flask, app_factory: Any, player_clips: tuple[Path, Path]) -> Iterator[Callable[..., Site]]:
    """``make_site(backend)`` -> a running Site; servers and worker stop after the test."""
    running = contextlib.ExitStack()

    def make(backend: str = "local", s3_endpoint: str | None = None) -> Site:
        api_port, frontend_port = free_port(), free_port()
        frontend = f"http://127.0.0.1:{frontend_port}"
        overrides: dict[str, Any] = {
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
            "FRONTEND_URL": frontend,
            "CORS_ORIGINS": [frontend],
            "PAYMENT_PROVIDER": "local",
        }
        if backend == "s3":
            assert s3_endpoint is not None
            overrides |= {
                "STORAGE_BACKEND": "s3",
                "S3_ENDPOINT_URL": s3_endpoint,
                "S3_BUCKET": f"codex-players-{uuid.uuid4().hex[:12]}",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            }
        flask_app: Flask = app_factory(**overrides)
        if backend == "s3":
            flask_app.extensions["storage"].ensure_bucket()
        server = running.enter_context(LiveServer(flask_app, api_port))
        front = running.enter_context(Frontend(frontend_port))
        running.enter_context(running_worker(flask_app))

        def people() -> tuple[str, str, str]:
            now = datetime.now(UTC)
            owner = make_user(email_verified_at=now)
            org = make_org(owner)
            customer = make_user(email_verified_at=now)
            return str(org.id), signed_in(owner), signed_in(customer)

        org_id, owner_token, customer_token = committed(flask_app, people)
        owner = Api(server.url, auth(owner_token))
        customer = Api(server.url, auth(customer_token))
        video_clip, audio_clip = player_clips
        video = upload(owner, org_id, video_clip, "video/mp4")
        audio = upload(owner, org_id, audio_clip, "audio/mpeg")
        for media in (video, audio):
            wait_for(flask_app, uuid.UUID(media["id"]), "ready")
        video = owner.call("GET", f"/api/v1/media/{video['id']}", 200)
        audio = owner.call("GET", f"/api/v1/media/{audio['id']}", 200)
        return Site(
            app=flask_app,
            server=server,
            frontend=front,
            backend=backend,
            owner=owner,
            customer=customer,
            org_id=org_id,
            video=video,
            audio=audio,
            video_content_id=publish(owner, org_id, video, PRICE_CENTS),
            audio_content_id=publish(owner, org_id, audio, None),
        )

    with running:
        yield make
