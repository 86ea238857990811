"""structlog configuration: one JSON object per line, request/task ids bound, secrets redacted.

Redaction follows security.md §11: values of secret-looking keys become ``[REDACTED]``; Stripe
keys, webhook secrets, Bearer tokens, credentials in URLs and email addresses are scrubbed from
every string value. Emails keep their first character and domain (``a***@example.com``).

The request line (one per request, jobs.md §10) is the hot one: ``log_request`` builds the same
fields the structlog chain would (context variables, level, logger, timestamp), redacts them with
the same ``redact`` and renders the JSON once; the handler's formatter passes the rendered line
through instead of running structlog's processors on it a second time.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|secret|token|authorization|cookie|signature|api_key|card)(_|$)", re.IGNORECASE
)
_SCRUBBERS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"\b(sk|rk)_(live|test)_[A-Za-z0-9]+"), "[REDACTED]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9_]+"), "[REDACTED]"),
    (re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), "Bearer [REDACTED]"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@]*(:[^/\s@]*)?@"), r"\1[REDACTED]@"),
]
# Every scrubber above and the email mask need one of these; a value with none is left as it is
# (one scan instead of five substitutions: most values are ids, paths and short texts).
_MAYBE_SECRET = re.compile(r"sk_|rk_|whsec_|bearer|@", re.IGNORECASE)
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")
_TOKEN_PATH = re.compile(
    r"(/(?:api/v1/stream|storage/upload|storage/upload-part|storage/download)/|/api/v1/invitations/(?!accept(?:[/?#]|$)))[^/?#]+"
)


def mask_email(value: str) -> str:
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


def mask_path(path: str) -> str:
    """Replace token-bearing path segments with ``[token]`` (security.md §11)."""
    if "/stream/" not in path and "/storage/" not in path and "/invitations/" not in path:
        return path  # (the pattern needs one of these; most paths have none)
    return _TOKEN_PATH.sub(r"\1[token]", path)


def scrub(value: str) -> str:
    if _MAYBE_SECRET.search(value) is None:
        return value
    for pattern, replacement in _SCRUBBERS:
        value = pattern.sub(replacement, value)
    return mask_email(value)


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    # Keys are names in the code (a small set): the pattern runs once per name.
    return _SECRET_KEY.search(key) is not None


def _redact_value(key: str, value: Any) -> Any:
    if _is_secret_key(key):
        return "[REDACTED]"
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: apply the redaction rules to every field but the event name."""
    for key, value in list(event_dict.items()):
        if key in {"event", "level", "timestamp", "logger"}:
            if key == "event" and isinstance(value, str):
                event_dict[key] = scrub(value)
            continue
        event_dict[key] = _redact_value(key, value)
    return event_dict


_REQUEST_LOGGER = logging.getLogger("codex.request")
_request_log = structlog.get_logger("codex.request")  # (the console format's request line)
_json_lines = True  # set by configure_logging
_encode = json.JSONEncoder().encode  # json.dumps' defaults, without its per-call argument checks


def log_request(method: str, path: str, status: int, duration_ms: float, user_id: str | None, ip: str | None) -> None:
    """The request log line (INFO, logger ``codex.request``); ``path`` already masked.

    The line has exactly the fields, values and redaction the structlog chain gives an event
    (``log.info("request", method=..., ...)``): the arguments, ``event``, the bound context
    variables (``request_id``, ``organization_id`` ...), ``level``, ``logger`` and ``timestamp``,
    in that order, then ``redact``. In the JSON format it is rendered here, once, and handed to
    the handlers as a ready line (tests/foundation/test_logging.py compares both paths)."""
    if not _json_lines:
        _request_log.info(
            "request", method=method, path=path, status=status, duration_ms=duration_ms, user_id=user_id, ip=ip
        )
        return
    event: dict[str, Any] = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "user_id": user_id,
        "ip": ip,
        "event": "request",
    }
    for key, value in structlog.contextvars.get_contextvars().items():
        event.setdefault(key, value)
    event["level"] = "info"
    event["logger"] = "codex.request"
    event["timestamp"] = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")  # (as TimeStamper)
    record = logging.LogRecord("codex.request", logging.INFO, "", 0, _encode(redact(None, "info", event)), None, None)
    record.codex_rendered = True
    _REQUEST_LOGGER.handle(record)


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, except that a line ``log_request`` rendered is written as it is."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "codex_rendered", False):
            return str(record.msg)
        return super().format(record)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        # Drop events below the level before the (costly) shared chain runs for them.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    global _json_lines
    _json_lines = fmt == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _Formatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # The app logs each request itself (jobs.md §10); werkzeug's line would leak token paths.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
