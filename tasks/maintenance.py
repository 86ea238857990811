"""``maintenance.cleanup`` (jobs.md §3, §5, §9: daily 03:00): the daily housekeeping run.

- sessions and verification tokens spent more than 7 days ago are deleted
  (``app.identity.retention``), ``sent``/``dead`` emails last updated more than 180 days ago
  (``app.notifications.retention``); Stripe events, purchases, grants, checkout sessions and
  audit events are kept;
- abandoned multipart uploads (api.md §6.1): media still ``uploading`` 24 h after their last part
  URL was issued get their upload aborted and become ``failed`` with "The upload was abandoned."
  (``app.media.multipart``); on local storage, discarded upload directories whose removal a
  process exit interrupted (``.gone-*``, untouched for an hour) are removed.

Thin: the rules live in those modules. Each part commits on its own, so a storage error in the
upload sweep does not undo the deletes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from celery import shared_task

from app import db
from app.identity import retention as identity_retention
from app.media import multipart
from app.notifications import retention as email_retention
from app.storage import get_storage
from tasks.base import singleton

LEFTOVER_AGE_SECONDS = 3600  # a discarded directory's own thread is done long before


@shared_task(name="maintenance.cleanup", soft_time_limit=300, time_limit=360)
@singleton("maintenance.cleanup", 360)
def cleanup() -> dict[str, int]:
    session = db.session
    now = datetime.now(UTC)
    counts = identity_retention.delete_spent(session, now)
    counts["emails"] = email_retention.delete_finished(session, now)
    session.commit()
    storage = get_storage()
    abandoned = multipart.abandon_stale_uploads(session, storage)
    session.commit()
    leftovers = storage.sweep_leftovers(LEFTOVER_AGE_SECONDS)
    return {**counts, "abandoned_uploads": len(abandoned), "storage_leftovers": leftovers}
