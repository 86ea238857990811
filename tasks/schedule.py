"""The beat schedule, one place (jobs.md §5). Each periodic task also takes a Redis lock
(``tasks.base.singleton``), so an accidental second beat is harmless."""

from __future__ import annotations

from typing import Any

from app.config import Config


def beat_schedule(config: Config) -> dict[str, Any]:
    """Periodic tasks; each domain adds its entries as its tasks land."""
    schedule: dict[str, Any] = {}
    # A sweep that waited longer than its interval is superseded by the next one.
    schedule["email.sweep_outbox"] = {"task": "email.sweep_outbox", "schedule": 60.0, "options": {"expires": 60}}
    return schedule
