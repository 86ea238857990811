"""``/api/v1/auth`` routes (api.md §3)."""

from __future__ import annotations

from app.api import Blueprint

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts, login and sessions")
