"""Email templates: the variable table, context checks at queue time, Jinja rendering at send time.

``templates/email/<name>/{subject.txt, body.txt, body.html}`` extend ``_layout.txt`` /
``_layout.html``. HTML is autoescaped; ``StrictUndefined`` turns a missing variable into an
error instead of a blank in a customer's inbox.

Context values are stored in the outbox row in a JSON-safe, *unformatted* form (money as
``{"cents", "currency"}``, datetimes as ISO-8601 UTC, durations as seconds) and formatted only
when rendering: the branding timezone is applied then, and the stored row stays
machine-readable. ``VARIABLES`` below is the single table of what each template needs; the
same table drives the queue-time check, the render-time formatting and the preview samples.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from flask import current_app

from app.notifications.branding import DEFAULT_PRIMARY_COLOR, Branding
from app.notifications.models import TEMPLATES

TEMPLATE_DIR = Path(__file__).resolve().parent.parent.parent / "templates" / "email"
SUBJECT_MAX = 200
# Links that grant access on their own; removed from the stored context once a row is final.
SECRET_VARIABLES = ("verification_url", "reset_url", "accept_url")


class Kind(Enum):
    TEXT = "text"
    INT = "int"
    BOOL = "bool"
    URL = "url"  # absolute link under FRONTEND_URL (security.md §15)
    MONEY = "money"  # Money(cents, currency) -> "$19.99" / "19.99 EUR"
    DATETIME = "datetime"  # aware datetime -> "March 2, 2025 14:05 (Europe/Paris)"
    DURATION = "duration"  # seconds -> "1:02:03" / "4:05"


T, N, B, U, M, D, S = Kind.TEXT, Kind.INT, Kind.BOOL, Kind.URL, Kind.MONEY, Kind.DATETIME, Kind.DURATION

# Required variables per template, besides the common ones (jobs.md §8.4).
VARIABLES: dict[str, dict[str, Kind]] = {
    "email-verification": {"verification_url": U, "expires_in_hours": N},
    "password-reset": {"reset_url": U, "expires_in_minutes": N},
    "password-changed": {"changed_at": D},
    "welcome": {"login_url": U},
    "purchase-receipt": {
        "content_title": T, "content_url": U, "amount": M, "purchase_id": T, "purchased_at": D, "library_url": U,
    },
    "refund-processed": {
        "content_title": T, "refund_amount": M, "total_refunded": M, "original_amount": M,
        "is_full_refund": B, "is_duplicate": B, "refunded_at": D,
    },
    "access-granted": {"content_title": T, "content_url": U, "granted_by_name": T},
    "media-ready": {"media_title": T, "media_url": U, "duration": S},
    "media-failed": {"media_title": T, "media_url": U, "error_message": T, "attempts_left": N},
    "new-sale": {"content_title": T, "amount": M, "customer_name": T, "dashboard_url": U},
    "org-invitation": {
        "organization_name": T, "role": T, "invited_by_name": T, "accept_url": U, "expires_at": D,
    },
}  # fmt: skip

# Variables the caller may pass to every template; filled from the user row otherwise.
OPTIONAL_VARIABLES: dict[str, Kind] = {"user_name": T}

# Filled at render time from branding and configuration (jobs.md §8.3); callers never pass them.
COMMON_VARIABLES = (
    "platform_name", "logo_url", "primary_color", "secondary_color", "support_email", "contact_url",
    "business_name", "frontend_url", "year", "user_name",
)  # fmt: skip

assert set(VARIABLES) == set(TEMPLATES), "every outbox template needs a variable table entry"


class TemplateContextError(ValueError):
    """A programming error: unknown template, or a missing / unknown / mistyped variable."""


class Money(NamedTuple):
    cents: int
    currency: str


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


# ---- queue time: check and normalise -------------------------------------------------------


def prepare_context(template: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``context`` against the table and return its JSON-safe stored form.

    Raises ``TemplateContextError`` for an unknown template, a missing or unknown variable, or a
    value of the wrong kind: these are bugs in the calling code and must fail before the
    business transaction commits, not as a broken email later.
    """
    if template not in VARIABLES:
        raise TemplateContextError(f"unknown email template {template!r}")
    required = VARIABLES[template]
    allowed = {**required, **OPTIONAL_VARIABLES}
    missing = sorted(set(required) - set(context))
    if missing:
        raise TemplateContextError(f"{template}: missing variables {', '.join(missing)}")
    unknown = sorted(set(context) - set(allowed))
    if unknown:
        raise TemplateContextError(f"{template}: unknown variables {', '.join(unknown)}")
    stored: dict[str, Any] = {}
    for name, value in context.items():
        if value is None and name in OPTIONAL_VARIABLES:
            continue
        try:
            stored[name] = _normalise(allowed[name], value)
        except (TypeError, ValueError) as exc:
            raise TemplateContextError(f"{template}: variable {name}: {exc}") from None
    return stored


def _normalise(kind: Kind, value: Any) -> Any:
    if kind is Kind.TEXT:
        if isinstance(value, uuid.UUID):
            return str(value)
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return value
    if kind is Kind.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        return value
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise TypeError(f"expected a boolean, got {type(value).__name__}")
        return value
    if kind is Kind.URL:
        if not isinstance(value, str):
            raise TypeError(f"expected a URL string, got {type(value).__name__}")
        base = current_app.config["FRONTEND_URL"]
        if not (value == base or value.startswith(base + "/") or value.startswith(base + "?")):
            raise ValueError("links in emails must point to FRONTEND_URL")
        return value
    if kind is Kind.MONEY:
        cents, currency = _money_parts(value)
        return {"cents": cents, "currency": currency}
    if kind is Kind.DATETIME:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError("expected a timezone-aware datetime")
        return value.astimezone(UTC).isoformat()
    if kind is Kind.DURATION:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise TypeError("expected a number of seconds >= 0")
        return round(value)
    raise AssertionError(kind)  # pragma: no cover


def _money_parts(value: Any) -> tuple[int, str]:
    if isinstance(value, Mapping):
        cents, currency = value.get("cents"), value.get("currency")
    elif isinstance(value, tuple) and len(value) == 2:
        cents, currency = value
    else:
        raise TypeError("expected Money(cents, currency)")
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError("money cents must be an integer")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise ValueError("money currency must be a 3-letter code")
    return cents, currency.lower()


# ---- formatting ------------------------------------------------------------------------------

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def format_money(cents: int, currency: str) -> str:
    """``$19.99`` for usd, otherwise ``19.99 EUR`` (jobs.md §8.3); thousands get commas."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    number = f"{whole:,}.{part:02d}"
    if currency.lower() == "usd":
        return f"{sign}${number}"
    return f"{sign}{number} {currency.upper()}"


def zone(name: str | None) -> ZoneInfo:
    """The branding timezone; UTC when none or unknown (a bad value must not break an email)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_datetime(value: datetime | str, timezone: str | None) -> str:
    """``March 2, 2025 14:05 (Europe/Paris)`` in the branding org's timezone."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    tz = zone(timezone)
    local = moment.astimezone(tz)
    return f"{_MONTHS[local.month - 1]} {local.day}, {local.year} {local:%H:%M} ({tz.key})"


def format_duration(seconds: int) -> str:
    """``4:05`` below an hour, ``1:02:03`` from an hour on."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _display(kind: Kind, value: Any, timezone: str) -> Any:
    if kind is Kind.MONEY:
        cents, currency = _money_parts(value)
        return format_money(cents, currency)
    if kind is Kind.DATETIME:
        return format_datetime(value, timezone)
    if kind is Kind.DURATION:
        return format_duration(value)
    return value


# ---- render time -------------------------------------------------------------------------------

_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")


def common_variables(branding: Branding, *, user_name: str | None) -> dict[str, Any]:
    """The variables every template gets (jobs.md §8.3)."""
    config = current_app.config
    primary = branding.primary_color if _COLOR.match(branding.primary_color or "") else DEFAULT_PRIMARY_COLOR
    secondary = branding.secondary_color if _COLOR.match(branding.secondary_color or "") else None
    return {
        "platform_name": branding.platform_name,
        "logo_url": branding.logo_url,
        "primary_color": primary,
        "secondary_color": secondary,
        "support_email": branding.support_email,
        "contact_url": branding.contact_url,
        "business_name": branding.business_name,
        "frontend_url": config["FRONTEND_URL"],
        "year": datetime.now(UTC).year,
        "user_name": user_name,
    }


@lru_cache(maxsize=4)
def environment(template_dir: str = str(TEMPLATE_DIR)) -> jinja2.Environment:
    """One Jinja environment per process: templates are compiled once and cached."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        # HTML parts (and anything not a .txt part) are escaped; the .txt parts are plain text.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), disabled_extensions=("txt",), default_for_string=True, default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )


def render_email(template: str, context: Mapping[str, Any], branding: Branding) -> RenderedEmail:
    """Render the three parts of ``template`` from a stored context plus branding.

    Raises ``jinja2.TemplateError`` (missing variable, syntax) or ``TemplateContextError``
    (a stored value no longer fits the table): both are permanent for this row.
    """
    if template not in VARIABLES:
        raise TemplateContextError(f"unknown email template {template!r}")
    kinds = {**VARIABLES[template], **OPTIONAL_VARIABLES}
    values: dict[str, Any] = {}
    for name, value in context.items():
        kind = kinds.get(name)
        try:
            values[name] = _display(kind, value, branding.timezone) if kind else value
        except (TypeError, ValueError) as exc:
            raise TemplateContextError(f"{template}: stored variable {name}: {exc}") from None
    user_name = values.pop("user_name", None)
    variables = {**values, **common_variables(branding, user_name=user_name)}
    env = environment()
    subject = env.get_template(f"{template}/subject.txt").render(variables)
    text = env.get_template(f"{template}/body.txt").render(variables)
    html = env.get_template(f"{template}/body.html").render(variables)
    return RenderedEmail(clean_subject(subject), text.strip() + "\n", html)


def clean_subject(subject: str) -> str:
    """One line, CR/LF removed (no header injection), at most 200 characters."""
    line = " ".join(subject.replace("\r", " ").replace("\n", " ").split())
    if len(line) > SUBJECT_MAX:
        line = line[: SUBJECT_MAX - 1].rstrip() + "…"
    return line


# ---- preview samples ------------------------------------------------------------------------


def sample_context(template: str) -> dict[str, Any]:
    """Plausible variables for ``template`` (the preview command and the template tests)."""
    base = current_app.config["FRONTEND_URL"]
    org_id, media_id = "7d1c2f1e-5b0a-4c8e-9a55-2f0a3b4c5d6e", "0b9f8e7d-6c5b-4a39-8271-605f4e3d2c1b"
    when = datetime(2025, 3, 2, 13, 5, tzinfo=UTC)
    samples: dict[str, dict[str, Any]] = {
        "email-verification": {"verification_url": f"{base}/verify-email?token=sample-token", "expires_in_hours": 24},
        "password-reset": {"reset_url": f"{base}/reset-password?token=sample-token", "expires_in_minutes": 60},
        "password-changed": {"changed_at": when},
        "welcome": {"login_url": f"{base}/login"},
        "purchase-receipt": {
            "content_title": "Mastering Sourdough", "content_url": f"{base}/bakery/content/mastering-sourdough",
            "amount": Money(1999, "usd"), "purchase_id": "3f2b9c1a-8d7e-4f60-b5a4-1c2d3e4f5a6b",
            "purchased_at": when, "library_url": f"{base}/library",
        },
        "refund-processed": {
            "content_title": "Mastering Sourdough", "refund_amount": Money(999, "usd"),
            "total_refunded": Money(999, "usd"), "original_amount": Money(1999, "usd"),
            "is_full_refund": False, "is_duplicate": False, "refunded_at": when,
        },
        "access-granted": {
            "content_title": "Mastering Sourdough", "content_url": f"{base}/bakery/content/mastering-sourdough",
            "granted_by_name": "Ada Baker",
        },
        "media-ready": {
            "media_title": "Episode 1 - Starter", "media_url": f"{base}/studio/{org_id}/media/{media_id}",
            "duration": 754,
        },
        "media-failed": {
            "media_title": "Episode 1 - Starter", "media_url": f"{base}/studio/{org_id}/media/{media_id}",
            "error_message": "The file could not be read as audio or video.", "attempts_left": 2,
        },
        "new-sale": {
            "content_title": "Mastering Sourdough", "amount": Money(1999, "usd"), "customer_name": "Grace Hopper",
            "dashboard_url": f"{base}/studio/{org_id}/dashboard",
        },
        "org-invitation": {
            "organization_name": "Ada's Bakery", "role": "creator", "invited_by_name": "Ada Baker",
            "accept_url": f"{base}/invitations/accept?token=sample-token", "expires_at": when,
        },
    }  # fmt: skip
    if template not in samples:
        raise TemplateContextError(f"unknown email template {template!r}")
    return {**samples[template], "user_name": "Sam Sample"}
