"""``celery -A tests.e2e.fastclock worker|beat``: the real worker app with its clocks compressed.

The recovery paths (claim leases, "lost message" sweeps, retry countdowns, beat intervals) wait
minutes in production; a test that kills workers cannot wait that long. This module imports
``tasks.worker`` unchanged and only shortens those durations, read at call time from module
globals, so every code path (claims, guards, sweeps, backoff) runs exactly as in production,
just sooner. ``FASTCLOCK_SECONDS`` (default 2) is the beat interval; leases are a few of those.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import tasks.base
import tasks.worker
from app.commerce import processing, refunds
from app.media import ingest, sweepers
from app.media.job import MediaSettings
from app.notifications import service as outbox

TICK = float(os.environ.get("FASTCLOCK_SECONDS", "2"))
LEASE = timedelta(seconds=4 * TICK)  # a claim older than this belongs to a dead worker

# Stripe events (jobs.md §4.5): stale claims, lost wake-ups, retry backoff.
# The sweeps keep production's proportions: a row waits 5 sweep intervals before the sweeper
# assumes its message was lost, and one sweep enqueues what the worker can take in an interval
# (production: 500 every 30 s); otherwise a backlog would be re-enqueued faster than it drains.
SWEEP_BATCH = 50
processing.CLAIM_LEASE = LEASE
processing.SWEEP_RECEIVED_AFTER = timedelta(seconds=5 * TICK)
processing.sweep_events.__defaults__ = (SWEEP_BATCH,)
# Backoff 1, 2, 4, ... capped at 15 ticks: an event still gives up after STRIPE_EVENT_MAX_ATTEMPTS,
# but not before a backlog of a few thousand events has drained (production: hours of backoff).
processing.BACKOFF_BASE_SECONDS = 1
processing.BACKOFF_MAX_SECONDS = int(15 * TICK)
refunds.SWEEP_AFTER = timedelta(seconds=5 * TICK)
refunds.SUBMIT_BACKOFF_SECONDS = 1

# Email outbox (jobs.md §8.2).
outbox.CLAIM_LEASE = LEASE
outbox.SWEEP_QUEUED_AFTER = timedelta(seconds=5 * TICK)
outbox.sweep_outbox.__defaults__ = (SWEEP_BATCH,)
outbox.BACKOFF_BASE_SECONDS = 1
outbox.BACKOFF_MAX_SECONDS = int(15 * TICK)

# Media (jobs.md §6.5): MEDIA_STUCK_AFTER_SECONDS comes from the environment; heartbeats must be
# well inside it, so they beat every TICK / 2 seconds.
ingest.RETRY_COUNTDOWN_SECONDS = 1
sweepers.RESEND_UPLOADED_AFTER = timedelta(seconds=2 * TICK)
sweepers.RESEND_PURGE_AFTER = timedelta(seconds=2 * TICK)
_from_config = MediaSettings.from_config.__func__  # type: ignore[attr-defined]


def _fast_settings(cls: type[MediaSettings], config: Any, **overrides: Any) -> MediaSettings:
    overrides.setdefault("heartbeat_interval", TICK / 2)
    result: MediaSettings = _from_config(cls, config, **overrides)
    return result


MediaSettings.from_config = classmethod(_fast_settings)  # type: ignore[method-assign,assignment]

# Beat locks: a sweeper killed while holding its lock would block the next runs for its whole
# hard limit (45-90 s); cap the lock at a few ticks.
_beat_lock = tasks.base.beat_lock
tasks.base.beat_lock = lambda client, name, ttl: _beat_lock(client, name, min(ttl, int(3 * TICK)))

celery = tasks.worker.celery
# Every interval job every TICK; the hourly/daily crontab jobs (reconciliation, reaping) are left out.
celery.conf.beat_schedule = {
    name: {**entry, "schedule": TICK, "options": {**entry.get("options", {}), "expires": 2 * TICK}}
    for name, entry in celery.conf.beat_schedule.items()
    if isinstance(entry["schedule"], int | float)
}
