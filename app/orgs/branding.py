"""Org settings as branding, read through the Redis cache ``org_settings:{org_id}`` (1 h).

Used by the public settings endpoint and by the email layout: ``branding_for`` is the lookup
``create_app`` registers with notifications, which owns the ``Branding`` value and the platform
defaults. Writers call ``invalidate`` after their commit (jobs.md §8.3, api.md §5). Redis being
down only costs a database read.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import redis
import structlog
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import keys
from app.notifications.branding import Branding, platform_branding
from app.orgs.models import Organization, OrgSettings
from app.schemas import format_timestamp

log = structlog.get_logger(__name__)

CACHE_TTL_SECONDS = 3600


def logo_url(key: str | None) -> str | None:
    """``STORAGE_PUBLIC_BASE_URL/<key>`` when set, else the app's public logo route."""
    if not key:
        return None
    base = current_app.config["STORAGE_PUBLIC_BASE_URL"].rstrip("/")
    if base:
        return f"{base}/{key}"
    return f"{current_app.config['PUBLIC_BASE_URL']}/storage/public/{key}"


def _snapshot(org: Organization, settings: OrgSettings) -> dict[str, Any]:
    return {
        "organization_id": str(org.id),
        "organization_slug": org.slug,
        "organization_name": org.name,
        "platform_name": settings.platform_name,
        "primary_color": settings.primary_color,
        "secondary_color": settings.secondary_color,
        "support_email": settings.support_email,
        "contact_url": settings.contact_url,
        "business_name": settings.business_name,
        "timezone": settings.timezone,
        "enable_signups": settings.enable_signups,
        "enable_purchases": settings.enable_purchases,
        "logo_key": settings.logo_key,
        "updated_at": format_timestamp(settings.updated_at),
    }


def settings_snapshot(session: Session, org_id: uuid.UUID) -> dict[str, Any] | None:
    """The org's settings as a plain dict (cached), or None when the org does not exist."""
    client: redis.Redis = current_app.extensions["redis"]
    try:
        cached = client.get(keys.org_settings(org_id))
        if cached:
            value: dict[str, Any] = json.loads(cached)
            return value
    except redis.RedisError:
        log.warning("cache.unavailable", cache="org_settings")
    row = session.execute(
        select(Organization, OrgSettings)
        .join(OrgSettings, OrgSettings.organization_id == Organization.id)
        .where(Organization.id == org_id)
    ).first()
    if row is None:
        return None
    snapshot = _snapshot(row[0], row[1])
    with contextlib.suppress(redis.RedisError):
        client.set(keys.org_settings(org_id), json.dumps(snapshot), ex=CACHE_TTL_SECONDS)
    return snapshot


def invalidate(org_id: uuid.UUID | str) -> None:
    """Drop the cached settings; call after the commit that changed them."""
    client: redis.Redis = current_app.extensions["redis"]
    try:
        client.delete(keys.org_settings(org_id))
    except redis.RedisError:
        log.warning("cache.unavailable", cache="org_settings")


def branding_for(session: Session, org_id: uuid.UUID | None) -> Branding:
    """Branding of ``org_id``, or the platform defaults when it is None or gone."""
    snapshot = settings_snapshot(session, org_id) if org_id else None
    if snapshot is None:
        return platform_branding()
    return Branding(
        platform_name=snapshot["platform_name"],
        logo_url=logo_url(snapshot["logo_key"]),
        primary_color=snapshot["primary_color"],
        secondary_color=snapshot["secondary_color"],
        support_email=snapshot["support_email"],
        contact_url=snapshot["contact_url"],
        business_name=snapshot["business_name"],
        timezone=snapshot["timezone"],
        organization_slug=snapshot["organization_slug"],
    )
