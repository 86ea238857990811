"""What an email needs from the domains above notifications: branding and the recipient's name.

Notifications is a low layer: identity, orgs, media, commerce and dashboard all queue email
through it, so it imports none of them. Two answers at send time belong to those domains,
though: the branding of the row's organization (orgs owns the settings and their
``org_settings:{org_id}`` cache) and the display name of the row's user (identity owns
``users``). The owning domain's function is registered on the app at start-up by the
composition root (``create_app`` calls ``register_lookups``), and ``service.build_email`` asks
through ``lookup_branding`` and ``lookup_user_name`` below. They live in ``app.extensions`` rather
than in a module global, so every app (tests build many) carries its own and an app built
without them fails loudly instead of sending unbranded mail.

``Branding`` (the renderer's input) and the platform defaults live here, so orgs imports them
downward to build an organization's branding (jobs.md §8.3).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from flask import Flask, current_app
from sqlalchemy.orm import Session

EXTENSION = "email_lookups"
DEFAULT_PRIMARY_COLOR = "#3B82F6"


@dataclass(frozen=True)
class Branding:
    """The variables every email template gets (jobs.md §8.3)."""

    platform_name: str
    logo_url: str | None
    primary_color: str
    secondary_color: str | None
    support_email: str
    contact_url: str | None
    business_name: str | None
    timezone: str
    organization_slug: str | None = None

    def as_context(self) -> dict[str, Any]:
        return asdict(self)


def platform_branding() -> Branding:
    """The platform's own branding (jobs.md §8.3): for rows without an organization, or a gone one."""
    config = current_app.config
    return Branding(
        platform_name=config["PLATFORM_NAME"],
        logo_url=None,
        primary_color=DEFAULT_PRIMARY_COLOR,
        secondary_color=None,
        support_email=config["PLATFORM_SUPPORT_EMAIL"],
        contact_url=None,
        business_name=None,
        timezone="UTC",
    )


BrandingLookup = Callable[[Session, uuid.UUID | None], Branding]
"""``(session, organization_id) -> Branding``; platform defaults when the id is None or gone."""

UserNameLookup = Callable[[Session, uuid.UUID], str | None]
"""``(session, user_id) -> display name``; None when the user is gone."""


@dataclass(frozen=True)
class Lookups:
    branding: BrandingLookup
    user_name: UserNameLookup


def register_lookups(app: Flask, *, branding: BrandingLookup, user_name: UserNameLookup) -> None:
    """Give ``app``'s email sending the owning domains' lookups (once, at start-up)."""
    app.extensions[EXTENSION] = Lookups(branding=branding, user_name=user_name)


def _lookups() -> Lookups:
    lookups: Lookups | None = current_app.extensions.get(EXTENSION)
    if lookups is None:
        raise RuntimeError("email lookups are not registered on this app (create_app calls register_lookups)")
    return lookups


def lookup_branding(session: Session, organization_id: uuid.UUID | None) -> Branding:
    """The branding of ``organization_id`` from the registered lookup."""
    return _lookups().branding(session, organization_id)


def lookup_user_name(session: Session, user_id: uuid.UUID) -> str | None:
    """The display name of ``user_id`` from the registered lookup."""
    return _lookups().user_name(session, user_id)
