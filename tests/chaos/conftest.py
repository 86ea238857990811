"""Chaos fixtures: a real stack (private Redis, gunicorn, Celery worker + beat with compressed
clocks) on the per-run test database, a killer that SIGKILLs the worker, and the scale knob.

``CHAOS_SCALE=full`` (``make chaos``) runs the issue's sizes; the default is the short version
that ``make test`` runs (one kill, one Redis restart, well under a minute each).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.e2e.harness import Stack, Supervisor, running_stack

FULL = os.environ.get("CHAOS_SCALE", "short") == "full"


@dataclass(frozen=True)
class Scale:
    deliveries: int  # webhook deliveries in all, duplicates included
    emails: int
    clips: int
    kill_every: float  # seconds between worker kills while the load runs
    max_kills: int
    media_kills: int
    settle_timeout: float  # how long the pipeline may take to become quiescent


SCALE = (
    Scale(deliveries=2000, emails=600, clips=4, kill_every=8.0, max_kills=1000, media_kills=3, settle_timeout=600.0)
    if FULL
    else Scale(deliveries=150, emails=60, clips=2, kill_every=0.5, max_kills=1, media_kills=1, settle_timeout=120.0)
)


@pytest.fixture()
def scale() -> Scale:
    return SCALE


@pytest.fixture()
def chaos_stack(
    committed_db: Flask, database_url: str, storage_root: Path, smtp_server: Any, tmp_path: Path
) -> Iterator[Stack]:
    """Redis of its own, every process stopped (and its log shown) at the end, pass or fail."""
    with running_stack(
        tmp_path,
        database_url,
        storage_root,
        smtp_port=smtp_server.port,
        fast_clocks=True,
        EMAIL_MAX_ATTEMPTS="10",
        MEDIA_STUCK_AFTER_SECONDS="10",
        MEDIA_MAX_ATTEMPTS="10",
    ) as stack:
        yield stack


@dataclass
class Killer:
    """SIGKILLs the supervised worker at most ``limit`` times, ``every`` seconds apart (jittered),
    each time only once ``ready()`` says there is work in flight and, with ``done`` (units of work
    finished so far), once the restarted worker finished ``min_progress`` more: however slow the
    machine, the pipeline moves between kills, so the test measures recovery, not starvation."""

    supervisor: Supervisor
    every: float
    limit: int
    ready: Callable[[], bool] = lambda: True
    done: Callable[[], int] | None = None
    min_progress: int = 0
    kills: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Killer:
        self._thread = threading.Thread(target=self._run, name="killer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        rng = random.Random()
        gap = self.every * rng.uniform(0.6, 1.4)
        last = time.monotonic()
        done_then = self.done() if self.done else 0
        while self.kills < self.limit and not self._stop.wait(0.1):
            if time.monotonic() - last < gap or not self.ready():  # nothing in flight: a kill proves nothing
                continue
            if self.done is not None and self.done() - done_then < self.min_progress:
                continue
            self.supervisor.kill()
            self.kills += 1
            last, gap = time.monotonic(), self.every * rng.uniform(0.6, 1.4)
            done_then = self.done() if self.done else 0
