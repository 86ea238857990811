"""structlog configuration: one JSON object per line, request/task ids bound, secrets redacted.

Redaction follows security.md §11: values of secret-looking keys become ``[REDACTED]``; Stripe
keys, webhook secrets, Bearer tokens, credentials in URLs and email addresses are scrubbed from
every string value. Emails keep their first character and domain (``a***@example.com``).
"""

from __future__ import annotations

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
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")
_TOKEN_PATH = re.compile(
    r"(/(?:api/v1/stream|storage/upload|storage/upload-part|storage/download)/|/api/v1/invitations/(?!accept(?:[/?#]|$)))[^/?#]+"
)


def mask_email(value: str) -> str:
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


def mask_path(path: str) -> str:
    """Replace token-bearing path segments with ``[token]`` (security.md §11)."""
    return _TOKEN_PATH.sub(r"\1[token]", path)


def scrub(value: str) -> str:
    for pattern, replacement in _SCRUBBERS:
        value = pattern.sub(replacement, value)
    return mask_email(value)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # The app logs each request itself (jobs.md §10); werkzeug's line would leak token paths.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
