"""The whole journey through real processes: gunicorn, a Celery worker, a media worker and beat on
the test Postgres, a private Redis, local storage and the SMTP sink — only HTTP in between.

register -> verify (link from the SMTP sink) -> create org -> invite a creator, who registers,
verifies and accepts (link from the SMTP sink) -> upload -> ingest -> publish -> checkout -> pay
(the local provider signs a real webhook event) -> stream every segment -> progress -> library ->
dashboard -> refund -> access gone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import pytest
import requests
from flask import Flask

from tests.e2e.harness import Stack, running_stack
from tests.media.conftest import Clips

pytestmark = pytest.mark.e2e

T = TypeVar("T")
PASSWORD = "Journey-Passw0rd"
TIMEOUT = 120.0  # generous: two cores shared with the rest of the suite


@pytest.fixture(scope="module")
def journey_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Clips(tmp_path_factory.mktemp("journey-clips")).video(640, 360, 6.0)


@pytest.fixture()
def stack(
    committed_db: Flask, database_url: str, storage_root: Path, smtp_server: Any, tmp_path: Path
) -> Iterator[Stack]:
    with running_stack(tmp_path, database_url, storage_root, smtp_port=smtp_server.port) as stack:
        stack.start_web()
        stack.start_worker("worker", queues="webhooks,email,playback,default", concurrency=2)
        stack.start_worker("media", queues="media", concurrency=1)
        stack.start_beat()
        yield stack


def eventually(probe: Callable[[], T | None], what: str, stack: Stack, timeout: float = TIMEOUT) -> T:
    """Poll ``probe`` until it returns something truthy; fail with the processes' logs."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"not reached within {timeout:.0f}s: {what} (last: {last!r})\n{stack.report()}")


class Api:
    """A JSON client on the stack's gunicorn; every call checks the expected status."""

    def __init__(self, http: requests.Session, base_url: str, token: str | None = None) -> None:
        self.http, self.base_url, self.token = http, base_url, token

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        url = path if path.startswith("http") else self.base_url + path
        response = self.http.request(method, url, headers=headers, timeout=30, allow_redirects=False, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text[:500]}"
        if response.headers.get("Content-Type", "").startswith("application/json") and response.content:
            return response.json()
        return response

    def as_user(self, token: str) -> Api:
        return Api(self.http, self.base_url, token)


def mail_to(smtp_server: Any, recipient: str, template: str) -> EmailMessage | None:
    for message in list(smtp_server.handler.messages):
        if message["To"] and recipient in str(message["To"]) and message["X-Codex-Template"] == template:
            return message  # type: ignore[no-any-return]
    return None


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def sign_up(api: Api, smtp_server: Any, stack: Stack, email: str, name: str, org_slug: str | None = None) -> Api:
    """register -> the verification email arrives through the worker and SMTP -> verify -> login."""
    user = api.call(
        "POST",
        "/api/v1/auth/register",
        201,
        json={"email": email, "password": PASSWORD, "name": name, "org_slug": org_slug},
    )
    assert user["email_verified"] is False
    message = eventually(
        lambda: mail_to(smtp_server, email, "email-verification"), f"verification mail to {email}", stack
    )
    match = re.search(r"[?&]token=([A-Za-z0-9_\-.~%]+)", text_of(message))
    assert match, text_of(message)
    verified = api.call("POST", "/api/v1/auth/verify-email", 200, json={"token": requests.utils.unquote(match[1])})
    assert verified["email_verified"] is True
    login = api.call("POST", "/api/v1/auth/login", 200, json={"email": email, "password": PASSWORD})
    return api.as_user(login["token"])


def playlist_uris(text: str, base: str) -> list[str]:
    return [urljoin(base, line.strip()) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def stream_everything(api: Api, content_id: str) -> tuple[int, int]:
    """stream -> master.m3u8 -> each rendition's index.m3u8 -> every segment. Returns (renditions, bytes)."""
    stream = api.call("GET", f"/api/v1/content/{content_id}/stream", 200)
    assert stream["preview"] is False and stream["renditions"]
    master = api.call("GET", stream["manifest_url"], 200)
    assert master.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    assert master.text.startswith("#EXTM3U")
    variants = playlist_uris(master.text, stream["manifest_url"])
    assert len(variants) == len(stream["renditions"]), master.text
    total = 0
    for variant in variants:
        index = api.call("GET", variant, 200)
        segments = playlist_uris(index.text, variant)
        assert segments, index.text
        for segment in segments:
            data = api.call("GET", segment, 200).content
            assert data[:1] == b"\x47", f"{segment} is not an MPEG-TS segment"  # TS sync byte
            total += len(data)
    return len(variants), total


def test_the_whole_journey(stack: Stack, smtp_server: Any, journey_clip: Path) -> None:
    with requests.Session() as http:
        anonymous = Api(http, stack.base_url)

        # A creator signs up, verifies the email through the real pipeline and opens an org.
        creator = sign_up(anonymous, smtp_server, stack, "olga@example.com", "Olga Owner")
        org = creator.call("POST", "/api/v1/orgs", 201, json={"name": "Olga's Kitchen", "slug": "olgas-kitchen"})
        assert org["my_role"] == "owner"

        # Staff join by invitation only: Olga invites Cleo, who signs up, verifies and accepts the emailed link.
        invitation = creator.call(
            "POST", f"/api/v1/orgs/{org['id']}/invitations", 201, json={"email": "cleo@example.com", "role": "creator"}
        )
        assert invitation["status"] == "pending"
        cleo = sign_up(anonymous, smtp_server, stack, "cleo@example.com", "Cleo Creator")
        invite_mail = eventually(
            lambda: mail_to(smtp_server, "cleo@example.com", "org-invitation"), "invitation mail to cleo", stack
        )
        match = re.search(r"/invitations/accept\?token=([A-Za-z0-9_\-.~%]+)", text_of(invite_mail))
        assert match, text_of(invite_mail)
        token = requests.utils.unquote(match[1])
        shown = anonymous.call("GET", f"/api/v1/invitations/{token}", 200)
        assert (shown["organization_slug"], shown["role"], shown["email_hint"]) == (
            "olgas-kitchen",
            "creator",
            "c***@example.com",
        )
        joined = cleo.call("POST", "/api/v1/invitations/accept", 200, json={"token": token})
        assert (joined["organization_id"], joined["role"]) == (org["id"], "creator")

        # Cleo uploads: create the media row, PUT the bytes to the signed URL, complete, wait for the ingest.
        size = journey_clip.stat().st_size
        media = cleo.call(
            "POST",
            f"/api/v1/orgs/{org['id']}/media",
            201,
            json={"title": "Knife skills", "media_type": "video", "mime_type": "video/mp4", "file_size_bytes": size},
        )
        upload = media["upload"]
        put = http.request(upload["method"], upload["url"], data=journey_clip.read_bytes(), headers=upload["headers"])
        assert put.status_code == 200, put.text
        assert cleo.call("POST", f"/api/v1/media/{media['id']}/upload-complete", 202)["status"] == "uploaded"
        ready = eventually(
            lambda: (m := cleo.call("GET", f"/api/v1/media/{media['id']}", 200))["status"] == "ready" and m,
            "media ready",
            stack,
        )
        assert ready["renditions"] and ready["duration_seconds"] >= 5

        # Content priced 19.99, published.
        content = cleo.call(
            "POST",
            f"/api/v1/orgs/{org['id']}/content",
            201,
            json={"title": "Knife Skills", "content_type": "video", "media_id": media["id"], "price_cents": 1999},
        )
        assert content["status"] == "draft" and content["visibility"] == "purchased_only"
        assert cleo.call("POST", f"/api/v1/content/{content['id']}/publish", 200)["status"] == "published"

        # A customer signs up from the org's page and buys it with the local provider's Pay button.
        customer = sign_up(anonymous, smtp_server, stack, "ana@example.com", "Ana Customer", org_slug="olgas-kitchen")
        denied = customer.call("GET", f"/api/v1/content/{content['id']}/stream", 403)
        assert denied["error"]["code"] == "ACCESS_DENIED"
        checkout = customer.call("POST", "/api/v1/checkout", 201, json={"content_id": content["id"]})
        assert checkout["checkout_url"].startswith(stack.base_url + "/payments/local/checkout/cs_local_")
        page = http.get(checkout["checkout_url"], timeout=30)
        assert page.status_code == 200 and ">Pay<" in page.text
        paid = http.post(
            checkout["checkout_url"] + "/pay",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": stack.base_url},
            allow_redirects=False,
            timeout=30,
        )
        assert paid.status_code == 303, paid.text
        assert checkout["session_id"] in paid.headers["Location"]
        status = eventually(
            lambda: (
                (s := customer.call("GET", f"/api/v1/checkout/sessions/{checkout['session_id']}", 200))["purchase"]
                and s
            ),
            "purchase recorded by the worker",
            stack,
        )
        assert status["status"] == "complete" and status["purchase"]["status"] == "completed"
        assert customer.call("GET", f"/api/v1/content/{content['id']}/access", 200)["reason"] == "purchased"
        receipt = eventually(lambda: mail_to(smtp_server, "ana@example.com", "purchase-receipt"), "receipt", stack)
        assert "19.99" in text_of(receipt)
        assert eventually(lambda: mail_to(smtp_server, "olga@example.com", "new-sale"), "new-sale mail", stack)

        # Stream every segment of every rendition.
        renditions, streamed = stream_everything(customer, content["id"])
        assert renditions == len(ready["renditions"]) and streamed > 10_000

        # Progress, then the library shows it.
        customer.call(
            "PUT",
            f"/api/v1/content/{content['id']}/progress",
            204,
            json={"position_seconds": 3.7, "duration_seconds": ready["duration_seconds"]},
        )
        progress = customer.call("GET", f"/api/v1/content/{content['id']}/progress", 200)
        assert progress["position_seconds"] == 3 and progress["completed"] is False
        library = customer.call("GET", "/api/v1/me/library", 200)
        [item] = library["items"]
        assert item["content"]["id"] == content["id"] and item["available"] is True
        assert item["access"]["reason"] == "purchased" and item["progress"]["position_seconds"] == 3

        # The owner's dashboard counts the sale.
        summary = creator.call("GET", f"/api/v1/orgs/{org['id']}/dashboard/summary", 200)
        assert summary["all_time"]["gross_cents"] == 1999 and summary["all_time"]["purchase_count"] == 1
        assert summary["customer_count"] == 1
        [sale] = summary["recent_purchases"]
        assert sale["customer_email"] == "ana@example.com" and sale["content_id"] == content["id"]

        # Refund: requested by the owner, submitted by the worker, completed by the refund event.
        refund = creator.call(
            "POST", f"/api/v1/orgs/{org['id']}/purchases/{sale['purchase_id']}/refund", 202, json={"reason": "test"}
        )
        assert refund["refund_status"] == "requested"
        gone = eventually(
            lambda: customer.call("GET", f"/api/v1/content/{content['id']}/access", 200)["has_access"] is False,
            "access revoked by the refund event",
            stack,
        )
        assert gone
        denied = customer.call("GET", f"/api/v1/content/{content['id']}/stream", 403)
        assert denied["error"]["code"] == "ACCESS_DENIED"
        purchases = customer.call("GET", "/api/v1/me/purchases", 200)["items"]
        assert [(p["status"], p["refunded_amount_cents"]) for p in purchases] == [("refunded", 1999)]
        assert eventually(lambda: mail_to(smtp_server, "ana@example.com", "refund-processed"), "refund mail", stack)
        after = creator.call("GET", f"/api/v1/orgs/{org['id']}/dashboard/summary", 200)["all_time"]
        assert (after["gross_cents"], after["refunded_cents"], after["net_cents"]) == (1999, 1999, 0)
