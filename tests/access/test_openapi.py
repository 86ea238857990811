"""Every access/playback operation is documented with a summary and its non-2xx responses."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

COMMON = {"429", "500", "503"}
EXPECTED = {
    ("get", "/api/v1/content/{content_id}/access"): {"401", "404"},
    ("get", "/api/v1/content/{content_id}/stream"): {"400", "401", "403", "404", "422"},
    ("get", "/api/v1/stream/{token}/master.m3u8"): {"403", "404"},
    ("get", "/api/v1/stream/{token}/{rendition}/index.m3u8"): {"403", "404"},
    ("put", "/api/v1/content/{content_id}/progress"): {"400", "401", "403", "404", "413", "415"},
    ("get", "/api/v1/content/{content_id}/progress"): {"401", "404"},
    ("get", "/api/v1/me/library"): {"400", "401"},
}


@pytest.fixture(scope="module")
def spec(app: Flask) -> dict[str, Any]:
    document: dict[str, Any] = app.test_client().get("/api/v1/openapi.json").json
    return document


@pytest.mark.parametrize(("method", "path"), list(EXPECTED))
def test_operation_is_documented(spec: dict[str, Any], method: str, path: str) -> None:
    operation = spec["paths"][path][method]
    assert operation["summary"]
    assert EXPECTED[(method, path)] | COMMON <= set(operation["responses"])


def test_playlists_are_documented_as_mpegurl(spec: dict[str, Any]) -> None:
    ok = spec["paths"]["/api/v1/stream/{token}/master.m3u8"]["get"]["responses"]["200"]
    assert list(ok["content"]) == ["application/vnd.apple.mpegurl"]
