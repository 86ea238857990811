"""``playback.flush_progress`` and ``playback.rollup_daily_stats`` (jobs.md §7.2, §7.3).

Thin loops over ``app.access.progress`` / ``app.access.stats`` that own the commits: each batch
is claimed from Redis, written with one statement, committed, then cleaned up in Redis; a
database error puts the batch back (or merges the counters back) and ends the run.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis
import structlog
from celery import shared_task
from flask import current_app
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app import db
from app.access import progress, stats
from tasks.base import singleton

log = structlog.get_logger(__name__)

MAX_BATCHES = 20
MAX_SECONDS = 10.0


@dataclass
class RunReport:
    batches: int = 0
    entries: int = 0
    failed: bool = False


def flush(
    session: Session,
    client: redis.Redis,
    *,
    batch_size: int = progress.BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
    max_seconds: float = MAX_SECONDS,
) -> RunReport:
    """Up to ``max_batches`` batches or ``max_seconds``: SPOP + fields (one script), one upsert, commit, SREM."""
    report = RunReport()
    deadline = time.monotonic() + max_seconds
    while report.batches < max_batches and time.monotonic() < deadline:
        batch = progress.claim_batch(client, batch_size)
        if not batch.members:
            break
        try:
            progress.write_rows(session, batch.rows)
            session.commit()
        except SQLAlchemyError:
            session.rollback()
            log.warning("playback.flush_failed", batch=len(batch.members), exc_info=True)
            progress.release_batch(client, batch.members)
            report.failed = True
            break
        report.batches += 1
        report.entries += len(batch.rows)
        try:
            progress.forget_flushed(client, batch.members)
        except redis.RedisError:  # per-user sets only speed up the library's own flush
            log.warning("cache.unavailable", cache="playback", action="forget")
    return report


def rollup(
    session: Session,
    client: redis.Redis,
    *,
    batch_size: int = stats.BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
    max_seconds: float = MAX_SECONDS * 5,
) -> RunReport:
    """Merge a crashed run's leftovers, then rename -> upsert -> commit -> delete, batch by batch."""
    report = RunReport()
    stats.merge_leftovers(client)
    run_id = uuid.uuid4().hex
    deadline = time.monotonic() + max_seconds
    while report.batches < max_batches and time.monotonic() < deadline:
        popped, members = stats.claim(client, run_id, batch_size)
        if not popped:
            break
        try:
            counters = stats.read_counters(client, run_id, members)
            stats.write_counters(session, counters)
            session.commit()
        except (SQLAlchemyError, redis.RedisError):
            session.rollback()
            log.warning("playback.rollup_failed", batch=len(members), exc_info=True)
            stats.merge_back(client, run_id, members)
            report.failed = True
            break
        stats.drop_inflight(client, run_id, members)
        report.batches += 1
        report.entries += len(counters)
    return report


def _redis() -> redis.Redis:
    client: redis.Redis = current_app.extensions["redis"]
    return client


@shared_task(name="playback.flush_progress", soft_time_limit=20, time_limit=30)
@singleton("playback.flush_progress", 30)
def flush_progress() -> int:
    try:
        return flush(db.session, _redis()).entries
    except redis.RedisError:
        log.warning("cache.unavailable", cache="playback", action="flush")
        return 0


@shared_task(name="playback.rollup_daily_stats", soft_time_limit=60, time_limit=90)
@singleton("playback.rollup_daily_stats", 90)
def rollup_daily_stats() -> int:
    try:
        return rollup(db.session, _redis()).entries
    except redis.RedisError:
        log.warning("cache.unavailable", cache="playback", action="rollup")
        return 0
