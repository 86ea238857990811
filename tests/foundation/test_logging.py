"""Redaction of secrets, tokens and emails in logs (security.md §11)."""

from __future__ import annotations

import json
from typing import Any

import pytest

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


REQUEST_LINE_FIELDS = {
    "method", "path", "status", "duration_ms", "user_id", "ip", "event", "request_id", "level", "logger", "timestamp",
}  # fmt: skip


def _request_lines(flask_app: Any, call: Any) -> tuple[list[dict[str, Any]], str]:
    """Run ``call(client)`` on ``flask_app`` with the root handler writing to a buffer; the
    request log lines it wrote (parsed) and everything written."""
    import io
    import logging

    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    original = handler.setStream(buffer)
    try:
        call(flask_app.test_client())
    finally:
        handler.setStream(original)
        logging.getLogger().setLevel(logging.WARNING)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == "request"], buffer.getvalue()


def test_request_log_line_has_exactly_its_fields(app_factory: Any) -> None:
    verbose = app_factory(LOG_LEVEL="INFO")
    lines, _ = _request_lines(verbose, lambda c: c.get("/api/v1/no-such-route", headers={"X-Request-ID": "rid-2"}))
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == REQUEST_LINE_FIELDS
    assert line["method"] == "GET"
    assert line["path"] == "/api/v1/no-such-route"
    assert line["status"] == 404
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["user_id"] is None
    assert line["ip"] == "127.0.0.1"
    assert line["request_id"] == "rid-2"
    assert (line["level"], line["logger"]) == ("info", "codex.request")
    assert line["timestamp"].endswith("Z") and line["timestamp"][:4].isdigit()


def test_request_log_line_redacts_what_the_client_sent(app_factory: Any) -> None:
    """Path and client address come from the caller: emails, Bearer tokens and secrets in them are
    scrubbed in the line (the address through ProxyFix from X-Forwarded-For)."""
    verbose = app_factory(LOG_LEVEL="INFO", TRUSTED_PROXY_COUNT=1)
    headers = {"X-Forwarded-For": "Bearer leaked.token.value"}
    lines, written = _request_lines(
        verbose, lambda c: c.get("/api/v1/lookup/ana.customer@example.com/sk_live_abc123", headers=headers)
    )
    assert len(lines) == 1
    assert lines[0]["path"] == "/api/v1/lookup/a***@example.com/[REDACTED]"
    assert lines[0]["ip"] == "Bearer [REDACTED]"
    for secret in ("ana.customer@", "sk_live_abc123", "leaked.token.value"):
        assert secret not in written


def test_request_line_renders_as_the_structlog_chain_would() -> None:
    """``log_request`` renders the line itself: the same fields, order, values and redaction as
    ``structlog.get_logger("codex.request").info("request", ...)`` through the configured chain."""
    import io
    import logging

    import structlog

    from app.logging import configure_logging, log_request

    configure_logging("INFO", "json")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    original = handler.setStream(buffer)
    args: dict[str, Any] = {
        "method": "PUT", "path": "/api/v1/x/bob@example.org", "status": 204, "duration_ms": 1.25,
        "user_id": "0b0e7c9a-5f14-4a36-9a63-6d8f2b1c3e11", "ip": "10.1.2.3",
    }  # fmt: skip
    try:
        with structlog.contextvars.bound_contextvars(request_id="rid-3", organization_id="org-1", password="pw"):
            structlog.get_logger("codex.request").info("request", **args)
            log_request(**args)
    finally:
        handler.setStream(original)
        configure_logging("WARNING", "json")
    chain, fast = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert list(chain) == list(fast)  # same fields in the same order
    chain.pop("timestamp"), fast.pop("timestamp")
    assert chain == fast
    assert fast["path"] == "/api/v1/x/b***@example.org"
    assert fast["password"] == "[REDACTED]"
    assert fast["organization_id"] == "org-1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text, ids 123 and /api/v1/content/7", "plain text, ids 123 and /api/v1/content/7"),
        ("key rk_test_Zz9 here", "key [REDACTED] here"),
        ("bearer abc.def and BEARER xyz", "Bearer [REDACTED] and Bearer [REDACTED]"),
        ("redis://:pw@cache:6379/0", "redis://[REDACTED]@cache:6379/0"),
        ("secret whsec_a_b", "secret [REDACTED]"),
        ("to Zoe@Example.com", "to Z***@Example.com"),
    ],
)
def test_scrub_catches_every_pattern(value: str, expected: str) -> None:
    from app.logging import scrub

    assert scrub(value) == expected


def _rendered_both_ways(context: dict[str, Any], args: dict[str, Any]) -> tuple[str, str]:
    """The raw lines of the structlog chain and of ``log_request`` for ``args`` under ``context``,
    timestamps blanked (the two are taken a few microseconds apart)."""
    import io
    import logging
    import re

    import structlog

    from app.logging import configure_logging, log_request

    configure_logging("INFO", "json")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    original = handler.setStream(buffer)
    try:
        with structlog.contextvars.bound_contextvars(**context):
            structlog.get_logger("codex.request").info("request", **args)
            log_request(**args)
    finally:
        handler.setStream(original)
        configure_logging("WARNING", "json")
    chain, fast = buffer.getvalue().splitlines()
    blank = re.compile(r'"timestamp": "[^"]*"')
    return blank.sub('"timestamp": ""', chain), blank.sub('"timestamp": ""', fast)


@pytest.mark.parametrize(
    ("context", "args"),
    [
        # The usual line: nothing to redact, only string context variables.
        ({"request_id": "rid-4"}, {"user_id": "0b0e7c9a-5f14-4a36-9a63-6d8f2b1c3e11", "ip": "10.1.2.3"}),
        ({"request_id": "r", "organization_id": "org-2"}, {"user_id": None, "ip": None}),
        # Booleans are spelled out too (the webhook's ``duplicate``).
        ({"request_id": "r", "duplicate": False, "event_id": "evt_1", "retried": True}, {}),
        # Quotes, backslashes, control and non-ASCII characters are escaped as json.dumps does.
        ({"request_id": 'a"b\\c'}, {"user_id": "é\u2028\x01", "ip": "::1", "path": '/api/v1/ü/"x"'}),
        # What takes the general path: a secret key, a non-string value, a line field's name, a match.
        ({"request_id": "r", "api_token": "t"}, {}),
        ({"request_id": "r", "attempt": 3}, {}),
        ({"request_id": "r", "status": "shadowed", "level": "debug"}, {}),
        # A variable named as an argument is left out, the argument wins (app/access/fast_path.py).
        ({"request_id": "r", "user_id": "u-bound", "path": 7}, {"user_id": "u-arg"}),
        ({"request_id": "Bearer abc.def"}, {"path": "/api/v1/x/SK_LIVE_a/sk_live_b"}),
        ({}, {"duration_ms": 0.0, "status": 500}),
    ],
)
def test_request_line_is_the_chain_line_byte_for_byte(context: dict[str, Any], args: dict[str, Any]) -> None:
    """The spelled-out line and the general path both give exactly the chain's text."""
    full = {
        "method": "GET", "path": "/api/v1/auth/me", "status": 200, "duration_ms": 3.12,
        "user_id": None, "ip": "127.0.0.1", **args,
    }  # fmt: skip
    chain, fast = _rendered_both_ways(context, full)
    assert fast == chain
    assert json.loads(fast)["event"] == "request"


def test_timestamp_is_the_isoformat_structlog_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt
    import time

    from app.logging import _timestamp

    for nanos in (1_765_000_000_123_456_789, 1_765_000_000_000_000_000, 1_765_000_001_000_999_000, 86_399_999_999_000):
        monkeypatch.setattr(time, "time_ns", lambda nanos=nanos: nanos)
        seconds, rest = divmod(nanos, 1_000_000_000)
        expected = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=rest // 1000)
        assert _timestamp() == expected.isoformat().replace("+00:00", "Z")


def test_request_line_reaches_every_handler(app_factory: Any) -> None:
    """With a handler added beside the configured one (pytest's capture, a deployment's), the
    line goes through the logging chain to both."""
    import logging

    verbose = app_factory(LOG_LEVEL="INFO")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    extra = Keep()
    logging.getLogger().addHandler(extra)
    try:
        lines, _ = _request_lines(verbose, lambda c: c.get("/api/v1/no-such-route", headers={"X-Request-ID": "rid-5"}))
    finally:
        logging.getLogger().removeHandler(extra)
    assert [line["request_id"] for line in lines] == ["rid-5"]
    kept = [json.loads(r.getMessage()) for r in records if r.name == "codex.request"]
    assert kept == lines


@pytest.mark.parametrize(
    "value",
    [
        "plain", "/api/v1/content/7", "sk_live_x", "SK_TEST_y", "rk_test_z", "whsec_q", "BeArEr t", "a@b.co",
        "redis://:pw@h/0", "\u017fk_ K", "İbearer",
    ],
)  # fmt: skip
def test_maybe_secret_is_true_whenever_scrub_changes_a_value(value: str) -> None:
    from app.logging import maybe_secret, scrub

    changed = any(pattern.sub(replacement, value) != value for pattern, replacement in _scrubbers()) or (
        mask_email(value) != value
    )
    assert maybe_secret(value) or not changed
    if not maybe_secret(value):
        assert scrub(value) == value


def _scrubbers() -> list[tuple[Any, Any]]:
    from app.logging import _SCRUBBERS

    return _SCRUBBERS
