"""Daily watch statistics: Redis counters rolled up into ``content_daily_stats`` (jobs.md §7.3).

The progress script bumps ``pb:stats:{yyyymmdd}:{content_id}`` (views_started, seconds_watched,
completions) and marks it in ``pb:stats:dirty``. A rollup run takes a batch of dirty members and
*renames* each live hash to ``pb:stats:inflight:{run_id}:{day}:{content}`` in one script, so new
heartbeats start a fresh live hash and nothing is counted twice by two runs; the inflight
counters are added to the day's row (``x = x + EXCLUDED.x``), committed, then deleted. A failed
write merges them back into the live keys; counters left by a crashed run are merged back at the
start of the next one. Re-running the rollup for a day therefore adds nothing that was already
added (a crash between commit and cleanup can count one batch twice: at-least-once, as the spec
allows).

The loop and its commits live in ``tasks/playback.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

import redis
import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session

from app import keys
from app.access.lua import source
from app.extensions import redis_script

log = structlog.get_logger(__name__)

BATCH_SIZE = 500
FIELDS = ("views_started", "seconds_watched", "completions")


@dataclass(frozen=True, slots=True)
class DayCounters:
    content_id: uuid.UUID
    day: date
    views_started: int
    seconds_watched: int
    completions: int


# app/access/lua/stats_claim.lua renames a batch's live counters to the run's inflight keys;
# stats_merge_back.lua adds inflight counters back into the live ones.
_CLAIM_LUA = source("stats_claim")
_MERGE_BACK_LUA = source("stats_merge_back")


def claim(client: redis.Redis, run_id: str, size: int = BATCH_SIZE) -> tuple[int, list[str]]:
    """(members popped from ``pb:stats:dirty``, the ones whose counters were renamed for this run)."""
    popped, *claimed = redis_script(client, _CLAIM_LUA)(
        keys=[keys.STATS_DIRTY], args=[size, run_id, keys.DAILY_STATS_PREFIX, keys.STATS_INFLIGHT_PREFIX]
    )
    return int(popped), [m.decode() if isinstance(m, bytes) else str(m) for m in claimed]


def parse_stats_member(value: str) -> tuple[date, uuid.UUID] | None:
    try:
        day, content = value.split(":", 1)
        return datetime.strptime(day, "%Y%m%d").date(), uuid.UUID(content)
    except ValueError:
        return None


def read_counters(client: redis.Redis, run_id: str, members: list[str]) -> list[DayCounters]:
    pipe = client.pipeline(transaction=False)
    for m in members:
        pipe.hgetall(keys.stats_inflight(run_id, m))
    out: list[DayCounters] = []
    for m, raw in zip(members, pipe.execute(), strict=True):
        parsed = parse_stats_member(m)
        if parsed is None or not raw:
            continue
        data = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        try:
            values = [max(0, int(data.get(f, 0))) for f in FIELDS]
        except ValueError:
            log.warning("playback.bad_counters", member=m)
            continue
        if any(values):
            out.append(DayCounters(parsed[1], parsed[0], *values))
    return out


_UPSERT = text(
    """
    INSERT INTO content_daily_stats AS s
        (content_id, day, organization_id, views_started, seconds_watched, completions, updated_at)
    SELECT v.content_id, v.day, c.organization_id, v.views_started, v.seconds_watched, v.completions, now()
    FROM unnest(
        CAST(:content_ids AS uuid[]), CAST(:days AS date[]), CAST(:views AS integer[]),
        CAST(:seconds AS bigint[]), CAST(:completions AS integer[])
    ) AS v(content_id, day, views_started, seconds_watched, completions)
    JOIN content c ON c.id = v.content_id
    ON CONFLICT (content_id, day) DO UPDATE SET
        views_started = s.views_started + EXCLUDED.views_started,
        seconds_watched = s.seconds_watched + EXCLUDED.seconds_watched,
        completions = s.completions + EXCLUDED.completions,
        updated_at = now()
    """
)


def write_counters(session: Session, counters: list[DayCounters]) -> int:
    """Add the counters to their rows in one statement (content that no longer exists is skipped)."""
    if not counters:
        return 0
    result = session.execute(
        _UPSERT,
        {
            "content_ids": [c.content_id for c in counters],
            "days": [c.day for c in counters],
            "views": [c.views_started for c in counters],
            "seconds": [c.seconds_watched for c in counters],
            "completions": [c.completions for c in counters],
        },
    )
    return int(getattr(result, "rowcount", 0) or 0)


def drop_inflight(client: redis.Redis, run_id: str, members: list[str]) -> None:
    if members:
        client.delete(*(keys.stats_inflight(run_id, m) for m in members))


def merge_back(client: redis.Redis, run_id: str, members: list[str]) -> None:
    """The write failed: put the counters back into the live keys for the next run."""
    args: list[str] = [keys.DAILY_STATS_PREFIX]
    for m in members:
        args += [keys.stats_inflight(run_id, m), m]
    if len(args) > 1:
        redis_script(client, _MERGE_BACK_LUA)(keys=[keys.STATS_DIRTY], args=args)


def merge_leftovers(client: redis.Redis) -> int:
    """Counters a crashed run renamed but never deleted go back into the live keys."""
    args: list[str] = [keys.DAILY_STATS_PREFIX]
    for raw in client.scan_iter(match=f"{keys.STATS_INFLIGHT_PREFIX}*", count=500):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        rest = key[len(keys.STATS_INFLIGHT_PREFIX) :]
        run_id, _, stats_member = rest.partition(":")
        if run_id and stats_member:
            args += [key, stats_member]
    if len(args) > 1:
        redis_script(client, _MERGE_BACK_LUA)(keys=[keys.STATS_DIRTY], args=args)
    return (len(args) - 1) // 2
