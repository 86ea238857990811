"""Helpers shared by task modules."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app

from app.jobs import beat_lock, release_beat_lock

F = TypeVar("F", bound=Callable[..., Any])


def singleton(task_name: str, hard_limit_seconds: int) -> Callable[[F], F]:
    """Run a periodic task only when ``lock:beat:<task>`` is free (an accidental second beat is harmless)."""

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            client = current_app.extensions["redis"]
            if not beat_lock(client, task_name, hard_limit_seconds):
                return None
            try:
                return func(*args, **kwargs)
            finally:
                release_beat_lock(client, task_name)

        return wrapper  # type: ignore[return-value]

    return decorator
