"""``/api/v1/orgs`` routes: organizations, members, settings (api.md §4, §5)."""

from __future__ import annotations

from app.api import Blueprint

blp = Blueprint("orgs", __name__, url_prefix="/api/v1/orgs", description="Organizations, members and settings")
