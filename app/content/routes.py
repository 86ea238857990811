"""Content management routes (api.md §7)."""

from __future__ import annotations

from app.api import Blueprint

blp = Blueprint("content", __name__, url_prefix="/api/v1", description="Content management")
