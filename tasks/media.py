"""``media.*`` tasks (jobs.md §3, §6): thin wrappers over ``app.media`` that own the commits.

``media.ingest`` runs ``app.media.ingest.run_ingest``, which commits more than once, by design:
the claim is committed before hours of encoding (so a crash leaves a counted attempt the stall
detector can see), heartbeats run in their own short transactions, and the outcome is one last
transaction. No transaction is open while ffmpeg runs.
"""

from __future__ import annotations

import sys
import uuid

import structlog
from celery import Task, shared_task
from flask import current_app

from app import db
from app.config import Config
from app.media import sweepers
from app.media.ingest import run_ingest
from app.media.job import MediaSettings
from app.storage import get_storage
from app.storage.base import StorageError
from tasks.base import singleton

log = structlog.get_logger(__name__)

PURGE_TRIES = 5  # jobs.md §3: countdown 30 * 2^(n-1) s, 5 tries
STALE_PURGE_TRIES = 3


def _media_time_limits() -> tuple[int, int]:
    """(soft, hard) for ``media.ingest`` from the worker app's config (hard = soft + 300).

    ``tasks.worker`` builds its Flask app before importing the task modules, so its config is
    the one the worker runs with; a bare import (tools, some tests) reads the environment.
    """
    worker = sys.modules.get("tasks.worker")
    flask_app = getattr(worker, "flask_app", None)
    config: Config = flask_app.extensions["codex_config"] if flask_app is not None else Config.from_env()
    return config.MEDIA_TASK_SOFT_TIME_LIMIT, config.media_hard_time_limit


SOFT_LIMIT, HARD_LIMIT = _media_time_limits()


def _parse_id(value: str, task: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        log.error("media.bad_task_argument", task=task)
        return None


# ---- ingest -------------------------------------------------------------------------------


@shared_task(
    name="media.ingest",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_LIMIT,
    time_limit=HARD_LIMIT,
)
def ingest(self: Task, media_id: str) -> str:
    row_id = _parse_id(media_id, "media.ingest")
    if row_id is None:
        return "skipped"
    job_id = self.request.id or f"local-{uuid.uuid4()}"
    return run_ingest(db.session, row_id, job_id)


# ---- purges -------------------------------------------------------------------------------


@shared_task(
    name="media.purge_storage",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=300,
    time_limit=360,
)
def purge_storage(self: Task, media_id: str) -> bool:
    row_id = _parse_id(media_id, "media.purge_storage")
    if row_id is None:
        return False
    session = db.session
    try:
        purged = sweepers.purge_storage(session, row_id, get_storage())
        session.commit()
    except StorageError as exc:
        session.rollback()
        tries = self.request.retries + 1
        if tries >= PURGE_TRIES:
            # recover_stuck enqueues unpurged deleted rows again later.
            log.error("media.purge_failed", media_id=media_id, error=str(exc))
            return False
        raise self.retry(countdown=30 * 2 ** (tries - 1), max_retries=PURGE_TRIES - 1) from exc
    return purged


@shared_task(
    name="media.purge_stale_outputs",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=300,
    time_limit=360,
)
def purge_stale_outputs(self: Task, media_id: str) -> int:
    row_id = _parse_id(media_id, "media.purge_stale_outputs")
    if row_id is None:
        return 0
    session = db.session
    try:
        removed = sweepers.purge_stale_outputs(session, row_id, get_storage())
    except StorageError as exc:
        tries = self.request.retries + 1
        if tries >= STALE_PURGE_TRIES:
            log.warning("media.stale_purge_failed", media_id=media_id, error=str(exc))
            return 0
        raise self.retry(countdown=30, max_retries=STALE_PURGE_TRIES - 1) from exc
    finally:
        session.rollback()  # read-only: nothing to commit
    return len(removed)


# ---- sweepers (jobs.md §5, §6.5) ----------------------------------------------------------


@shared_task(name="media.recover_stuck", soft_time_limit=60, time_limit=90)
@singleton("media.recover_stuck", 90)
def recover_stuck() -> dict[str, int]:
    session = db.session
    report = sweepers.recover_stuck(session, MediaSettings.from_config(current_app.config))
    session.commit()  # publishes the re-enqueued ingests, purges and failure emails
    return {"stalled": report.stalled, "resent": report.resent, "purges": report.purges}


@shared_task(name="media.reap_abandoned_uploads", soft_time_limit=60, time_limit=90)
@singleton("media.reap_abandoned_uploads", 90)
def reap_abandoned_uploads() -> int:
    session = db.session
    reaped = sweepers.reap_abandoned_uploads(session)
    session.commit()
    return len(reaped)
