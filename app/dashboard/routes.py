"""Dashboard and org administration routes (api.md §11)."""

from __future__ import annotations

from app.api import Blueprint

blp = Blueprint("dashboard", __name__, url_prefix="/api/v1", description="Dashboard, customers, grants, audit")
