"""Storage routes: signed upload/download for the local backend, public logos for both (api.md §6)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("storage", __name__, url_prefix="/storage")
