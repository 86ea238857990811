"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) as a customer would use it:
buy on the local checkout page, play the stream to its end with hls.js and with a plain
``<video src>`` from a page on the ``FRONTEND_URL`` origin, and read the API docs with the network
closed to everything but the app.

Screenshots go to ``$OUT`` if set, else var/screenshots/; their paths are printed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from playwright.sync_api import sync_playwright

from tests.conftest import ROOT, free_port
from tests.players.conftest import CLIP_SECONDS, LiveServer, Site

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLAY_TIMEOUT_MS = 30_000


def screenshot_dir() -> Path:
    folder = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "var" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shout(request: pytest.FixtureRequest, text: str) -> None:
    """Print past pytest's capture (the screenshot paths are for people)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(text)
    else:
        print(text)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/ensure-browser.sh installs it (make test runs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page with every console error, page error and failed request recorded."""

    page: Any
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, context: Any) -> Watched:
        watched = cls(context.new_page())
        watched.page.on("console", lambda m: watched.errors.append(f"console: {m.text}") if m.type == "error" else None)
        watched.page.on("pageerror", lambda e: watched.errors.append(f"pageerror: {e}"))
        watched.page.on("requestfailed", lambda r: watched.errors.append(f"request failed: {r.url} {r.failure}"))
        watched.page.on(
            "response", lambda r: watched.errors.append(f"{r.status}: {r.url}") if r.status >= 400 else None
        )
        return watched


@pytest.fixture()
def context(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1000, "height": 720})
    try:
        yield ctx
    finally:
        ctx.close()


def play(context: Any, site: Site, manifest_url: str, mode: str, shot: Path | None = None) -> dict[str, Any]:
    """Open the test player on the frontend origin and wait for ``ended`` (or an error)."""
    watched = Watched.open(context)
    page = watched.page
    page.goto(f"{site.frontend.url}/player.html?mode={mode}&src={quote(manifest_url, safe='')}")
    if shot is not None:
        page.wait_for_function(
            "window.player.error || document.getElementById('video').currentTime > 1", timeout=PLAY_TIMEOUT_MS
        )
        page.screenshot(path=str(shot))
    page.wait_for_function("window.player.ended || window.player.error", timeout=PLAY_TIMEOUT_MS)
    state: dict[str, Any] = page.evaluate(
        "({...window.player, currentTime: document.getElementById('video').currentTime,"
        " duration: document.getElementById('video').duration,"
        " frames: document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames})"
    )
    state["page_errors"] = watched.errors
    page.close()
    return state


def test_buy_on_the_checkout_page_then_play_with_hls_js_and_natively(
    make_site: Callable[..., Site], context: Any, request: pytest.FixtureRequest
) -> None:
    site = make_site("local")
    content_id = site.video_content_id
    denied = site.customer.call("GET", f"/api/v1/content/{content_id}/access", 200)
    assert denied["has_access"] is False

    # Checkout: the local provider's page, its Pay button, the redirect to the frontend's success URL.
    checkout = site.customer.call("POST", "/api/v1/checkout", 201, json={"content_id": content_id})
    assert checkout["checkout_url"].startswith(f"{site.base_url}/payments/local/checkout/")
    buyer = Watched.open(context)
    buyer.page.goto(checkout["checkout_url"])
    buyer.page.click("#pay")
    buyer.page.wait_for_url(f"{site.frontend.url}/**", timeout=PLAY_TIMEOUT_MS)
    assert checkout["session_id"] in buyer.page.url
    assert buyer.errors == []
    buyer.page.close()

    # The worker processes the provider's event: access is granted.
    deadline = time.monotonic() + 60
    access = denied
    while not access["has_access"] and time.monotonic() < deadline:
        time.sleep(0.2)
        access = site.customer.call("GET", f"/api/v1/content/{content_id}/access", 200)
    assert (access["has_access"], access["reason"]) == (True, "purchased")

    stream = site.customer.call("GET", f"/api/v1/content/{content_id}/stream", 200)
    shot = screenshot_dir() / "player-hlsjs-mid-playback.png"
    hlsjs = play(context, site, stream["manifest_url"], "hlsjs", shot)
    shout(request, f"screenshot: {shot}")
    assert hlsjs["error"] is None and hlsjs["page_errors"] == [], hlsjs
    assert hlsjs["ended"] is True and abs(hlsjs["currentTime"] - CLIP_SECONDS) <= 0.5, hlsjs
    assert hlsjs["frames"] >= CLIP_SECONDS * 25 * 0.8, hlsjs  # 25 fps, decoded (not just buffered)
    assert any(e.startswith("manifest: 2 level(s)") for e in hlsjs["events"]), hlsjs["events"]

    native = play(context, site, stream["manifest_url"], "native")
    shout(request, f"chromium native HLS: canPlayType={native['canPlayType']!r} events={native['events']}")
    assert native["error"] is None and native["page_errors"] == [], native
    assert native["ended"] is True and abs(native["currentTime"] - CLIP_SECONDS) <= 0.5, native
    assert native["frames"] >= CLIP_SECONDS * 25 * 0.8, native


def test_api_docs_render_offline(app: Flask, context: Any, request: pytest.FixtureRequest) -> None:
    with LiveServer(app, free_port()) as server:
        origin = server.url
        outside: list[str] = []

        def only_the_app(route: Any) -> None:
            url = route.request.url
            if url.startswith(f"{origin}/"):
                route.continue_()
            else:
                outside.append(url)
                route.abort("internetdisconnected")

        context.route("**/*", only_the_app)
        watched = Watched.open(context)
        page = watched.page
        response = page.goto(f"{origin}/api/v1/docs")
        assert response is not None and response.status == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "http" not in csp and "unsafe" not in csp
        operation = page.locator(".opblock-get .opblock-summary-path[data-path='/api/v1/auth/me']")
        operation.wait_for(timeout=PLAY_TIMEOUT_MS)
        assert page.locator(".opblock").count() > 50
        shot = screenshot_dir() / "api-docs.png"
        page.screenshot(path=str(shot))
        shout(request, f"screenshot: {shot}")
        assert outside == [] and watched.errors == [], (outside, watched.errors)
