"""Access, streaming, HLS proxy, progress and library routes (api.md §10)."""

from __future__ import annotations

from app.api import Blueprint

blp = Blueprint("access", __name__, url_prefix="/api/v1", description="Access, playback and library")
