"""Media routes (api.md §6): create with upload target, list/get/patch/delete, upload-complete, retry."""

from __future__ import annotations

from app.api import Blueprint

blp = Blueprint("media", __name__, url_prefix="/api/v1", description="Media library and uploads")
