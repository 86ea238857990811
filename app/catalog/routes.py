"""Public catalogue routes (api.md §8), no auth."""

from __future__ import annotations

from app.api import Blueprint

blp = Blueprint("catalog", __name__, url_prefix="/api/v1", description="Public catalogue")
