"""Demo data for ``make run``: ``flask codex seed`` (idempotent).

Creates, when missing, a branded demo organization with an owner, a creator (invited by the
owner; the invitation accepted) and a customer (verified emails, one known password), a ~4 s
640x360 video and a ~4 s tone generated with ffmpeg, stored at their server-built original keys
and ingested to ``ready`` synchronously through the real pipeline (``app.media.ingest.run_ingest``;
no worker needed), and two published content items: a free audio item and a paid video item.
The free item gets an audience: 30 viewer accounts whose furthest positions spread over the clip
and six days of watch statistics, so the engagement endpoint and its retention curve (api.md §11)
show something real.

Re-running changes nothing on a seeded database and reports the same accounts and ids. Rows are
found again by their fixed emails, the org slug, the demo media titles and the content slugs. A
demo media item that is not ready (a failed or interrupted earlier run, or storage emptied under
the database) is ingested again.

Every step goes through the domain services (identity, orgs, media, content) or the media
pipeline, acting as the owner or the creator; this module owns the commits, like a route or a
task.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import errors
from app.access import progress as playback
from app.access import stats as watch_stats
from app.access.models import PlaybackProgress
from app.content import service as content_service
from app.content.models import Content
from app.identity import passwords
from app.identity import service as identity
from app.identity.models import Credential, User
from app.identity.sessions import Principal
from app.media import service as media_service
from app.media.ingest import run_ingest
from app.media.job import MediaSettings
from app.media.models import MediaItem
from app.orgs import branding, invitations
from app.orgs import service as orgs
from app.orgs.access import OrgAccess, membership_role
from app.orgs.models import Organization
from app.storage import get_storage, keys
from app.storage.base import Storage

#: Used when ``CODEX_SEED_PASSWORD`` is not set; meets the password policy (security.md §2).
DEFAULT_PASSWORD = "CodexDemo-2024"  # noqa: S105 - a published demo password, printed by the command
PASSWORD_ENV = "CODEX_SEED_PASSWORD"  # noqa: S105 - the variable's name

ORG_SLUG = "demo-studio"
ORG_NAME = "Demo Studio"
ORG_DESCRIPTION = "A demo organization created by `flask codex seed`."

# A stalled ingest (a seed killed mid-run) is taken over after this long without a heartbeat.
STALE_PROCESSING = timedelta(minutes=2)


@dataclass(frozen=True)
class Account:
    key: str  # owner | creator | customer
    email: str
    name: str
    description: str


ACCOUNTS = (
    Account("owner", "owner@demo.codex.local", "Olivia Owner", "org owner: dashboard, settings, members"),
    Account("creator", "creator@demo.codex.local", "Cole Creator", "org creator: media and content"),
    Account("customer", "customer@demo.codex.local", "Casey Customer", "customer: buys and streams"),
)

BRANDING: dict[str, Any] = {
    "platform_name": ORG_NAME,
    "primary_color": "#7C3AED",
    "secondary_color": "#F59E0B",
    "support_email": "support@demo.codex.local",
    "contact_url": "https://demo.codex.local/contact",
    "business_name": "Demo Studio Ltd.",
    "timezone": "America/New_York",
    "enable_signups": True,
    "enable_purchases": True,
}
LOGO_COLOR = "0x7C3AED"


@dataclass(frozen=True)
class DemoMedia:
    key: str  # video | audio
    title: str
    media_type: str
    mime_type: str
    ffmpeg_args: tuple[str, ...]  # inputs and codecs; the output path is appended


@dataclass(frozen=True)
class DemoContent:
    key: str
    media_key: str
    title: str
    slug: str
    description: str
    price_cents: int | None
    category: str
    tags: tuple[str, ...]


CLIP_SECONDS = "4"
MEDIA = (
    DemoMedia(
        "video",
        "Demo test pattern (video)",
        "video",
        "video/mp4",
        (
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", CLIP_SECONDS,
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
        ),
    ),
    DemoMedia(
        "audio",
        "Demo tone (audio)",
        "audio",
        "audio/mpeg",
        ("-f", "lavfi", "-i", f"sine=frequency=660:duration={CLIP_SECONDS}", "-c:a", "libmp3lame", "-b:a", "128k"),
    ),
)  # fmt: skip

CONTENT = (
    DemoContent(
        "free",
        "audio",
        "Welcome tone (free)",
        "welcome-tone",
        "A four-second tone anyone signed in can play: the free item of the demo.",
        None,
        "demo",
        ("demo", "free"),
    ),
    DemoContent(
        "paid",
        "video",
        "Test pattern masterclass (paid)",
        "test-pattern-masterclass",
        "Four seconds of colour bars with a 440 Hz tone: buy it with the local payment page.",
        1999,
        "demo",
        ("demo", "paid"),
    ),
)


# The free item's audience: one furthest position (whole seconds of the 4 s clip) per viewer, in the
# order the viewers are created; viewer i started on day i % AUDIENCE_DAYS of the last few days.
# 30 started, 26 reached 1 s (25 %), 21 reached 2 s, 16 reached 3 s, 10 finished.
AUDIENCE_FURTHEST = (4, 3, 4, 2, 1, 4, 0, 3, 4, 2, 4, 1, 3, 4, 0, 2, 4, 1, 3, 4, 2, 0, 4, 1, 3, 2, 4, 0, 1, 3)
AUDIENCE_DAYS = 6
AUDIENCE_KEY = "free"


def viewer_email(index: int) -> str:
    return f"viewer{index:02d}@demo.codex.local"


class SeedError(Exception):
    """The seed could not finish (bad password setting, ffmpeg or ingest failure)."""


Progress = Callable[[str], None]
"""Told one line per step as the seed goes (the command prints them; the ingest takes seconds)."""


def _quiet(line: str) -> None:
    pass


@dataclass
class SeededAccount:
    account: Account
    user_id: uuid.UUID
    password_ok: bool  # False: the account's password was changed since it was seeded


@dataclass
class SeedReport:
    password: str
    accounts: list[SeededAccount] = field(default_factory=list)
    organization_id: uuid.UUID | None = None
    organization_slug: str = ORG_SLUG
    media: dict[str, MediaItem] = field(default_factory=dict)
    content: dict[str, Content] = field(default_factory=dict)
    viewers: int = 0  # the demo audience of the free item
    created: list[str] = field(default_factory=list)  # what this run added or repaired

    @property
    def changed(self) -> bool:
        return bool(self.created)


def seed_password() -> str:
    password = os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD
    problems = passwords.policy_errors(password)
    if problems:
        raise SeedError(f"{PASSWORD_ENV} does not meet the password policy: {' '.join(problems)}")
    return password


def _now() -> datetime:
    return datetime.now(UTC)


def _ffmpeg(args: tuple[str, ...], out: Path) -> None:
    binary = current_app.config["FFMPEG_PATH"]
    command = [binary, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args, str(out)]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)  # noqa: S603 - fixed arguments
    except FileNotFoundError:
        raise SeedError(f"ffmpeg not found ({binary!r}); install the ffmpeg package or set FFMPEG_PATH") from None
    except subprocess.CalledProcessError as exc:
        raise SeedError(f"ffmpeg failed: {exc.stderr.decode(errors='replace').strip()[-500:]}") from None


# ---- accounts and the organization ------------------------------------------------------------


def _principal(user: User) -> Principal:
    """The owner acting from the command line (no login session exists or is needed)."""
    now = _now()
    return Principal(
        session_id=uuid.UUID(int=0),
        user_id=user.id,
        role=user.role,
        expires_at=now,
        last_seen_at=now,
        remember_me=False,
        token_hash="",
        token="",
        via="cli",
    )


def _acting(org: Organization, user: User, role: str) -> OrgAccess:
    """``user`` acting inside ``org`` with its membership ``role``, as the routes would pass it."""
    return OrgAccess(organization=org, principal=_principal(user), membership_role=role, role=role)


def _account(session: Session, report: SeedReport, account: Account, signup_org: uuid.UUID | None) -> tuple[User, bool]:
    user = identity.get_user_by_email(session, account.email)
    if user is None:
        user = identity.create_user(
            session,
            email=account.email,
            password=report.password,
            name=account.name,
            verified_at=_now(),
            signup_organization_id=signup_org,
        )
        report.created.append(f"user {account.email}")
        return user, True
    if user.email_verified_at is None:  # registered through the API meanwhile: the demo needs it verified
        user.email_verified_at = _now()
        session.flush()
        report.created.append(f"verified {account.email}")
    credential = session.get(Credential, user.id)
    ok = credential is not None and passwords.verify_password(credential.password_hash, report.password)
    return user, ok


def _organization(session: Session, report: SeedReport, owner: User, storage: Storage) -> Organization:
    org = session.scalar(select(Organization).where(Organization.slug == ORG_SLUG))
    if org is not None:
        if membership_role(session, org.id, owner.id) != "owner":
            raise SeedError(f"an organization {ORG_SLUG!r} exists that {owner.email} does not own; rename it first")
        return org
    org = orgs.create_org(session, owner, name=ORG_NAME, slug=ORG_SLUG, description=ORG_DESCRIPTION)
    access = _acting(org, owner, "owner")
    orgs.update_settings(session, access, BRANDING)
    with tempfile.TemporaryDirectory(prefix="codex-seed-") as workdir:
        logo = Path(workdir) / "logo.png"
        _ffmpeg(("-f", "lavfi", "-i", f"color=c={LOGO_COLOR}:s=128x128", "-frames:v", "1"), logo)
        key = keys.logo_key(org.id, uuid.uuid4(), "png")
        storage.put_file(key, logo, "image/png")
    orgs.set_logo(session, access, key)
    report.created.append(f"organization {ORG_SLUG} with branding and logo")
    return org


def _creator_membership(session: Session, report: SeedReport, org: Organization, owner: User, creator: User) -> None:
    """The creator joins the way staff always do: the owner invites the (verified) address, the
    creator accepts. The invitation email is queued like any other (its link is used up)."""
    if membership_role(session, org.id, creator.id) is not None:
        return
    _invitation, token = invitations.create_invitation(
        session, _acting(org, owner, "owner"), email=creator.email, role="creator"
    )
    invitations.accept(session, creator, token)
    report.created.append(f"membership {creator.email} as creator (invited and accepted)")


# ---- media ------------------------------------------------------------------------------------


def _make_clip(spec: DemoMedia, workdir: Path) -> Path:
    clip = workdir / f"demo-{spec.key}.{keys.ORIGINAL_EXTENSIONS[spec.mime_type]}"
    _ffmpeg(spec.ffmpeg_args, clip)
    return clip


def _outputs_present(storage: Storage, media: MediaItem) -> bool:
    outputs = [media.hls_master_key, media.hls_preview_key, media.thumbnail_key or media.waveform_key]
    return all(key is not None and storage.head(key) is not None for key in outputs)


def _find_media(session: Session, org: Organization, spec: DemoMedia) -> MediaItem | None:
    return session.scalar(
        select(MediaItem)
        .where(
            MediaItem.organization_id == org.id,
            MediaItem.title == spec.title,
            MediaItem.media_type == spec.media_type,
            MediaItem.deleted_at.is_(None),
        )
        .order_by(MediaItem.created_at)
        .limit(1)
    )


def _prepare_media(
    session: Session, report: SeedReport, creator: OrgAccess, spec: DemoMedia, storage: Storage, progress: Progress
) -> tuple[uuid.UUID, bool]:
    """Make sure the demo media item exists with its original stored; True when it needs an ingest.

    A new item goes the way an upload does: ``create_media`` (server-built key), the bytes are
    stored at that key, ``upload_complete`` checks size and magic bytes and marks it uploaded.
    """
    media = _find_media(session, creator.organization, spec)
    if media is None:
        progress(f"  {spec.key} media: generating a {CLIP_SECONDS} s clip with ffmpeg")
        with tempfile.TemporaryDirectory(prefix="codex-seed-") as workdir:
            clip = _make_clip(spec, Path(workdir))
            data = {
                "title": spec.title,
                "description": "Generated with ffmpeg's lavfi test sources by the demo seed.",
                "media_type": spec.media_type,
                "mime_type": spec.mime_type,
                "file_size_bytes": clip.stat().st_size,
            }
            media, _upload = media_service.create_media(session, creator, data, storage)
            storage.put_file(media.original_key, clip, spec.mime_type)
        media_service.upload_complete(session, media, storage)
        report.created.append(f"{spec.key} media {media.id}")
        return media.id, True
    if media.status == "ready" and _outputs_present(storage, media):
        return media.id, False
    if media.status == "processing" and media.heartbeat_at and media.heartbeat_at > _now() - STALE_PROCESSING:
        raise SeedError(f"the demo {spec.key} media {media.id} is being processed; run the seed again shortly")
    # Failed, interrupted, or ready with its files gone: store the original again if needed and start over.
    previous = media.status
    values: dict[str, Any] = {"status": "uploaded", "attempts": 0, "job_id": None, "error_message": None}
    if storage.head(media.original_key) is None:
        progress(f"  {spec.key} media: original missing, generating it again with ffmpeg")
        with tempfile.TemporaryDirectory(prefix="codex-seed-") as workdir:
            clip = _make_clip(spec, Path(workdir))
            storage.put_file(media.original_key, clip, spec.mime_type)
            values["file_size_bytes"] = clip.stat().st_size
            stored = storage.head(media.original_key)
            values["upload_etag"] = stored.etag if stored else None  # the re-stored clip is the checked one
    session.execute(update(MediaItem).where(MediaItem.id == media.id).values(**values))
    report.created.append(f"{spec.key} media {media.id} re-ingested (was {previous})")
    return media.id, True


def _ingest(session: Session, media_id: uuid.UUID, storage: Storage, settings: MediaSettings | None) -> MediaItem:

    outcome = run_ingest(session, media_id, f"seed-{uuid.uuid4()}", storage=storage, settings=settings)
    session.expire_all()
    media = session.get(MediaItem, media_id)
    assert media is not None
    if outcome != "ready" or media.status != "ready":
        raise SeedError(f"ingest of {media_id} ended {outcome!r}: {media.error_message or media.status}")
    return media


# ---- content ----------------------------------------------------------------------------------


def _content(session: Session, report: SeedReport, creator: OrgAccess, spec: DemoContent, media: MediaItem) -> Content:
    """The demo item with this slug, or a new one created and published through the content service."""
    content = session.scalar(
        select(Content).where(
            Content.organization_id == creator.organization_id,
            Content.slug == spec.slug,
            Content.deleted_at.is_(None),
        )
    )
    if content is not None:
        return content
    data = {
        "title": spec.title,
        "slug": spec.slug,
        "description": spec.description,
        "content_type": media.media_type,
        "media_id": media.id,
        "price_cents": spec.price_cents,
        "visibility": None,  # derived from the price
        "currency": None,  # DEFAULT_CURRENCY
        "category": spec.category,
        "tags": list(spec.tags),
    }
    content = content_service.publish(session, content_service.create_content(session, creator, data))
    report.created.append(f"{spec.key} content {content.id}")
    return content


# ---- audience ---------------------------------------------------------------------------------


def _audience(session: Session, report: SeedReport, org: Organization, content: Content, today: date) -> None:
    """Viewer accounts and what they watched of ``content``, written by the access package's own
    writers (the flush's upsert, the daily-stats rollup's), once: skipped when any demo viewer
    already has progress on it (watch statistics only ever add up)."""
    viewers: list[User] = []
    added = 0
    for index in range(1, len(AUDIENCE_FURTHEST) + 1):
        email = viewer_email(index)
        user = identity.get_user_by_email(session, email)
        if user is None:
            user = identity.create_user(session, email=email, password=report.password,
                                        name=f"Demo Viewer {index:02d}", verified_at=_now(),
                                        signup_organization_id=org.id)  # fmt: skip
            added += 1
        viewers.append(user)
    report.viewers = len(viewers)
    if added:
        report.created.append(f"{added} viewer accounts ({viewer_email(1)} .. {viewer_email(len(viewers))})")
    watched = session.scalar(
        select(PlaybackProgress.user_id)
        .where(PlaybackProgress.content_id == content.id, PlaybackProgress.user_id.in_([v.id for v in viewers]))
        .limit(1)
    )
    if watched is not None:
        return
    duration = int(report.media[next(c.media_key for c in CONTENT if c.key == AUDIENCE_KEY)].duration_seconds or 4)
    entries: list[playback.Entry] = []
    days: dict[date, list[int]] = {}
    for index, (user, furthest) in enumerate(zip(viewers, AUDIENCE_FURTHEST, strict=True)):
        day = today - timedelta(days=AUDIENCE_DAYS - 1 - index % AUDIENCE_DAYS)
        at = datetime.combine(day, clock(9 + index % 12, 7 * index % 60), UTC)
        reached = min(furthest, duration)
        done = reached >= playback.COMPLETE_RATIO * duration
        entries.append(
            playback.Entry(user.id, content.id, reached, duration, done, at if done else None, at, at, reached)
        )
        figures = days.setdefault(day, [0, 0, 0])
        figures[0], figures[1], figures[2] = figures[0] + 1, figures[1] + reached, figures[2] + int(done)
    playback.write_batch(session, entries)
    watch_stats.write_counters(
        session, [watch_stats.DayCounters(content.id, day, *figures) for day, figures in sorted(days.items())]
    )
    report.created.append(f"audience of {content.slug}: {len(entries)} viewers, {len(days)} days of statistics")


# ---- the whole seed ---------------------------------------------------------------------------


def run_seed(
    session: Session,
    *,
    password: str | None = None,
    storage: Storage | None = None,
    media_settings: MediaSettings | None = None,
    progress: Progress = _quiet,
) -> SeedReport:
    """Create whatever of the demo data is missing; commits. Needs an app context.

    ``progress`` gets a line as each step starts and ends (accounts and organization, each media
    item, the content), with what the step added.
    """
    storage = storage or get_storage()
    report = SeedReport(password=password or seed_password())
    progress(f"  accounts and organization {ORG_SLUG}: checking")
    try:
        by_key = {account.key: account for account in ACCOUNTS}
        owner, owner_ok = _account(session, report, by_key["owner"], None)
        org = _organization(session, report, owner, storage)
        creator, creator_ok = _account(session, report, by_key["creator"], org.id)
        customer, customer_ok = _account(session, report, by_key["customer"], org.id)
        _creator_membership(session, report, org, owner, creator)
        session.commit()
    except errors.AppError as exc:
        session.rollback()
        raise SeedError(f"{exc.message} {exc.details or ''}".strip()) from None
    branding.invalidate(org.id)
    progress(
        f"  accounts and organization {ORG_SLUG}: {len(ACCOUNTS)} accounts, 1 organization ({_added(report, 0)} added)"
    )
    report.organization_id = org.id
    for user, account, ok in ((owner, "owner", owner_ok), (creator, "creator", creator_ok),
                              (customer, "customer", customer_ok)):  # fmt: skip
        report.accounts.append(SeededAccount(by_key[account], user.id, ok))

    as_creator = _acting(org, creator, "creator")
    for spec in MEDIA:
        try:
            media_id, needs_ingest = _prepare_media(session, report, as_creator, spec, storage, progress)
        except errors.AppError as exc:
            session.rollback()
            raise SeedError(f"demo {spec.key} media: {exc.message}") from None
        session.commit()  # the ingest claims the committed row
        if needs_ingest:
            progress(f"  {spec.key} media: ingesting {media_id} (HLS renditions, preview, thumbnail or waveform)")
            started = time.monotonic()
            media = _ingest(session, media_id, storage, media_settings)
            progress(
                f"  {spec.key} media: ready after {time.monotonic() - started:.1f} s"
                f" ({len(media.renditions)} renditions)"
            )
        else:
            found = session.get(MediaItem, media_id)
            assert found is not None
            media = found
            progress(f"  {spec.key} media: already ready")
        report.media[spec.key] = media

    before = len(report.created)
    try:
        for item in CONTENT:
            report.content[item.key] = _content(session, report, as_creator, item, report.media[item.media_key])
    except errors.AppError as exc:
        session.rollback()
        raise SeedError(f"demo content: {exc.message}") from None
    session.commit()
    progress(f"  content: {len(CONTENT)} published items ({_added(report, before)} added)")

    before = len(report.created)
    try:
        _audience(session, report, org, report.content[AUDIENCE_KEY], _now().date())
    except errors.AppError as exc:
        session.rollback()
        raise SeedError(f"demo audience: {exc.message}") from None
    session.commit()
    progress(f"  audience: {report.viewers} viewers of the free item ({_added(report, before)} added)")
    return report


def _added(report: SeedReport, since: int) -> int:
    """How many things the run added or repaired since ``report.created`` had ``since`` entries."""
    return len(report.created) - since


def describe(report: SeedReport) -> list[str]:
    """The lines the command prints: what this run changed, then ``summary``."""
    if report.changed:
        changes = ["Codex demo data: this run added or repaired", *(f"  + {item}" for item in report.created)]
    else:
        changes = ["Codex demo data already present (nothing changed)"]
    return [*changes, "", *summary(report)]


def summary(report: SeedReport) -> list[str]:
    """Where to go and how to sign in (the same on every run over the same data)."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    lines = [
        f"API base     {base}/api/v1",
        f"API docs     {base}/api/v1/docs",
        f"Organization {ORG_NAME}  id {report.organization_id}  slug {report.organization_slug}",
        f"Catalogue    {base}/api/v1/orgs/{report.organization_slug}/catalog",
        "",
        f"Accounts (password for all: {report.password})",
    ]
    for seeded in report.accounts:
        note = "" if seeded.password_ok else "  [password changed since seeding; left as is]"
        lines.append(f"  {seeded.account.key:<9} {seeded.account.email:<28} {seeded.account.description}{note}")
    lines.append("")
    lines.append("Content (published)")
    for spec in CONTENT:
        content = report.content[spec.key]
        price = "free" if not content.price_cents else f"{content.price_cents / 100:.2f} {content.currency.upper()}"
        lines.append(f"  {spec.key:<5} {content.id}  {content.content_type:<5} {price:<9} {content.title}")
    viewers = f"{viewer_email(1)} .. {viewer_email(report.viewers)}"
    lines.append(f"  an audience of {report.viewers} viewers on the free item ({viewers})")
    lines.append("")
    lines.append("Media (ready)")
    for key, media in report.media.items():
        renditions = ", ".join(media.renditions)
        lines.append(f"  {key:<5} {media.id}  {media.status}  {media.duration_seconds} s  {renditions}")
    lines.append("")
    lines.append("Walkthrough: README.md, 'Demo walkthrough' (or scripts/demo-walkthrough.sh).")
    return lines
