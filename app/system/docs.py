"""``GET /api/v1/docs``: Swagger UI served by the app itself (api.md §2, security.md §4).

The page, Swagger UI's script and stylesheet (the Swagger UI distribution that the
``flask-swagger-ui`` package ships; its blueprint is not used) and the script that starts it all
come from this app, so the docs render on a machine with no Internet
and the page's CSP allows only ``'self'``: no CDN host, no inline script (flask-smorest's own
page starts Swagger UI from an inline ``<script>``, so the app serves its own page instead).
Only the few files the page loads are served, by fixed name.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, Response, render_template, send_from_directory

from app import errors

PREFIX = "/api/v1/docs"
ASSETS = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
# The files of Swagger UI's distribution that the page loads (name -> type; RFC 9239 for scripts),
# and the folder of the script that starts it (ours).
BUNDLED = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}
STARTER = Path(__file__).resolve().parents[2] / "templates" / "docs"

bp = Blueprint("docs", __name__, url_prefix=PREFIX)


def init_app(app: Flask) -> None:
    """Register the docs routes unless ``API_DOCS_ENABLED`` is false (then every docs path is a 404)."""
    if app.config["API_DOCS_ENABLED"]:
        app.register_blueprint(bp)


@bp.get("")
def page() -> Response:
    """The Swagger UI page: markup only; the scripts it loads are files of this app."""
    return Response(render_template("docs/swagger-ui.html", prefix=PREFIX), mimetype="text/html")


@bp.get("/<name>")
def asset(name: str) -> Response:
    """One of the page's scripts or stylesheets."""
    if name in BUNDLED:
        return send_from_directory(ASSETS, name, mimetype=BUNDLED[name], conditional=True)
    if name == "swagger-init.js":
        return send_from_directory(STARTER, name, mimetype="text/javascript", conditional=True)
    raise errors.NotFound()
