"""``GET /api/v1/docs`` (api.md §2, security.md §4): Swagger UI served by the app, offline.

The browser test (tests/players/test_browser.py) renders the page with the network closed; these
check the routes themselves.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask


def test_the_docs_page_loads_only_files_of_the_app(probe: Any) -> None:
    response = probe.get("/api/v1/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    sources = [url for url in re.findall(r'(?:src|href)="([^"]+)"', html) if url != "data:,"]  # data: = no favicon
    assert sources == [
        "/api/v1/docs/swagger-ui.css",
        "/api/v1/docs/swagger-ui-bundle.js",
        "/api/v1/docs/swagger-init.js",
    ]
    assert "<script>" not in html and "style=" not in html  # nothing inline: the CSP allows only 'self'
    bodies = {}
    for source in sources:
        with probe.get(source) as asset:
            assert asset.status_code == 200, source
            assert asset.headers["Content-Security-Policy"] == response.headers["Content-Security-Policy"]
            bodies[source.rsplit("/", 1)[1]] = (asset.mimetype, asset.get_data())
    assert bodies["swagger-ui.css"][0] == "text/css" and b".swagger-ui" in bodies["swagger-ui.css"][1]
    assert bodies["swagger-ui-bundle.js"][0] == "text/javascript" and len(bodies["swagger-ui-bundle.js"][1]) > 100_000
    assert bodies["swagger-init.js"][0] == "text/javascript" and b"SwaggerUIBundle(" in bodies["swagger-init.js"][1]


def test_only_the_pages_own_files_are_served(probe: Any) -> None:
    for name in ["index.html", "swagger-ui.js.map", "..%2F..%2Fapp%2Fconfig.py", "oauth2-redirect.html", "x"]:
        response = probe.get(f"/api/v1/docs/{name}")
        assert response.status_code == 404, name
        assert response.get_json()["error"]["code"] == "NOT_FOUND"


def test_docs_disabled_means_404_everywhere(app_factory: Any, redis: Any) -> None:
    hidden: Flask = app_factory(API_DOCS_ENABLED=False)
    client = hidden.test_client()
    for path in [
        "/api/v1/docs",
        "/api/v1/docs/swagger-ui-bundle.js",
        "/api/v1/docs/swagger-init.js",
        "/api/v1/openapi.json",
    ]:
        assert client.get(path).status_code == 404, path
