"""Media housekeeping (jobs.md §6.5): stalled and lost ingests, abandoned uploads, storage purges.

Functions taking a session never commit; the ``media.*`` tasks own the commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.db import enqueue_after_commit
from app.media import usage
from app.media.ingest import retry_later
from app.media.job import INGEST_TASK, PURGE_TASK, STALLED, Job, MediaSettings
from app.media.models import MediaItem
from app.storage import keys
from app.storage.base import Storage

log = structlog.get_logger(__name__)

RESEND_UPLOADED_AFTER = timedelta(minutes=10)
RESEND_PURGE_AFTER = timedelta(minutes=10)
ABANDONED_UPLOAD_AFTER = timedelta(hours=24)
SWEEP_BATCH = 500


# ---- sweepers and purges (jobs.md §6.5) ----------------------------------------------------


@dataclass(frozen=True)
class RecoveryReport:
    stalled: int
    resent: int
    purges: int


def recover_stuck(session: Session, settings: MediaSettings) -> RecoveryReport:
    """(a) stalled ``processing`` rows -> transient failure "Processing stalled." (guarded by the
    observed job_id and a still-stale heartbeat); (b) ``uploaded`` rows idle for 10 min -> ingest
    again (lost message); (c) deleted, unpurged rows older than 10 min -> purge again."""
    cutoff = func.now() - timedelta(seconds=settings.stuck_after_seconds)
    stalled_rows = session.scalars(
        select(MediaItem)
        .where(MediaItem.status == "processing", MediaItem.deleted_at.is_(None), MediaItem.heartbeat_at < cutoff)
        .order_by(MediaItem.heartbeat_at)
        .limit(SWEEP_BATCH)
    ).all()
    stalled = 0
    for media in stalled_rows:
        if media.job_id is None:
            continue
        job = Job.from_media(media, media.job_id)
        outcome = retry_later(session, job, STALLED, settings, guard=[MediaItem.heartbeat_at < cutoff])
        stalled += outcome != "superseded"
    waiting = session.scalars(
        select(MediaItem.id)
        .where(
            MediaItem.status == "uploaded",
            MediaItem.deleted_at.is_(None),
            MediaItem.updated_at < func.now() - RESEND_UPLOADED_AFTER,
        )
        .order_by(MediaItem.updated_at)
        .limit(SWEEP_BATCH)
    ).all()
    for media_id in waiting:
        enqueue_after_commit(session, INGEST_TASK, str(media_id))
    unpurged = session.scalars(
        select(MediaItem.id)
        .where(
            MediaItem.deleted_at.is_not(None),
            MediaItem.purged_at.is_(None),
            MediaItem.deleted_at < func.now() - RESEND_PURGE_AFTER,
        )
        .order_by(MediaItem.deleted_at)
        .limit(SWEEP_BATCH)
    ).all()
    for media_id in unpurged:
        enqueue_after_commit(session, PURGE_TASK, str(media_id))
    report = RecoveryReport(stalled=stalled, resent=len(waiting), purges=len(unpurged))
    if stalled or waiting or unpurged:
        log.info("media.recover_stuck", stalled=report.stalled, resent=report.resent, purges=report.purges)
    return report


def reap_abandoned_uploads(session: Session) -> list[uuid.UUID]:
    """``uploading`` rows created more than 24 h ago -> soft-deleted + purge enqueued.

    Decision: a row referenced by non-deleted content is left alone, as DELETE would refuse it
    (409 MEDIA_IN_USE). Rows with an open multipart upload are left to the daily sweep
    (``app.media.multipart.abandon_stale_uploads``, api.md §6.1): a large upload may rightly take
    longer than a day, and is abandoned only 24 h after its last part URL was issued.
    """
    in_use = usage.in_use(MediaItem.id)
    ids = list(
        session.scalars(
            update(MediaItem)
            .where(
                MediaItem.status == "uploading",
                MediaItem.deleted_at.is_(None),
                MediaItem.created_at < func.now() - ABANDONED_UPLOAD_AFTER,
                MediaItem.multipart_upload_id.is_(None),
                ~in_use,
            )
            .values(deleted_at=func.now())
            .returning(MediaItem.id)
            .execution_options(synchronize_session=False)
        ).all()
    )
    for media_id in ids:
        enqueue_after_commit(session, PURGE_TASK, str(media_id))
    if ids:
        log.info("media.reaped", count=len(ids))
    return ids


def purge_storage(session: Session, media_id: uuid.UUID, storage: Storage) -> bool:
    """Delete every object of a deleted media item, then set ``purged_at``. False: nothing to do.

    Storage errors propagate (the task retries); the row is only marked once the prefix is gone.
    """
    media = session.get(MediaItem, media_id, populate_existing=True)
    if media is None or media.deleted_at is None or media.purged_at is not None:
        return False
    count = storage.delete_prefix(keys.media_prefix(media.organization_id, media.id))
    session.execute(
        update(MediaItem)
        .where(MediaItem.id == media.id, MediaItem.deleted_at.is_not(None), MediaItem.purged_at.is_(None))
        .values(purged_at=func.now())
        .execution_options(synchronize_session=False)
    )
    log.info("media.purged", media_id=str(media.id), objects=count)
    return True


def purge_stale_outputs(session: Session, media_id: uuid.UUID, storage: Storage) -> list[int]:
    """Delete the outputs of every attempt but the current one (the original is never touched).

    Runs only on a ``ready``, non-deleted row; returns the attempt numbers whose prefixes were removed.
    """
    media = session.get(MediaItem, media_id, populate_existing=True)
    if media is None or media.deleted_at is not None or media.status != "ready" or not media.hls_master_key:
        return []
    current = keys.output_attempt(media.hls_master_key)
    stale = sorted(
        {
            attempt
            for key in storage.list_keys(keys.media_prefix(media.organization_id, media.id))
            if (attempt := keys.output_attempt(key)) is not None and attempt != current
        }
    )
    for attempt in stale:
        for prefix in keys.attempt_prefixes(media.organization_id, media.id, attempt):
            storage.delete_prefix(prefix)
    if stale:
        log.info("media.stale_outputs_purged", media_id=str(media.id), attempts=stale)
    return stale
