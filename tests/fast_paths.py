"""Helpers shared by the tests of the WSGI fast paths (app/access, app/identity, app/catalog)."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from app.speed.answer import FastPath

T = TypeVar("T")

ALLOWED_ORIGIN = "http://localhost:3000"  # the test config's CORS_ORIGINS


def header_variants(request_id: str) -> pytest.MarkDecorator:
    """Parametrize ``extra`` with the request headers each fast path's answer is compared under:
    none, an allowed ``Origin`` (CORS headers), another ``Origin`` (none), an ``X-Request-ID``."""
    return pytest.mark.parametrize(
        "extra",
        [{}, {"Origin": ALLOWED_ORIGIN}, {"Origin": "https://evil.example"}, {"X-Request-ID": request_id}],
        ids=["plain", "allowed-origin", "other-origin", "request-id"],
    )


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


def answered_fast(
    middleware: FastPath, counter: str, send: Callable[[], TestResponse], status: int, what: str
) -> TestResponse:
    """``send()`` until ``middleware`` answers it (its ``counter`` grows); every answer before
    that is the route's, with ``status``. The first requests warm what the fast path reads (the
    session, bodies, snapshots, entries into Redis and the near cache), and a near cache can be
    briefly unusable under load (a late PONG, app/speed/nearcache.py), its lookups then missing:
    so a test never relies on one particular request taking the fast path."""
    near = middleware.app.extensions["near_cache"]
    for _ in range(8):
        assert near.wait_usable(5.0)
        before = getattr(middleware, counter)
        response = send()
        if getattr(middleware, counter) > before:
            return response
        assert response.status_code == status, response.get_data(as_text=True)
    raise AssertionError(f"no {what} was answered by the fast path")


def header_bag(response: TestResponse, skip: frozenset[str] = frozenset({"X-Request-ID"})) -> Counter[tuple[str, str]]:
    """The response's headers as a multiset, but those in ``skip`` (that differ between two requests)."""
    return Counter((k, v) for k, v in response.headers.items() if k not in skip)


LIMIT_COUNTERS = frozenset({"X-Request-ID", "X-RateLimit-Remaining", "X-RateLimit-Reset"})
"""``header_bag``'s ``skip`` for two requests counted by the same limit one after the other."""


@contextmanager
def flask_only(middleware: FastPath) -> Iterator[None]:
    """Inside, every request skips ``middleware`` (as with FAST_PATH_ENABLED off)."""
    middleware.reply = lambda environ: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del middleware.reply  # (the class's again)
