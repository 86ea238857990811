"""The ingest state machine (jobs.md §6.1): claim, heartbeat, outcomes and the status transitions.

One ingest attempt, as driven by ``run_ingest`` (which owns the commits; ``tasks.media`` and the
seed call it)::

    claim (commit) -> transcode.process() in a temp dir, heartbeating -> complete (commit)
                                                \\-> record_failure (commit) + discard_attempt

Functions taking a session, other than ``run_ingest``, never commit.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import func, update
from sqlalchemy.orm import Session

from app.db import enqueue_after_commit
from app.identity.models import User
from app.media import transcode, usage
from app.media.job import (
    FAILED_REPEATEDLY,
    INGEST_TASK,
    INTERRUPTED,
    PURGE_STALE_TASK,
    TOO_LONG,
    TRANSCODE_FAILED,
    TRANSIENT_ERRORS,
    Heartbeat,
    IngestCancelled,
    IngestFailure,
    IngestResult,
    Job,
    MediaSettings,
    TransientIngestError,
)
from app.media.models import MediaItem
from app.notifications.service import media_url, queue_email
from app.storage import get_storage
from app.storage.base import ObjectTooLarge, Storage

log = structlog.get_logger(__name__)

RETRY_COUNTDOWN_SECONDS = 120  # transient failure -> back to ``uploaded``, ingest again after this


# ---- claim and heartbeat -------------------------------------------------------------------


def claim(session: Session, media_id: uuid.UUID, job_id: str) -> MediaItem | None:
    """``uploaded -> processing`` (jobs.md §6.1 step 1); None when the row is not ours to process."""
    stmt = (
        update(MediaItem)
        .where(MediaItem.id == media_id, MediaItem.status == "uploaded", MediaItem.deleted_at.is_(None))
        .values(
            status="processing",
            attempts=MediaItem.attempts + 1,
            job_id=job_id,
            processing_started_at=func.now(),
            heartbeat_at=func.now(),
            error_message=None,
        )
        .returning(MediaItem)
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).one_or_none()


def _ours(job: Job) -> list[Any]:
    """The guard of every write an attempt makes: still our claim, still processing, not deleted."""
    return [
        MediaItem.id == job.media_id,
        MediaItem.job_id == job.job_id,
        MediaItem.status == "processing",
        MediaItem.deleted_at.is_(None),
    ]


def heartbeat(session: Session, job: Job) -> bool:
    """Bump ``heartbeat_at``; False when the claim is gone (the caller stops and discards)."""
    result = session.execute(
        update(MediaItem)
        .where(*_ours(job))
        .values(heartbeat_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


# ---- outcomes -----------------------------------------------------------------------------


def complete(session: Session, job: Job, result: IngestResult, settings: MediaSettings) -> bool:
    """``processing -> ready`` pointing at the new keys, + media-ready email + stale-output purge.

    False (nothing written) when the claim is gone: deleted meanwhile, or re-run after a stall.
    """
    stmt = (
        update(MediaItem)
        .where(*_ours(job))
        .values(
            status="ready",
            hls_master_key=result.hls_master_key,
            hls_preview_key=result.hls_preview_key,
            thumbnail_key=result.thumbnail_key,
            waveform_key=result.waveform_key,
            renditions=list(result.renditions),
            duration_seconds=result.duration_seconds,
            width=result.width,
            height=result.height,
            loudness_lufs=None if result.loudness_lufs is None else Decimal(f"{result.loudness_lufs:.2f}"),
            ready_at=func.now(),
            error_message=None,
        )
        .returning(MediaItem)
        .execution_options(populate_existing=True)
    )
    media = session.scalars(stmt).one_or_none()
    if media is None:
        return False
    _email(
        session,
        media,
        "media-ready",
        {"duration": media.duration_seconds},
    )
    enqueue_after_commit(session, PURGE_STALE_TASK, str(media.id))
    usage.media_changed_after_commit(session, media.id)  # content already pointing at it streams at once
    log.info("media.ready", media_id=str(media.id), attempt=job.attempt, renditions=media.renditions)
    return True


def classify(exc: BaseException) -> tuple[str, str] | None:
    """("failed" | "retry", message) for an exception escaping an attempt; None: not ours to handle."""
    if isinstance(exc, IngestFailure):
        return "failed", exc.message
    if isinstance(exc, SoftTimeLimitExceeded):
        return "failed", TOO_LONG
    if isinstance(exc, TransientIngestError):
        return "retry", exc.message
    if isinstance(exc, ObjectTooLarge):
        return "failed", TRANSCODE_FAILED
    if isinstance(exc, TRANSIENT_ERRORS):
        return "retry", INTERRUPTED
    if isinstance(exc, Exception):
        # A bug or an unexpected tool behaviour would recur on every retry: fail now, log loudly.
        return "failed", TRANSCODE_FAILED
    return None


def record_failure(session: Session, job: Job, kind: str, message: str, settings: MediaSettings) -> str:
    """Apply a classified failure; returns the outcome (``failed``, ``retry`` or ``superseded``)."""
    if kind == "retry":
        return retry_later(session, job, message, settings)
    return fail(session, job, message, settings)


def fail(session: Session, job: Job, message: str, settings: MediaSettings, *, guard: Iterable[Any] = ()) -> str:
    """Deterministic failure: ``processing -> failed`` + media-failed email; no automatic retry."""
    stmt = (
        update(MediaItem)
        .where(*_ours(job), *guard)
        .values(status="failed", error_message=message[:500])
        .returning(MediaItem)
        .execution_options(populate_existing=True)
    )
    media = session.scalars(stmt).one_or_none()
    if media is None:
        return "superseded"
    attempts_left = max(0, settings.max_attempts - media.attempts)
    _email(session, media, "media-failed", {"error_message": media.error_message, "attempts_left": attempts_left})
    log.warning("media.failed", media_id=str(media.id), attempt=job.attempt, error_message=message)
    return "failed"


def retry_later(session: Session, job: Job, reason: str, settings: MediaSettings, *, guard: Iterable[Any] = ()) -> str:
    """Transient failure: back to ``uploaded`` and ingest again in 120 s, or ``failed`` when out of attempts."""
    guard = list(guard)
    if job.attempt >= settings.max_attempts:
        return fail(session, job, FAILED_REPEATEDLY, settings, guard=guard)
    result = session.execute(
        update(MediaItem)
        .where(*_ours(job), *guard)
        .values(status="uploaded", error_message=reason[:500])
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return "superseded"
    enqueue_after_commit(session, INGEST_TASK, str(job.media_id), countdown=RETRY_COUNTDOWN_SECONDS)
    log.warning("media.retry_scheduled", media_id=str(job.media_id), attempt=job.attempt, reason=reason)
    return "retry"


def _email(session: Session, media: MediaItem, template: str, extra: Mapping[str, Any]) -> None:
    user = session.get(User, media.created_by)
    if user is None:  # pragma: no cover - RESTRICT foreign key
        return
    queue_email(
        session,
        template,
        recipient=user.email,
        user_id=user.id,
        organization_id=media.organization_id,
        context={"media_title": media.title, "media_url": media_url(media.organization_id, media.id), **extra},
        dedupe_key=f"{template}:{media.id}:{media.attempts}",
    )


# ---- one attempt, end to end ---------------------------------------------------------------


def run_ingest(
    session: Session,
    media_id: uuid.UUID,
    job_id: str,
    *,
    storage: Storage | None = None,
    settings: MediaSettings | None = None,
    heartbeat_sessions: Callable[[], Session] | None = None,
) -> str:
    """One ingest attempt; returns ``skipped``, ``ready``, ``failed``, ``retry``, ``cancelled`` or ``superseded``."""
    settings = settings or MediaSettings.from_config(current_app.config)
    storage = storage or get_storage()
    media = claim(session, media_id, job_id)
    session.commit()
    if media is None:
        log.info("media.ingest_skipped", media_id=str(media_id))
        return "skipped"
    job = Job.from_media(media, job_id)
    factory = heartbeat_sessions or current_app.extensions["db"].sessionmaker

    def beat() -> bool:
        with factory() as hb_session:
            alive = heartbeat(hb_session, job)
            hb_session.commit()
        return alive

    committing = False
    try:
        with tempfile.TemporaryDirectory(prefix="codex-ingest-") as workdir:
            progress = Heartbeat(beat, settings.heartbeat_interval)
            result = transcode.process(job, Path(workdir), storage, settings, progress)
        if not complete(session, job, result, settings):
            session.rollback()
            transcode.discard_attempt(storage, job)
            log.info("media.ingest_superseded", media_id=str(media_id), attempt=job.attempt)
            return "superseded"
        committing = True
        session.commit()  # publishes the media-ready email and the stale-output purge
        return "ready"
    except IngestCancelled:
        session.rollback()
        transcode.discard_attempt(storage, job)
        log.info("media.ingest_cancelled", media_id=str(media_id), attempt=job.attempt)
        return "cancelled"
    except Exception as exc:
        classified = classify(exc)
        if classified is None:  # pragma: no cover - classify handles every Exception
            raise
        kind, message = classified
        detail = getattr(exc, "detail", None)
        if isinstance(exc, IngestFailure | TransientIngestError):
            log.warning("media.ingest_error", media_id=str(media_id), error=message, detail=detail)
        else:
            log.exception("media.ingest_error", media_id=str(media_id), error=type(exc).__name__)
        session.rollback()
        outcome = record_failure(session, job, kind, message, settings)
        session.commit()
        # If the success commit may have gone through (connection lost during COMMIT), the keys
        # could be live: leave them; purge_stale_outputs removes them once another attempt wins.
        if not committing:
            transcode.discard_attempt(storage, job)
        return outcome
