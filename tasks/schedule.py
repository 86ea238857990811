"""The beat schedule, one place (jobs.md §5). Each periodic task also takes a Redis lock
(``tasks.base.singleton``), so an accidental second beat is harmless."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from app.config import Config


def beat_schedule(config: Config) -> dict[str, Any]:
    """Periodic tasks; each domain adds its entries as its tasks land."""
    schedule: dict[str, Any] = {}
    # A sweep that waited longer than its interval is superseded by the next one.
    schedule["email.sweep_outbox"] = {"task": "email.sweep_outbox", "schedule": 60.0, "options": {"expires": 60}}
    schedule["payments.sweep_stripe_events"] = {
        "task": "payments.sweep_stripe_events",
        "schedule": 30.0,
        "options": {"expires": 30},
    }
    schedule["payments.sweep_refunds"] = {
        "task": "payments.sweep_refunds",
        "schedule": 60.0,
        "options": {"expires": 60},
    }
    schedule["payments.expire_checkout_sessions"] = {
        "task": "payments.expire_checkout_sessions",
        "schedule": 600.0,
        "options": {"expires": 600},
    }
    schedule["payments.reconcile_checkouts"] = {
        "task": "payments.reconcile_checkouts",
        "schedule": crontab(minute=15),
        "options": {"expires": 3600},
    }
    schedule["media.recover_stuck"] = {"task": "media.recover_stuck", "schedule": 300.0, "options": {"expires": 300}}
    schedule["media.reap_abandoned_uploads"] = {
        "task": "media.reap_abandoned_uploads",
        "schedule": crontab(minute=45),
        "options": {"expires": 3600},
    }
    schedule["maintenance.cleanup"] = {
        "task": "maintenance.cleanup",
        "schedule": crontab(minute=0, hour=3),
        "options": {"expires": 3600},
    }
    schedule["playback.flush_progress"] = {
        "task": "playback.flush_progress",
        "schedule": float(config.PLAYBACK_FLUSH_INTERVAL_SECONDS),
        "options": {"expires": config.PLAYBACK_FLUSH_INTERVAL_SECONDS},
    }
    schedule["playback.rollup_daily_stats"] = {
        "task": "playback.rollup_daily_stats",
        "schedule": 300.0,
        "options": {"expires": 300},
    }
    return schedule
