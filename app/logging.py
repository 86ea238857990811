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

import functools
import json
import logging
import math
import re
import sys
import time
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
    if "/stream/" not in path and "/storage/" not in path and "/invitations/" not in path:
        return path  # (the pattern needs one of these; most paths have none)
    return _TOKEN_PATH.sub(r"\1[token]", path)


def maybe_secret(value: str) -> bool:
    """Whether ``value`` has "@", "sk_", "rk_", "whsec_" or "bearer" (in any case), which every
    scrubber and the email mask need: without any, ``scrub`` leaves it as it is.

    Substring tests on the lower-cased text: a regular expression of these alternatives with
    IGNORECASE tries each at every position and costs ~20 times as much on a log line."""
    lowered = value.lower()
    return "@" in lowered or "sk_" in lowered or "rk_" in lowered or "whsec_" in lowered or "bearer" in lowered


def scrub(value: str) -> str:
    if not maybe_secret(value):
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
_handler: logging.Handler | None = None  # the root handler configure_logging installed
_encode = json.JSONEncoder().encode  # json.dumps' defaults, without its per-call argument checks
_quote = json.encoder.encode_basestring_ascii  # what that encoder does to a str (C, one call per value)
# Fields the line sets itself. A context variable named as an argument is left out (the argument
# wins, as structlog's ``setdefault``: app/access/fast_path.py binds ``user_id``); one named as a
# stamped field takes the general path (the field then stands where the variable was bound).
_ARGUMENT_FIELDS = frozenset({"method", "path", "status", "duration_ms", "user_id", "ip", "event"})
_STAMPED_FIELDS = frozenset({"level", "logger", "timestamp"})
_stamp_second: tuple[int, str] = (-1, "")  # (epoch second, its "YYYY-MM-DDTHH:MM:SS"), one per second


def _timestamp() -> str:
    """``datetime.now(UTC).isoformat()`` with ``Z`` for ``+00:00`` (structlog's TimeStamper), the
    date and time part formatted once per second."""
    global _stamp_second
    nanos = time.time_ns()
    second, micros = nanos // 1_000_000_000, nanos // 1000 % 1_000_000
    cached = _stamp_second
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _stamp_second = cached  # (one tuple: threads see the old or the new pair, never half)
    return f"{cached[1]}.{micros:06d}Z" if micros else f"{cached[1]}Z"  # (isoformat drops .000000)


def log_request(method: str, path: str, status: int, duration_ms: float, user_id: str | None, ip: str | None) -> None:
    """The request log line (INFO, logger ``codex.request``); ``path`` already masked.

    The line has exactly the fields, values and redaction the structlog chain gives an event
    (``log.info("request", method=..., ...)``): the arguments, ``event``, the bound context
    variables (``request_id``, ``organization_id`` ...), ``level``, ``logger`` and ``timestamp``,
    in that order, then ``redact``. In the JSON format it is rendered here, once, and handed to
    the handler as a ready line (tests/foundation/test_logging.py compares both paths).

    Every request pays for this line, so the usual line is spelled out rather than built as a dict
    and encoded, and it is redacted with one scan of the rendered text: ``redact`` changes nothing
    in a line none of whose values has a secret-looking key or a ``maybe_secret`` match (and every
    value stands in the JSON text as it is, escapes aside, which no pattern spans). Anything else
    (a context variable that is neither a string nor a bool, has a secret key or the name of a stamped field; a match)
    takes the general path: the dict, ``redact``, the encoder."""
    if not _json_lines:
        _request_log.info(
            "request", method=method, path=path, status=status, duration_ms=duration_ms, user_id=user_id, ip=ip
        )
        return
    context = structlog.contextvars.get_contextvars()
    line: str | None = None
    if type(status) is int and type(duration_ms) is float and math.isfinite(duration_ms):  # (json's spelling = repr)
        variables = ""
        for key, value in context.items():
            if key in _ARGUMENT_FIELDS:
                continue
            if key in _STAMPED_FIELDS or _is_secret_key(key):
                break
            if type(value) is str:
                variables += f", {_quote(key)}: {_quote(value)}"
            elif type(value) is bool:  # (the webhook's ``duplicate``: json's spelling, nothing to redact)
                variables += f", {_quote(key)}: {'true' if value else 'false'}"
            else:
                break
        else:
            user = "null" if user_id is None else _quote(user_id)
            address = "null" if ip is None else _quote(ip)
            line = (
                f'{{"method": {_quote(method)}, "path": {_quote(path)}, "status": {status!r}, '
                f'"duration_ms": {duration_ms!r}, "user_id": {user}, "ip": {address}, "event": "request"'
                f'{variables}, "level": "info", "logger": "codex.request", "timestamp": "{_timestamp()}"}}'
            )
            if maybe_secret(line):
                line = None  # (something to redact, or a key that looks like it: the general path)
    if line is None:
        event: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "user_id": user_id,
            "ip": ip,
            "event": "request",
        }
        for key, value in context.items():
            event.setdefault(key, value)
        event["level"] = "info"
        event["logger"] = "codex.request"
        event["timestamp"] = _timestamp()
        line = _encode(redact(None, "info", event))
    _emit(line)


def _emit(line: str) -> None:
    """Hand the rendered line to the logging handlers of ``codex.request``.

    When they are just the handler ``configure_logging`` installed (no filters, nothing added), the
    line is written to that handler's stream as its ``emit`` would, under its lock, without a
    ``LogRecord`` and the logger's walk to the root; otherwise (pytest's capture, a handler a
    deployment added) the record goes through ``Logger.handle`` as any other."""
    handler = _handler
    root = logging.root
    if (
        handler is not None
        and type(handler) is logging.StreamHandler
        and not handler.filters
        and handler.level <= logging.INFO
        and root.handlers == [handler]
        and not root.filters
        and not _REQUEST_LOGGER.handlers
        and not _REQUEST_LOGGER.filters
        and _REQUEST_LOGGER.propagate
        and not _REQUEST_LOGGER.disabled
        and _REQUEST_LOGGER.parent is root  # (no "codex" logger between them with handlers of its own)
    ):
        with handler.lock:  # type: ignore[union-attr]  # (a StreamHandler has one)
            try:
                stream = handler.stream
                stream.write(line + handler.terminator)
                stream.flush()
            except Exception:  # (as StreamHandler.emit: reported on stderr, never raised)
                handler.handleError(_record(line))
        return
    _REQUEST_LOGGER.handle(_record(line))


def _record(line: str) -> logging.LogRecord:
    record = logging.LogRecord("codex.request", logging.INFO, "", 0, line, None, None)
    record.codex_rendered = True
    return record


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
    global _json_lines, _handler
    _json_lines = fmt == "json"
    handler = logging.StreamHandler(sys.stderr)
    _handler = handler
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
