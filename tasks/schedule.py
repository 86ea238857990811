"""The beat schedule, one place (jobs.md §5). Each periodic task also takes a Redis lock
(``tasks.base.singleton``), so an accidental second beat is harmless."""

from __future__ import annotations

from typing import Any

from app.config import Config


def beat_schedule(config: Config) -> dict[str, Any]:
    """Periodic tasks; each domain adds its entries as its tasks land."""
    schedule: dict[str, Any] = {}
    return schedule
