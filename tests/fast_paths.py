"""Helpers shared by the tests of the WSGI fast paths (app/access, app/identity, app/catalog)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import Flask

T = TypeVar("T")


def layer_of(app: Flask, kind: type[T]) -> T:
    """The middleware of type ``kind`` in ``app``'s WSGI chain (AssertionError when absent)."""
    layer: Any = app.wsgi_app
    while layer is not None:
        if isinstance(layer, kind):
            return layer
        layer = getattr(layer, "wsgi_app", None) or getattr(layer, "app", None)
    raise AssertionError(f"no {kind.__name__} in the WSGI chain")


@contextmanager
def request_lines() -> Iterator[dict[str, dict[str, Any]]]:
    """The request log lines written meanwhile, by request id (filled when the block ends), with
    the fields that differ between two requests (duration, timestamp, request id) checked and
    removed, so that a fast path's line and the route's can be compared whole."""
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    original = handler.setStream(buffer)
    lines: dict[str, dict[str, Any]] = {}
    try:
        yield lines
    finally:
        handler.setStream(original)
        logging.getLogger().setLevel(logging.WARNING)
    for raw in buffer.getvalue().splitlines():
        line = json.loads(raw) if raw.startswith("{") else None
        if line is not None and line["event"] == "request":
            request_id = line.pop("request_id")
            assert line.pop("duration_ms") >= 0 and line.pop("timestamp")
            lines[request_id] = line
