"""Playback progress: buffered in Redis, flushed to Postgres (jobs.md §7.1, §7.2).

Write path (``PUT /content/{id}/progress``): one Lua script applies the heartbeat atomically —
newest ``client_ts`` wins, ``completed`` is sticky (sent, or position >= 95 % of duration),
the entry is marked dirty (``pb:dirty`` and the per-user ``pb:dirty:u:{user_id}``) and the day's
watch counters are bumped. A missing hash is first initialised from the Postgres row, so a
flushed or restarted Redis never lets an older heartbeat replace newer stored progress; the
script asks for that row only when it needs it (the common case is one Redis round trip and no
database write). If Redis is down the write goes straight to Postgres with the same guards.

Flush: ``claim_batch`` (``SPOP pb:dirty 500``) -> ``read_entries`` -> ``write_batch`` (one
``INSERT … ON CONFLICT DO UPDATE … WHERE playback_progress.client_ts <= EXCLUDED.client_ts``)
-> commit -> ``forget_flushed``; on a database error ``release_batch`` puts the members back.
The loop itself lives in ``tasks/playback.py`` (services never commit).

The furthest position (``max_position_seconds``, the hash's ``max``) rides along: the script
raises it on every heartbeat, even one too old to replace the position, and the upsert keeps the
greater of the row's and the entry's, so it never decreases whatever order heartbeats and
flushes arrive in. It costs the request path nothing (one more hash field in the same script).
Triggers on ``playback_progress`` roll it up for the dashboard's retention curve (migration 0015).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import redis
import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session

from app import errors, keys, ratelimit
from app.access import service
from app.access.cache import access_cache_key
from app.access.lua import source
from app.access.models import PlaybackProgress
from app.content.cache import gen_key
from app.extensions import redis_script, run_script

log = structlog.get_logger(__name__)

HASH_TTL_SECONDS = 7 * 86400
SEEN_TTL_SECONDS = 48 * 3600
FUTURE_SLACK = timedelta(minutes=5)
COMPLETE_RATIO = 0.95
BATCH_SIZE = 500


def member(user_id: uuid.UUID | str, content_id: uuid.UUID | str) -> str:
    return f"{user_id}:{content_id}"


def day_stamp(day: date) -> str:
    return day.strftime("%Y%m%d")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(value: datetime) -> int:
    """Exact integer milliseconds (float timestamps could be off by one after a round trip)."""
    return (value - _EPOCH) // _MS


def from_ms(value: int) -> datetime:
    return _EPOCH + value * _MS


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A validated, normalised write: whole seconds, position clamped, client_ts bounded."""

    position: int
    duration: int
    completed: bool
    client_ts: datetime


def normalise(
    position: float, duration: float, completed: bool, client_ts: datetime | None, now: datetime
) -> Heartbeat:
    """api.md §10: fractions truncated; position > duration clamped; client_ts > 5 min ahead -> now."""
    dur = int(duration)
    pos = min(int(position), dur)
    ts = client_ts or now
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    if ts > now + FUTURE_SLACK:
        ts = now
    ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)  # Redis keeps milliseconds
    return Heartbeat(pos, dur, bool(completed), ts)


@dataclass(frozen=True, slots=True)
class Entry:
    """One (user, content) progress, from the Redis hash or the Postgres row."""

    user_id: uuid.UUID
    content_id: uuid.UUID
    position: int
    duration: int
    completed: bool
    completed_at: datetime | None
    client_ts: datetime
    updated_at: datetime | None
    furthest: int = 0  # the furthest position known to this entry (the upsert keeps the greater)

    @property
    def percent_complete(self) -> int:
        return min(100, round(100 * self.position / self.duration)) if self.duration else 0

    def as_progress(self) -> dict[str, Any]:
        """The api.md §1 Progress object."""
        return {
            "content_id": self.content_id,
            "position_seconds": self.position,
            "duration_seconds": self.duration,
            "completed": self.completed,
            "percent_complete": self.percent_complete,
            "client_ts": self.client_ts,
            "updated_at": self.updated_at,
        }


def entry_from_row(row: PlaybackProgress) -> Entry:
    return Entry(
        row.user_id,
        row.content_id,
        row.position_seconds,
        row.duration_seconds,
        row.completed,
        row.completed_at,
        row.client_ts,
        row.updated_at,
        row.max_position_seconds,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_from_hash(user_id: uuid.UUID, content_id: uuid.UUID, raw: dict[Any, Any]) -> Entry | None:
    """Parse ``pb:p:…``; None for a missing or unreadable hash (it is then skipped, never guessed)."""
    if not raw:
        return None
    data = {_text(k): _text(v) for k, v in raw.items()}
    try:
        completed_at = data.get("completed_at") or ""
        updated = data.get("upd") or ""
        position = int(float(data["pos"]))
        return Entry(
            user_id,
            content_id,
            position,
            int(float(data["dur"])),
            data.get("completed") == "1",
            from_ms(int(completed_at)) if completed_at else None,
            from_ms(int(data["ts"])),
            from_ms(int(updated)) if updated else None,
            max(position, int(float(data.get("max") or 0))),
        )
    except (KeyError, ValueError):
        log.warning("playback.bad_entry", user_id=str(user_id), content_id=str(content_id))
        return None


# ---- write path ---------------------------------------------------------------------------------

# The scripts (app/access/lua/*.lua; each file's header gives its KEYS, ARGV and answers).
# apply.lua applies one heartbeat; write.lua runs it alone (``record``), checked_write.lua after
# checking the snapshot's generation token and the access entry (``record_heartbeat``), which it
# extends when little of its TTL is left (refresh.lua, the sliding TTL of app.access.service).
_WRITE_LUA = source("apply", "write")
_CHECKED_WRITE_LUA = service.ACCESS_LUA_CONSTANTS + source("apply", "refresh", "checked_write")
# checked_write.lua after the request's rate limits, in the same call (app/ratelimit ``guard``):
# the first run of a request whose limits are still to count; a run again within the request
# (after a database read) is the plain script, so a heartbeat is counted once.
_LIMITED_WRITE_LUA = ratelimit.guard(_CHECKED_WRITE_LUA)


def _write_keys(user_id: uuid.UUID, content_id: uuid.UUID, day: str) -> list[str]:
    return [
        keys.progress(user_id, content_id),
        keys.PROGRESS_DIRTY,
        keys.user_dirty(user_id),
        keys.progress_seen(day, content_id, user_id),
        keys.daily_stats(day, content_id),
        keys.STATS_DIRTY,
    ]


def _write_args(heartbeat: Heartbeat, now: datetime, strings: tuple[str, str, str, str]) -> list[Any]:
    """ARGV 1-11; ``strings``: the organization id, member, content id and stats member."""
    org, member_, content, stats_member = strings
    return [
        heartbeat.position,
        heartbeat.duration,
        1 if heartbeat.completed else 0,
        to_ms(heartbeat.client_ts),
        org,
        to_ms(now),
        member_,
        content,
        stats_member,
        HASH_TTL_SECONDS,
        SEEN_TTL_SECONDS,
    ]


def _init_args(session: Session, user_id: uuid.UUID, content_id: uuid.UUID) -> list[Any]:
    """ARGV 12-17 when the script asked for the Postgres row (its hash was missing)."""
    row = session.get(PlaybackProgress, (user_id, content_id))
    if row is None:
        return ["none", "", "", "", "", ""]
    return [
        "row",
        row.position_seconds,
        row.duration_seconds,
        1 if row.completed else 0,
        to_ms(row.completed_at) if row.completed_at else "",
        to_ms(row.client_ts),
    ]


_NEED = ["need", "", "", "", "", ""]


def _write_database(
    session: Session, user_id: uuid.UUID, content_id: uuid.UUID, heartbeat: Heartbeat, now: datetime
) -> str:
    """Redis is down: the same guards, straight to Postgres (the caller commits)."""
    log.warning("cache.unavailable", cache="playback", action="progress_write")
    completed = heartbeat.completed or heartbeat.position >= COMPLETE_RATIO * heartbeat.duration
    entry = Entry(
        user_id, content_id, heartbeat.position, heartbeat.duration, completed, now if completed else None,
        heartbeat.client_ts, now, heartbeat.position,
    )  # fmt: skip
    write_batch(session, [entry])
    return "database"


def record(
    session: Session,
    client: redis.Redis,
    *,
    user_id: uuid.UUID,
    content_id: uuid.UUID,
    organization_id: uuid.UUID,
    heartbeat: Heartbeat,
    now: datetime,
) -> str:
    """Apply one heartbeat (no access check); returns ``applied``, ``ignored`` or ``database`` (Redis was down)."""
    day = day_stamp(now.date())
    names = _write_keys(user_id, content_id, day)
    args = _write_args(heartbeat, now, _heartbeat_strings(user_id, content_id, organization_id, day)[1])
    try:
        script = redis_script(client, _WRITE_LUA)
        result = script(keys=names, args=[*args, "need"])
        if result == -1:
            result = script(keys=names, args=[*args, *_init_args(session, user_id, content_id)])
    except redis.RedisError:
        return _write_database(session, user_id, content_id, heartbeat, now)
    return "applied" if result == 1 else "ignored"


_MAX_ROUNDS = 6  # a cold request needs three (snapshot, access entry, progress row); the rest is slack


@lru_cache(maxsize=4096)
def _heartbeat_strings(
    user_id: uuid.UUID, content_id: uuid.UUID, organization_id: uuid.UUID, day: str
) -> tuple[tuple[str, ...], tuple[str, str, str, str]]:
    """The script's keys and its string arguments (5, 7, 8, 9) for one viewer of one item on
    one day: the same on every heartbeat of a playback, and a dozen UUID formattings to build."""
    names = (*_write_keys(user_id, content_id, day), access_cache_key(user_id, content_id), gen_key(content_id))
    return names, (str(organization_id), member(user_id, content_id), str(content_id), f"{day}:{content_id}")


def _checked_write(
    client: redis.Redis,
    user_id: uuid.UUID,
    content_id: uuid.UUID,
    snapshot: service.Snapshot,
    heartbeat: Heartbeat,
    now: datetime,
    init: list[Any] = _NEED,
    db_reason: str = "",
    limits: ratelimit.Bound | None = None,
) -> tuple[ratelimit.Outcome | None, list[Any] | None]:
    """One run of ``_CHECKED_WRITE_LUA`` (with ``limits``: after them, ``_LIMITED_WRITE_LUA``):
    the limits' outcome (None without limits) and ``[code, *rest]`` as the script returns it
    (None when the limits refused the request: the script did not run)."""
    names, strings = _heartbeat_strings(user_id, content_id, snapshot.meta.organization_id, day_stamp(now.date()))
    args = [*_write_args(heartbeat, now, strings), *init, snapshot.gen, snapshot.permitted, db_reason]
    if limits is None:
        return None, run_script(redis_script(client, _CHECKED_WRITE_LUA), names, args)
    limit_keys, limit_args = limits.tail()
    reply = run_script(redis_script(client, _LIMITED_WRITE_LUA), [*names, *limit_keys], [*args, *limit_args])
    return ratelimit.split(reply)


def record_heartbeat(
    session: Session,
    client: redis.Redis,
    *,
    user_id: uuid.UUID,
    content_id: uuid.UUID,
    heartbeat: Heartbeat,
    now: datetime,
    limits: ratelimit.Bound | None = None,
    counted: Callable[[ratelimit.Outcome | None], None] | None = None,
) -> str:
    """``PUT /content/{id}/progress``: the checks of ``service.playable`` (404, then 403
    ``ACCESS_DENIED``) and the write, in one script call when warm.

    The process's content snapshot says which cached access reasons permit the write; the script
    checks the snapshot's generation token and the access entry and applies the heartbeat in the
    same round trip. Anything it cannot decide (stale snapshot, access entry or progress hash
    missing) comes back to be resolved from Postgres, then the script runs again.

    ``limits``: the request's rate limits, checked first in the script's first run (only there);
    ``counted`` receives their outcome (and raises to refuse the request: nothing was written)."""
    snapshot = service.cached_snapshot(content_id)
    init, db_reason = _NEED, ""
    try:
        for _ in range(_MAX_ROUNDS):
            if snapshot is None:
                snapshot = service.load_snapshot(session, content_id, service.gen_of(client.get(gen_key(content_id))))
            outcome, result = _checked_write(
                client, user_id, content_id, snapshot, heartbeat, now, init, db_reason, limits
            )
            if limits is not None:
                limits = None  # (counted once: the runs that follow are the plain script)
                if counted is not None:
                    counted(outcome)
            if result is None:  # refused by the limits (``counted`` did not raise)
                raise errors.RateLimited()
            code, *rest = result
            if code == -4:  # the content changed since the snapshot was taken
                snapshot = None
            elif code == -2:
                db_reason = service.entitlement(session, client, user_id, snapshot.meta)
            elif code == -3:
                reason = service.decode_reason(rest[0])
                if reason is None:  # an unreadable access entry: replace it from Postgres
                    db_reason = service.entitlement(session, client, user_id, snapshot.meta)
                    continue
                service.decide_playable(reason, snapshot.meta)  # 404 when not visible to the caller
                raise service.AccessDenied()
            elif code == -1:
                init = _init_args(session, user_id, content_id)
            else:
                return "applied" if code == 1 else "ignored"
    except redis.RedisError:
        if limits is not None:  # Redis failed before the limits were counted: let it through
            ratelimit.unavailable()
        if not service.visible_content(session, user_id, content_id).decision.has_access:
            raise service.AccessDenied() from None
        return _write_database(session, user_id, content_id, heartbeat, now)
    raise errors.ServiceUnavailable("redis", "The heartbeat could not be recorded; try again.")


def record_warm_heartbeat(
    client: redis.Redis,
    *,
    user_id: uuid.UUID,
    content_id: uuid.UUID,
    heartbeat: Heartbeat,
    now: datetime,
    limits: ratelimit.Bound | None = None,
) -> tuple[str | None, ratelimit.Outcome | None]:
    """``record_heartbeat``'s first round alone, for app/access/fast_path.py: ``applied`` or
    ``ignored`` when this process holds the content's snapshot and the script decided in one call;
    None when it did not (no snapshot, stale snapshot, access entry or progress hash missing, not
    permitted, or refused by ``limits``): nothing was written, and ``record_heartbeat`` settles
    the request. With it, the outcome of ``limits`` (None when they were not checked: no snapshot).
    Redis errors propagate (nothing, or exactly this heartbeat, was applied and counted; applying
    it again is a no-op)."""
    snapshot = service.cached_snapshot(content_id)
    if snapshot is None:
        return None, None
    outcome, result = _checked_write(client, user_id, content_id, snapshot, heartbeat, now, limits=limits)
    code = result[0] if result is not None else None
    return ("applied" if code == 1 else "ignored" if code == 0 else None), outcome


def read(session: Session, client: redis.Redis, user_id: uuid.UUID, content_id: uuid.UUID) -> Entry | None:
    """Redis first (it holds anything not yet flushed), then Postgres."""
    try:
        raw = client.hgetall(keys.progress(user_id, content_id))
    except redis.RedisError:
        log.warning("cache.unavailable", cache="playback", action="progress_read")
        raw = {}
    entry = entry_from_hash(user_id, content_id, raw)
    if entry is not None:
        return entry
    row = session.get(PlaybackProgress, (user_id, content_id))
    return entry_from_row(row) if row is not None else None


# ---- flush --------------------------------------------------------------------------------------

_UPSERT = text(
    """
    INSERT INTO playback_progress AS p
        (user_id, content_id, position_seconds, max_position_seconds, duration_seconds, completed, completed_at,
         client_ts, created_at, updated_at)
    SELECT v.user_id, v.content_id, v.position_seconds,
           LEAST(GREATEST(v.max_position_seconds, v.position_seconds), v.duration_seconds),
           v.duration_seconds, v.completed,
           timestamptz 'epoch' + v.completed_at_ms * interval '1 millisecond',
           timestamptz 'epoch' + v.client_ts_ms * interval '1 millisecond', now(), now()
    FROM unnest(
        CAST(:user_ids AS uuid[]), CAST(:content_ids AS uuid[]), CAST(:positions AS integer[]),
        CAST(:maxes AS integer[]), CAST(:durations AS integer[]), CAST(:completed AS boolean[]),
        CAST(:completed_at_ms AS bigint[]), CAST(:client_ts_ms AS bigint[])
    ) AS v(user_id, content_id, position_seconds, max_position_seconds, duration_seconds, completed,
           completed_at_ms, client_ts_ms)
    WHERE EXISTS (SELECT 1 FROM content c WHERE c.id = v.content_id)
      AND EXISTS (SELECT 1 FROM users u WHERE u.id = v.user_id)
    ON CONFLICT (user_id, content_id) DO UPDATE SET
        position_seconds = CASE WHEN p.client_ts <= EXCLUDED.client_ts
                           THEN EXCLUDED.position_seconds ELSE p.position_seconds END,
        duration_seconds = CASE WHEN p.client_ts <= EXCLUDED.client_ts
                           THEN EXCLUDED.duration_seconds ELSE p.duration_seconds END,
        client_ts = GREATEST(p.client_ts, EXCLUDED.client_ts),
        completed = p.completed OR (p.client_ts <= EXCLUDED.client_ts AND EXCLUDED.completed),
        completed_at = CASE WHEN p.client_ts <= EXCLUDED.client_ts
                       THEN COALESCE(p.completed_at, EXCLUDED.completed_at) ELSE p.completed_at END,
        max_position_seconds = GREATEST(p.max_position_seconds, EXCLUDED.max_position_seconds),
        updated_at = now()
    WHERE p.client_ts <= EXCLUDED.client_ts OR p.max_position_seconds < EXCLUDED.max_position_seconds
    """
)


@dataclass
class Rows:
    """A batch in columns, as the upsert binds them (ids as canonical strings, times as ms)."""

    user_ids: list[str] = field(default_factory=list)
    content_ids: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    maxes: list[int] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)
    completed: list[bool] = field(default_factory=list)
    completed_at_ms: list[int | None] = field(default_factory=list)
    client_ts_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.user_ids)

    def add(
        self, user_id: str, content_id: str, pos: int, dur: int, done: bool, done_ms: int | None, ts: int,
        furthest: int = 0,
    ) -> None:  # fmt: skip
        self.user_ids.append(user_id)
        self.content_ids.append(content_id)
        self.positions.append(pos)
        self.maxes.append(max(pos, furthest))
        self.durations.append(dur)
        self.completed.append(done)
        self.completed_at_ms.append(done_ms)
        self.client_ts_ms.append(ts)


def write_rows(session: Session, rows: Rows) -> int:
    """One statement for the whole batch; an older entry never replaces a newer stored one, but
    still raises the furthest position (which never decreases, and is clamped to the duration).

    Rows whose content or user no longer exists are skipped. Returns the rows written."""
    if not rows:
        return 0
    result = session.execute(_UPSERT, vars(rows))
    return int(getattr(result, "rowcount", 0) or 0)


def write_batch(session: Session, entries: list[Entry]) -> int:
    rows = Rows()
    for e in entries:
        done_ms = to_ms(e.completed_at) if e.completed_at else None
        rows.add(
            str(e.user_id), str(e.content_id), e.position, e.duration, e.completed, done_ms, to_ms(e.client_ts),
            e.furthest,
        )  # fmt: skip
    return write_rows(session, rows)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# fetch.lua reads one member's fields as one line; claim.lua pops a batch and reads it,
# read.lua reads given members (the library's flush of one user).
_CLAIM_LUA = source("fetch", "claim")
_READ_LUA = source("fetch", "read")


@dataclass
class Batch:
    members: list[str]  # as popped (all of them, readable or not): what to put back on failure
    rows: Rows


def _parse_lines(lines: list[Any]) -> Batch:
    members: list[str] = []
    rows = Rows()
    for raw in lines:
        line = _text(raw)
        member_, _, rest = line.partition("|")
        members.append(member_)
        user_id, _, content_id = member_.partition(":")
        parts = rest.split("|")
        if len(parts) != 6 or not _UUID.fullmatch(user_id) or not _UUID.fullmatch(content_id):
            log.warning("playback.bad_entry", member=member_[:100])
            continue
        pos, dur, done, done_at, ts, furthest = parts
        try:
            rows.add(user_id, content_id, int(float(pos)), int(float(dur)), done == "1",
                     int(done_at) if done_at else None, int(ts), int(furthest) if furthest else 0)  # fmt: skip
        except ValueError:  # an expired or unreadable hash: skipped, never guessed
            continue
    return Batch(members, rows)


def claim_batch(client: redis.Redis, size: int = BATCH_SIZE) -> Batch:
    """``SPOP pb:dirty <size>`` with every entry's fields: the members are ours until flushed or released."""
    return _parse_lines(redis_script(client, _CLAIM_LUA)(keys=[keys.PROGRESS_DIRTY], args=[size, keys.PROGRESS_PREFIX]))


def read_rows(client: redis.Redis, members: list[str]) -> Batch:
    if not members:
        return Batch([], Rows())
    return _parse_lines(redis_script(client, _READ_LUA)(keys=[], args=[keys.PROGRESS_PREFIX, *members]))


def release_batch(client: redis.Redis, members: list[str]) -> None:
    """The database write failed: the members are dirty again for the next run."""
    if members:
        client.sadd(keys.PROGRESS_DIRTY, *members)


# After a committed batch: each member leaves its user's dirty set unless dirty again meanwhile.
_FORGET_LUA = source("forget")


def forget_flushed(client: redis.Redis, members: list[str]) -> None:
    if members:
        redis_script(client, _FORGET_LUA)(keys=[keys.PROGRESS_DIRTY], args=[keys.USER_DIRTY_PREFIX, *members])


# ---- one user's entries (the library flushes the caller's buffer first, api.md §10) ---------

# After the library's flush of one user: entries still holding what was flushed are clean again.
_FORGET_USER_LUA = source("forget_user")


def flush_user(session: Session, client: redis.Redis, user_id: uuid.UUID) -> Rows:
    """Write the user's buffered entries (no commit); pass the result to ``forget_user_flushed``
    after the commit. Redis down: nothing to flush from here."""
    try:
        content_ids = [_text(c) for c in client.smembers(keys.user_dirty(user_id))]
        rows = read_rows(client, [member(user_id, c) for c in content_ids]).rows
    except redis.RedisError:
        log.warning("cache.unavailable", cache="playback", action="flush_user")
        return Rows()
    write_rows(session, rows)
    return rows


def forget_user_flushed(client: redis.Redis, user_id: uuid.UUID, rows: Rows) -> None:
    if not rows:
        return
    args: list[Any] = [keys.PROGRESS_PREFIX, str(user_id)]
    for content_id, ts, pos, done, furthest in zip(
        rows.content_ids, rows.client_ts_ms, rows.positions, rows.completed, rows.maxes, strict=True
    ):
        args += [content_id, str(ts), pos, "1" if done else "0", furthest]
    try:
        redis_script(client, _FORGET_USER_LUA)(keys=[keys.PROGRESS_DIRTY, keys.user_dirty(user_id)], args=args)
    except redis.RedisError:
        log.warning("cache.unavailable", cache="playback", action="forget_user")
