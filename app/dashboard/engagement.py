"""Content engagement (api.md §11): which lessons keep their audience. Never commits.

``viewers`` are the users with progress on the item; each has a furthest position
(``playback_progress.max_position_seconds``, never lowered, clamped to the duration the player
reported). ``retention[k]`` (k = 0..20) is the share of viewers whose furthest position reached
k x 5 % of that duration, so ``retention[0]`` is 1.0 whenever there is a viewer and the curve never
rises. ``average_percent_watched`` is the mean of furthest / duration, in percent;
``completions`` the viewers whose progress is completed (sticky), ``completion_rate`` their share.
Shares are rounded to 4 places, the percentage to 2; with no viewer every figure is 0.

Where the figures come from: the viewer figures from ``dashboard_content_retention`` (21 rows per
item, kept by triggers on ``playback_progress`` in the flush's own transaction: migration 0015),
so they cost the same for ten viewers or a million and lag the heartbeats by at most one flush
interval. ``seconds_watched`` (all time) and the ``daily`` rows (``start``..``end``, zero-filled)
come from ``content_daily_stats``, whose primary key ``(content_id, day)`` answers both.

Who may read: managers for any content of the org, creators for content they created (the one
dashboard figure a creator sees); content of another org or deleted is 404 ``CONTENT_NOT_FOUND``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app.access.models import ContentDailyStats
from app.content.models import Content
from app.dashboard.models import ContentRetention
from app.dashboard.service import day_series
from app.errors import Forbidden
from app.http import not_found
from app.media.models import MediaItem
from app.orgs.access import OrgAccess

BUCKETS = 20  # 5 % steps: retention has BUCKETS + 1 points, 0 % .. 100 %
MICROS = 1_000_000  # fraction_micros: each viewer's furthest / duration, in millionths
MANAGER = "admin"


@dataclass(frozen=True, slots=True)
class Audience:
    """The viewer figures of one item: viewers per bucket of furthest position (index 0..20)."""

    buckets: tuple[int, ...]
    completions: int
    fraction_micros: int

    @property
    def viewers(self) -> int:
        return sum(self.buckets)

    def retention(self) -> list[dict[str, Any]]:
        """``[{percent, viewers_fraction}]`` for 0, 5, .., 100 %: viewers in bucket >= k over all."""
        total = self.viewers
        points = []
        reached = total
        for k in range(BUCKETS + 1):
            points.append({"percent": k * 100 // BUCKETS, "viewers_fraction": _ratio(reached, total)})
            reached -= self.buckets[k]
        return points

    @property
    def completion_rate(self) -> float:
        return _ratio(self.completions, self.viewers)

    @property
    def average_percent_watched(self) -> float:
        total = self.viewers
        return round(100 * self.fraction_micros / (MICROS * total), 2) if total else 0.0


def _ratio(part: int, whole: int) -> float:
    """``part / whole`` rounded to 4 places (0.0 for no viewers: nothing was watched)."""
    return round(part / whole, 4) if whole else 0.0


def bucket_of(furthest: int, duration: int) -> int:
    """The 5 % bucket of a furthest position, as migration 0015's triggers compute it."""
    return min(BUCKETS, BUCKETS * min(furthest, duration) // duration)


def audience(session: Session, content_id: uuid.UUID) -> Audience:
    rows = session.execute(
        select(
            ContentRetention.bucket,
            ContentRetention.viewers,
            ContentRetention.completions,
            ContentRetention.fraction_micros,
        ).where(ContentRetention.content_id == content_id)
    ).all()
    buckets = [0] * (BUCKETS + 1)
    completions = fractions = 0
    for bucket, viewers, done, fraction in rows:
        buckets[bucket] += int(viewers)
        completions += int(done)
        fractions += int(fraction)
    return Audience(tuple(buckets), completions, fractions)


@dataclass(frozen=True, slots=True)
class Item:
    """The content item and its duration as ingest measured it (None until its media is processed)."""

    content: Content
    duration_seconds: int | None


def readable_content(session: Session, org: OrgAccess, content_id: uuid.UUID) -> Item:
    """The org's live content item, if the caller may see its engagement: 404 before 403."""
    found = session.execute(
        select(Content, MediaItem.duration_seconds)
        .outerjoin(MediaItem, MediaItem.id == Content.media_id)
        .where(Content.id == content_id, Content.organization_id == org.organization_id, Content.deleted_at.is_(None))
    ).first()
    if found is None:
        raise not_found("CONTENT_NOT_FOUND")
    content, duration = found
    if not org.has_role(MANAGER) and content.created_by != org.user_id:
        raise Forbidden()
    return Item(content, duration)


def daily(session: Session, content_id: uuid.UUID, start: date, end: date) -> tuple[list[dict[str, Any]], int]:
    """One row per UTC day of ``[start, end]``, zero-filled by ``generate_series``, and the seconds
    watched over all days (the same primary-key range, in the same statement)."""
    days = day_series(start, end)
    stats = and_(ContentDailyStats.content_id == content_id, ContentDailyStats.day == days.c.day)
    all_time = (
        select(func.coalesce(func.sum(ContentDailyStats.seconds_watched), 0))
        .where(ContentDailyStats.content_id == content_id)
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            days.c.day,
            func.coalesce(ContentDailyStats.views_started, 0),
            func.coalesce(ContentDailyStats.seconds_watched, 0),
            func.coalesce(ContentDailyStats.completions, 0),
            all_time,
        )
        .select_from(days.outerjoin(ContentDailyStats, stats))
        .order_by(days.c.day)
    ).all()
    series = [
        {"date": row[0], "views_started": int(row[1]), "seconds_watched": int(row[2]), "completions": int(row[3])}
        for row in rows
    ]
    return series, int(rows[0][4]) if rows else 0


def engagement(session: Session, item: Item, start: date, end: date) -> dict[str, Any]:
    """The api.md §11 body: three statements (the item, its 21 rollup rows, the daily series)."""
    who = audience(session, item.content.id)
    series, watched = daily(session, item.content.id, start, end)
    return {
        "content_id": item.content.id,
        "title": item.content.title,
        "duration_seconds": item.duration_seconds,
        "viewers": who.viewers,
        "completions": who.completions,
        "completion_rate": who.completion_rate,
        "average_percent_watched": who.average_percent_watched,
        "seconds_watched": watched,
        "retention": who.retention(),
        "daily": series,
    }
