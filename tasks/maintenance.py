"""``maintenance.cleanup`` (jobs.md §3, §5: daily 03:00): the daily housekeeping run.

Today it sweeps abandoned multipart uploads (api.md §6.1): media still ``uploading`` 24 h after
their last part URL was issued get their upload aborted and become ``failed`` with "The upload
was abandoned.". Thin: the rules live in ``app.media.multipart``.
"""

from __future__ import annotations

from celery import shared_task

from app import db
from app.media import multipart
from app.storage import get_storage
from tasks.base import singleton


@shared_task(name="maintenance.cleanup", soft_time_limit=300, time_limit=360)
@singleton("maintenance.cleanup", 360)
def cleanup() -> dict[str, int]:
    session = db.session
    abandoned = multipart.abandon_stale_uploads(session, get_storage())
    session.commit()
    return {"abandoned_uploads": len(abandoned)}
