"""Redaction of secrets, tokens and emails in logs (security.md §11)."""

from __future__ import annotations

import json
from typing import Any

from app.logging import mask_email, mask_path, redact


def test_secret_keys_are_redacted() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "password": "p",
            "api_key": "k",
            "Authorization": "Bearer t",
            "session_token": "abc",
            "nested": {"card": "4242"},
            "count": 3,
        },
    )
    assert event["password"] == "[REDACTED]"
    assert event["api_key"] == "[REDACTED]"
    assert event["Authorization"] == "[REDACTED]"
    assert event["session_token"] == "[REDACTED]"
    assert event["nested"] == {"card": "[REDACTED]"}
    assert event["count"] == 3


def test_secret_values_are_scrubbed_anywhere() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "call failed for ana@example.com",
            "error": "auth sk_live_abc123 and whsec_xyz and Bearer abc.def",
            "url": "postgresql://user:pw@db:5432/codex",
        },
    )
    text = json.dumps(event)
    for secret in ("sk_live_abc123", "whsec_xyz", "abc.def", "user:pw", "ana@example.com"):
        assert secret not in text
    assert "a***@example.com" in event["event"]


def test_email_and_path_masks() -> None:
    assert mask_email("bob.smith@example.org") == "b***@example.org"
    assert mask_path("/api/v1/stream/eyJhbGc.sig/master.m3u8") == "/api/v1/stream/[token]/master.m3u8"
    assert mask_path("/storage/upload/abc.def") == "/storage/upload/[token]"
    assert mask_path("/api/v1/content/1") == "/api/v1/content/1"


def test_request_log_line_is_json_and_masks_token_paths(app_factory: Any) -> None:
    import io
    import logging

    verbose = app_factory(LOG_LEVEL="INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    original = handler.setStream(buffer)
    try:
        verbose.test_client().get(
            "/storage/download/secret-token-value.sig/seg_00001.ts", headers={"X-Request-ID": "rid-1"}
        )
    finally:
        handler.setStream(original)
        logging.getLogger().setLevel(logging.WARNING)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    request_lines = [line for line in lines if line["event"] == "request"]
    assert len(request_lines) == 1
    line = request_lines[0]
    assert line["path"] == "/storage/download/[token]/seg_00001.ts"
    assert line["request_id"] == "rid-1"
    assert {"method", "status", "duration_ms", "ip", "timestamp", "level"} <= set(line)
    assert "secret-token-value" not in buffer.getvalue()
