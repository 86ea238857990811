"""The email outbox: queue in the business transaction, claim, render, send, record (jobs.md §8).

Business code calls ``queue_email`` with its own session and never talks to SMTP: the row is
committed (or rolled back) together with the change that causes it, and ``email.send`` is
published only after that commit. The sending side (``claim_email`` -> ``send_claimed``) is
driven by ``tasks/email.py``, which owns the two commits (the claim, then the outcome).
Nothing here commits.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import structlog
from flask import current_app
from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.orm import Session

from app.db import enqueue_after_commit
from app.logging import mask_email
from app.notifications.backends import (
    Delivery,
    OutgoingEmail,
    SendError,
    classify,
    describe_error,
    get_backend,
    sender_domain,
    sender_parts,
)
from app.notifications.branding import lookup_branding, lookup_user_name
from app.notifications.models import TEMPLATES, EmailOutbox
from app.notifications.rendering import (
    SECRET_VARIABLES,
    TemplateContextError,
    prepare_context,
    render_email,
    sample_context,
)
from app.schemas import paginate

log = structlog.get_logger(__name__)

SEND_TASK = "email.send"
CLAIM_LEASE = timedelta(minutes=5)  # a claim older than this belongs to a dead worker
SWEEP_QUEUED_AFTER = timedelta(seconds=60)  # give the after-commit message a chance first
SWEEP_BATCH = 1000
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
RETRYABLE = ("queued", "failed")


# ---- frontend links (jobs.md §8.3): the one place email links are built ---------------------------


def frontend_url(path: str = "", **query: Any) -> str:
    """``FRONTEND_URL`` + ``path`` (+ ``?query``); every link in an email starts here."""
    url = current_app.config["FRONTEND_URL"] + ("/" + path.lstrip("/") if path else "")
    if query:
        url += "?" + urlencode(query)
    return url


def verify_email_url(token: str) -> str:
    return frontend_url("/verify-email", token=token)


def reset_password_url(token: str) -> str:
    return frontend_url("/reset-password", token=token)


def invitation_accept_url(token: str) -> str:
    return frontend_url("/invitations/accept", token=token)


def login_url() -> str:
    return frontend_url("/login")


def library_url() -> str:
    return frontend_url("/library")


def content_url(org_slug: str, content_slug: str) -> str:
    return frontend_url(f"/{quote(org_slug, safe='')}/content/{quote(content_slug, safe='')}")


def media_url(org_id: uuid.UUID | str, media_id: uuid.UUID | str) -> str:
    return frontend_url(f"/studio/{org_id}/media/{media_id}")


def dashboard_url(org_id: uuid.UUID | str) -> str:
    return frontend_url(f"/studio/{org_id}/dashboard")


# ---- queueing (jobs.md §8.1) ----------------------------------------------------------------------


@dataclass(frozen=True)
class QueuedEmail:
    """One email for ``queue_emails``: ``queue_email``'s arguments."""

    template: str
    recipient: str
    user_id: uuid.UUID | None
    organization_id: uuid.UUID | None
    context: Mapping[str, Any]
    dedupe_key: str


def queue_email(
    session: Session,
    template: str,
    recipient: str,
    user_id: uuid.UUID | None,
    organization_id: uuid.UUID | None,
    context: Mapping[str, Any],
    dedupe_key: str,
) -> uuid.UUID | None:
    """Add an email to the outbox in the caller's transaction; ``email.send`` follows the commit.

    ``context`` holds the template's variables (``rendering.VARIABLES``); money as
    ``rendering.Money(cents, currency)``, datetimes timezone-aware. A missing, unknown or
    mistyped variable raises ``TemplateContextError`` (a ``ValueError``) now, before anything
    is committed. The same ``dedupe_key`` twice is one email: the second call inserts nothing
    and returns None; otherwise the new row's id.
    """
    email = QueuedEmail(template, recipient, user_id, organization_id, context, dedupe_key)
    return queue_emails(session, [email])[0]


def queue_emails(session: Session, emails: Sequence[QueuedEmail]) -> list[uuid.UUID | None]:
    """``queue_email`` for several emails in one INSERT (one round trip); the ids in order, None
    for each one whose ``dedupe_key`` was already queued. All are checked before anything is sent
    to the database."""
    params: dict[str, Any] = {}
    for n, email in enumerate(emails):
        stored = prepare_context(email.template, email.context)
        _check_recipient(email.recipient)
        if not email.dedupe_key or len(email.dedupe_key) > 200:
            raise TemplateContextError("dedupe_key must be 1..200 characters")
        params.update(
            {
                f"id_{n}": uuid.uuid4(),
                f"dedupe_key_{n}": email.dedupe_key,
                f"template_{n}": email.template,
                f"organization_id_{n}": email.organization_id,
                f"user_id_{n}": email.user_id,
                f"recipient_{n}": email.recipient,
                f"context_{n}": json.dumps(stored),
            }
        )
    if not emails:
        return []
    rows = session.connection().exec_driver_sql(_insert_outbox_sql(len(emails)), params).all()
    inserted = {row.dedupe_key: row.id for row in rows}
    ids = [inserted.get(email.dedupe_key) for email in emails]
    for outbox_id in ids:
        if outbox_id is not None:
            enqueue_after_commit(session, SEND_TASK, str(outbox_id))
    return ids


@functools.cache
def _insert_outbox_sql(count: int) -> str:
    """``INSERT … VALUES`` for ``count`` rows, ``ON CONFLICT (dedupe_key) DO NOTHING`` (one SQL text per count,
    so psycopg prepares it)."""
    rows = ", ".join(
        f"(%(id_{n})s, %(dedupe_key_{n})s, %(template_{n})s, %(organization_id_{n})s, %(user_id_{n})s,"
        f" %(recipient_{n})s, %(context_{n})s::jsonb)"
        for n in range(count)
    )
    # Only numbered placeholders are interpolated; every value is a bound parameter.
    columns = "id, dedupe_key, template, organization_id, user_id, recipient, context"
    sql = f"INSERT INTO email_outbox ({columns}) VALUES {rows} ON CONFLICT (dedupe_key) DO NOTHING"  # noqa: S608
    return sql + " RETURNING id, dedupe_key"


def _check_recipient(recipient: str) -> None:
    _name, address = parseaddr(recipient)
    if (
        not recipient
        or len(recipient) > 254
        or address != recipient
        or "@" not in address
        or any(ch.isspace() or ord(ch) < 32 for ch in recipient)
    ):
        raise TemplateContextError("recipient must be a bare email address")


# ---- sending (jobs.md §8.2) -----------------------------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one claimed row: ``sent``, ``failed`` (retry in ``delay`` s) or ``dead``."""

    status: str
    delay: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class ClaimedEmail:
    """The claimed row's values: what the sender needs, detached from the session."""

    id: uuid.UUID
    template: str
    recipient: str
    user_id: uuid.UUID | None
    organization_id: uuid.UUID | None
    context: dict[str, Any]
    attempts: int
    claimed_at: datetime


# The sending path runs hundreds of times a second: it uses Core statements on the table
# (no ORM unit of work or identity map), which costs a fraction of the ORM bulk-update path.
_outbox: Table = EmailOutbox.__table__  # type: ignore[assignment]
_CLAIMED_COLUMNS = [_outbox.c[f.name] for f in fields(ClaimedEmail)]


def claim_email(session: Session, outbox_id: uuid.UUID) -> ClaimedEmail | None:
    """Take the row for one send attempt (``attempts += 1``); None when it is not ours to send.

    Not due, already sent/dead, or claimed by a live worker in the last 5 minutes -> None.
    The caller commits right away, so the attempt counts even if the worker dies mid-send.
    """
    now = func.now()
    c = _outbox.c
    stmt = (
        update(_outbox)
        .where(
            c.id == outbox_id,
            c.status.in_(RETRYABLE),
            c.next_attempt_at <= now,
            or_(c.claimed_at.is_(None), c.claimed_at < now - CLAIM_LEASE),
        )
        .values(claimed_at=now, attempts=c.attempts + 1, updated_at=now)
        .returning(*_CLAIMED_COLUMNS)
    )
    row = session.execute(stmt).one_or_none()
    return ClaimedEmail(**row._mapping) if row is not None else None


def message_id_for(outbox_id: uuid.UUID | str) -> str:
    """``<{outbox id}@{sender domain}>``: the same for every attempt, so duplicates are recognisable."""
    return f"<{outbox_id}@{sender_domain(current_app.config['MAIL_DEFAULT_SENDER'])}>"


def build_email(
    session: Session,
    *,
    outbox_id: uuid.UUID | str,
    template: str,
    recipient: str,
    user_id: uuid.UUID | None,
    organization_id: uuid.UUID | None,
    context: Mapping[str, Any],
) -> OutgoingEmail:
    """Render the message with the branding of ``organization_id`` (platform defaults when None).

    Branding and the user's name come from the lookups orgs and identity register (see ``branding``).
    """
    branding = lookup_branding(session, organization_id)
    values = dict(context)
    if not values.get("user_name") and user_id is not None:
        values["user_name"] = lookup_user_name(session, user_id)
    rendered = render_email(template, values, branding)
    _, sender_address = sender_parts(current_app.config["MAIL_DEFAULT_SENDER"])
    return OutgoingEmail(
        outbox_id=str(outbox_id),
        template=template,
        sender_name=branding.platform_name,
        sender_address=sender_address,
        recipient=recipient,
        reply_to=branding.support_email or None,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(outbox_id),
    )


def send_claimed(session: Session, row: ClaimedEmail) -> SendOutcome:
    """Render and send a row returned by ``claim_email``, then record the outcome (not committed).

    Render errors are permanent (``dead``): rendering again will fail the same way. Backend
    errors are transient (``failed`` + backoff, ``dead`` once attempts run out) or permanent.
    A row claimed more than ``EMAIL_MAX_ATTEMPTS`` times has killed its workers before they
    could record anything (the sweeper re-claims expired claims): it is ``dead`` unsent.
    """
    if row.attempts > current_app.config["EMAIL_MAX_ATTEMPTS"]:
        return mark_dead(session, row, f"gave up after {row.attempts - 1} attempts without an outcome")
    try:
        email = build_email(
            session,
            outbox_id=row.id,
            template=row.template,
            recipient=row.recipient,
            user_id=row.user_id,
            organization_id=row.organization_id,
            context=row.context,
        )
    except (jinja2.TemplateError, TemplateContextError) as exc:
        return mark_dead(session, row, describe_error(exc))
    try:
        delivery = get_backend().send(email)
    except Exception as exc:
        error = exc if isinstance(exc, SendError) else classify(exc)
        if error.transient:
            return mark_failed(session, row, str(error))
        return mark_dead(session, row, str(error))
    return mark_sent(session, row, email, delivery)


def _finish(session: Session, row: ClaimedEmail, **values: Any) -> bool:
    """Record an outcome only if the claim is still ours (same attempt, still sendable)."""
    c = _outbox.c
    result = session.execute(
        update(_outbox)
        .where(c.id == row.id, c.attempts == row.attempts, c.status.in_(RETRYABLE))
        .values(claimed_at=None, updated_at=func.now(), **values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _without_secrets(context: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in context.items() if k not in SECRET_VARIABLES}


def mark_sent(session: Session, row: ClaimedEmail, email: OutgoingEmail, delivery: Delivery) -> SendOutcome:
    _finish(
        session,
        row,
        status="sent",
        sent_at=func.clock_timestamp(),
        subject=email.subject[:255],
        provider_message_id=email.message_id,
        last_error=None,
        context=_without_secrets(row.context),
    )
    log.info(
        "email.sent",
        outbox_id=str(row.id),
        template=row.template,
        recipient=mask_email(row.recipient),
        attempts=row.attempts,
        backend=delivery.backend,
        **({"file": delivery.location} if delivery.location else {}),
    )
    return SendOutcome("sent")


def backoff_seconds(attempts: int) -> int:
    """``min(30 * 2^(attempts - 1), 3600)`` seconds (jobs.md §3)."""
    return min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


def mark_failed(session: Session, row: ClaimedEmail, error: str) -> SendOutcome:
    """A transient failure: retry after the backoff, or ``dead`` once EMAIL_MAX_ATTEMPTS is reached."""
    if row.attempts >= current_app.config["EMAIL_MAX_ATTEMPTS"]:
        return mark_dead(session, row, error)
    delay = backoff_seconds(row.attempts)
    if _finish(
        session,
        row,
        status="failed",
        next_attempt_at=func.now() + timedelta(seconds=delay),
        last_error=error,
    ):
        enqueue_after_commit(session, SEND_TASK, str(row.id), countdown=delay)
    log.warning(
        "email.retry",
        outbox_id=str(row.id),
        template=row.template,
        recipient=mask_email(row.recipient),
        attempts=row.attempts,
        retry_in_seconds=delay,
        error=error,
    )
    return SendOutcome("failed", delay=delay, error=error)


def mark_dead(session: Session, row: ClaimedEmail, error: str) -> SendOutcome:
    """Give up: keep the row (and the reason) for operators; drop the secret links."""
    _finish(session, row, status="dead", last_error=error, context=_without_secrets(row.context))
    log.error(
        "email.dead",
        outbox_id=str(row.id),
        template=row.template,
        recipient=mask_email(row.recipient),
        attempts=row.attempts,
        error=error,
    )
    return SendOutcome("dead", error=error)


# ---- sweeping -----------------------------------------------------------------------------------


def due_outbox_ids(session: Session, limit: int = SWEEP_BATCH) -> list[uuid.UUID]:
    """Rows whose wake-up was lost: ``queued`` for over 60 s, or ``failed`` and due; never a live claim.

    The status/``next_attempt_at`` terms match the partial index ``ix_email_outbox_due``;
    ``queued`` rows have ``next_attempt_at = created_at`` (the column default).
    """
    now = func.now()
    stmt = (
        select(EmailOutbox.id)
        .where(
            EmailOutbox.status.in_(RETRYABLE),
            EmailOutbox.next_attempt_at <= now,
            or_(EmailOutbox.claimed_at.is_(None), EmailOutbox.claimed_at < now - CLAIM_LEASE),
            or_(EmailOutbox.status == "failed", EmailOutbox.created_at < now - SWEEP_QUEUED_AFTER),
        )
        .order_by(EmailOutbox.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def sweep_outbox(session: Session, limit: int = SWEEP_BATCH) -> int:
    """Enqueue ``email.send`` (after commit) for every row ``due_outbox_ids`` finds; the claim dedupes."""
    ids = due_outbox_ids(session, limit)
    for outbox_id in ids:
        enqueue_after_commit(session, SEND_TASK, str(outbox_id))
    if ids:
        log.info("email.swept", count=len(ids))
    return len(ids)


# ---- reading ------------------------------------------------------------------------------------


def list_org_emails(
    session: Session,
    organization_id: uuid.UUID,
    *,
    status: str | None = None,
    template: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> dict[str, Any]:
    """The org's outbox rows, newest first, as the list envelope (dump with ``OutboxEmailSchema``)."""
    stmt = select(EmailOutbox).where(EmailOutbox.organization_id == organization_id)
    if status is not None:
        stmt = stmt.where(EmailOutbox.status == status)
    if template is not None:
        stmt = stmt.where(EmailOutbox.template == template)
    stmt = stmt.order_by(EmailOutbox.created_at.desc(), EmailOutbox.id.desc())
    return paginate(session, stmt, page, per_page)


def preview_email(session: Session, template: str, organization_id: uuid.UUID | None = None) -> OutgoingEmail:
    """``template`` rendered with sample variables and real branding (the ``email-preview`` command)."""
    if template not in TEMPLATES:
        raise TemplateContextError(f"unknown email template {template!r}")
    context = prepare_context(template, sample_context(template))
    return build_email(
        session,
        outbox_id=uuid.UUID(int=0),
        template=template,
        recipient="customer@example.com",
        user_id=None,
        organization_id=organization_id,
        context=context,
    )
