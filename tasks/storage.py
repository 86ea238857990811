"""``storage.delete_object`` (jobs.md §3): best-effort delete of one object (a replaced logo, say)."""

from __future__ import annotations

import structlog
from celery import Task, shared_task

from app.storage import get_storage
from app.storage.base import ObjectNotFound, StorageError

log = structlog.get_logger(__name__)

TRIES = 3
RETRY_SECONDS = 30


@shared_task(name="storage.delete_object", bind=True, soft_time_limit=30, time_limit=45)
def delete_object(self: Task, key: str) -> bool:
    """Delete ``key``; a missing object is success. 3 tries, 30 s apart, then give up (logged)."""
    if not isinstance(key, str) or not key.startswith("orgs/"):
        log.error("storage.bad_task_argument")
        return False
    try:
        get_storage().delete(key)
    except ObjectNotFound:
        return True
    except StorageError as exc:
        tries = self.request.retries + 1
        if tries >= TRIES:
            log.warning("storage.delete_failed", key=key, error=str(exc))
            return False
        raise self.retry(countdown=RETRY_SECONDS, max_retries=TRIES - 1) from exc
    return True
