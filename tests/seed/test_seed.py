"""``codex seed``: run twice on the test database with local storage and the real ffmpeg pipeline.

The first run creates the demo org, accounts, media (ingested to ``ready`` right away) and two
published content items; the second changes nothing and reports the same ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import seed
from app.audit import AdminAuditEvent
from app.content.models import Content
from app.identity import passwords
from app.identity.models import Credential, User
from app.media.models import MediaItem
from app.orgs.models import Invitation, Membership, Organization, OrgSettings
from app.storage import keys
from app.storage.base import Storage
from tests.identity.conftest import fast_passwords  # noqa: F401 - autouse: cheap argon2
from tests.identity.helpers import make_org, make_user

COUNTED = (User, Credential, Organization, Membership, Invitation, OrgSettings, MediaItem, Content, AdminAuditEvent)


@pytest.fixture()
def progress() -> list[str]:
    """The lines the first seed run reported, in order."""
    return []


@pytest.fixture()
def seeded(app: Flask, db_session: Session, sent_tasks: list[Any], progress: list[str]) -> Iterator[seed.SeedReport]:
    with app.app_context():
        yield seed.run_seed(db_session, progress=progress.append)


def counts(session: Session) -> dict[str, int]:
    return {model.__name__: session.scalar(select(func.count()).select_from(model)) or 0 for model in COUNTED}


def stored(storage: Storage, media: MediaItem) -> list[str]:
    return sorted(storage.list_keys(keys.media_prefix(media.organization_id, media.id)))


def test_seed_creates_the_demo_and_a_second_run_changes_nothing(
    app: Flask, db_session: Session, seeded: seed.SeedReport, sent_tasks: list[Any]
) -> None:
    storage: Storage = app.extensions["storage"]
    first = counts(db_session)
    files = {key: stored(storage, media) for key, media in seeded.media.items()}
    assert seeded.changed
    # Both demo media were ingested by the real pipeline, not left for a worker.
    assert not [name for name, _, _ in sent_tasks if name == "media.ingest"]

    with app.app_context():
        again = seed.run_seed(db_session)

    assert not again.changed, again.created
    assert counts(db_session) == first
    assert again.organization_id == seeded.organization_id
    assert {k: c.id for k, c in again.content.items()} == {k: c.id for k, c in seeded.content.items()}
    assert {k: m.id for k, m in again.media.items()} == {k: m.id for k, m in seeded.media.items()}
    assert {key: stored(storage, media) for key, media in again.media.items()} == files
    assert [(a.account.email, a.user_id, a.password_ok) for a in again.accounts] == [
        (a.account.email, a.user_id, True) for a in seeded.accounts
    ]
    with app.app_context():
        assert seed.describe(again)[0] == "Codex demo data already present (nothing changed)"
        assert seed.summary(again) == seed.summary(seeded)
        assert seed.describe(seeded)[1:4] == [
            f"  + user {seed.ACCOUNTS[0].email}",
            "  + organization demo-studio with branding and logo",
            f"  + user {seed.ACCOUNTS[1].email}",
        ]


def test_org_accounts_and_branding(db_session: Session, seeded: seed.SeedReport) -> None:
    org = db_session.get(Organization, seeded.organization_id)
    assert org is not None and org.slug == seed.ORG_SLUG
    settings = db_session.get(OrgSettings, org.id)
    assert settings is not None
    assert (settings.platform_name, settings.primary_color, settings.timezone) == (
        "Demo Studio",
        "#7C3AED",
        "America/New_York",
    )
    assert settings.logo_key is not None and keys.is_public_logo_key(settings.logo_key)
    roles = dict(
        db_session.execute(
            select(User.email, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == org.id)
        ).all()
    )
    assert roles == {"owner@demo.codex.local": "owner", "creator@demo.codex.local": "creator"}
    # The creator joined the way staff always do: invited by the owner, invitation accepted.
    owner_id, creator_id = seeded.accounts[0].user_id, seeded.accounts[1].user_id
    (invitation,) = db_session.scalars(select(Invitation).where(Invitation.organization_id == org.id)).all()
    assert (invitation.email, invitation.role, invitation.status) == ("creator@demo.codex.local", "creator", "accepted")
    assert (invitation.invited_by, invitation.accepted_by) == (owner_id, creator_id)
    joined = db_session.scalars(select(AdminAuditEvent).where(AdminAuditEvent.action == "member.add")).one()
    assert joined.actor_user_id == creator_id and joined.metadata_["invitation_id"] == str(invitation.id)
    for account in seeded.accounts:
        user = db_session.get(User, account.user_id)
        credential = db_session.get(Credential, account.user_id)
        assert user is not None and credential is not None
        assert user.email_verified_at is not None
        assert passwords.verify_password(credential.password_hash, seed.DEFAULT_PASSWORD)


def test_media_is_ready_with_its_files_in_storage(app: Flask, seeded: seed.SeedReport) -> None:
    storage: Storage = app.extensions["storage"]
    video, audio = seeded.media["video"], seeded.media["audio"]
    for media in (video, audio):
        assert media.status == "ready"
        assert 3 <= (media.duration_seconds or 0) <= 5
        master = storage.get_bytes(media.hls_master_key or "").decode()
        assert master.startswith("#EXTM3U")
        for rendition in media.renditions:
            playlist_key = keys.hls_rendition_playlist_key(media.organization_id, media.id, media.attempts, rendition)
            assert "#EXT-X-ENDLIST" in storage.get_bytes(playlist_key).decode()
            segment = keys.hls_segment_key(media.organization_id, media.id, media.attempts, rendition, 1)
            info = storage.head(segment)
            assert info is not None and info.size > 0
        assert storage.head(media.hls_preview_key or "") is not None
    assert (video.width, video.height) == (640, 360)
    assert storage.head(video.thumbnail_key or "") is not None
    waveform = json.loads(storage.get_bytes(audio.waveform_key or ""))
    assert waveform


def test_two_published_items_one_free_one_paid(db_session: Session, seeded: seed.SeedReport) -> None:
    rows = db_session.scalars(
        select(Content).where(Content.organization_id == seeded.organization_id).order_by(Content.title)
    ).all()
    assert len(rows) == 2
    assert all(row.status == "published" and row.published_at is not None for row in rows)
    by_price = {row.is_free: row for row in rows}
    free, paid = by_price[True], by_price[False]
    assert (free.content_type, free.visibility, free.media_id) == ("audio", "public", seeded.media["audio"].id)
    assert (paid.content_type, paid.visibility, paid.price_cents, paid.currency) == (
        "video",
        "purchased_only",
        1999,
        "usd",
    )
    assert paid.media_id == seeded.media["video"].id


@pytest.mark.parametrize("damage", ["files_gone", "failed"])
def test_a_broken_demo_media_is_ingested_again(
    app: Flask, db_session: Session, seeded: seed.SeedReport, damage: str
) -> None:
    storage: Storage = app.extensions["storage"]
    audio = seeded.media["audio"]
    if damage == "files_gone":  # storage emptied under the database
        storage.delete_prefix(keys.media_prefix(audio.organization_id, audio.id))
    else:
        db_session.execute(
            update(MediaItem).where(MediaItem.id == audio.id).values(status="failed", attempts=3, error_message="x")
        )
    before = "ready" if damage == "files_gone" else "failed"
    with app.app_context():
        again = seed.run_seed(db_session)
    assert again.created == [f"audio media {audio.id} re-ingested (was {before})"]
    repaired = again.media["audio"]
    assert (repaired.status, repaired.id, repaired.attempts, repaired.error_message) == ("ready", audio.id, 1, None)
    assert storage.head(repaired.hls_master_key or "") is not None
    assert storage.head(repaired.original_key) is not None


def test_the_cli_command_prints_the_credentials(app: Flask, db_session: Session, seeded: seed.SeedReport) -> None:
    result: Result = app.test_cli_runner().invoke(args=["codex", "seed"])
    assert result.exit_code == 0, result.output
    assert "Codex demo data already present (nothing changed)" in result.output
    assert f"password for all: {seed.DEFAULT_PASSWORD}" in result.output
    for account in seed.ACCOUNTS:
        assert account.email in result.output
    for content in seeded.content.values():
        assert str(content.id) in result.output
    assert str(seeded.organization_id) in result.output
    assert "/api/v1/docs" in result.output


def test_the_first_run_reports_each_step_as_it_goes(seeded: seed.SeedReport, progress: list[str]) -> None:
    video, audio = seeded.media["video"], seeded.media["audio"]
    expected = [
        r"  accounts and organization demo-studio: checking",
        r"  accounts and organization demo-studio: 3 accounts, 1 organization \(5 added\)",
        r"  video media: generating a 4 s clip with ffmpeg",
        rf"  video media: ingesting {video.id} \(HLS renditions, preview, thumbnail or waveform\)",
        rf"  video media: ready after \d+\.\d s \({len(video.renditions)} renditions\)",
        r"  audio media: generating a 4 s clip with ffmpeg",
        rf"  audio media: ingesting {audio.id} \(HLS renditions, preview, thumbnail or waveform\)",
        rf"  audio media: ready after \d+\.\d s \({len(audio.renditions)} renditions\)",
        r"  content: 2 published items \(2 added\)",
        r"  audience: 30 viewers of the free item \(2 added\)",
    ]
    assert len(progress) == len(expected), progress
    for line, pattern in zip(progress, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_the_command_prints_its_steps_before_the_summary(
    app: Flask, db_session: Session, seeded: seed.SeedReport
) -> None:
    output = app.test_cli_runner().invoke(args=["codex", "seed"]).output
    lines = output.splitlines()
    steps = [
        "Seeding the Codex demo data",
        "  accounts and organization demo-studio: checking",
        "  accounts and organization demo-studio: 3 accounts, 1 organization (0 added)",
        "  video media: already ready",
        "  audio media: already ready",
        "  content: 2 published items (0 added)",
        "  audience: 30 viewers of the free item (0 added)",
        "",
        "Codex demo data already present (nothing changed)",
    ]
    assert lines[: len(steps)] == steps, output


def test_a_weak_seed_password_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(seed.PASSWORD_ENV, "short")
    with pytest.raises(seed.SeedError, match="password policy"):
        seed.seed_password()
    monkeypatch.setenv(seed.PASSWORD_ENV, "Another-Demo-9")
    assert seed.seed_password() == "Another-Demo-9"


def test_a_demo_studio_org_of_someone_else_is_not_taken_over(app: Flask, db_session: Session) -> None:
    make_org(make_user(email="someone@example.com"), slug=seed.ORG_SLUG)
    with app.app_context(), pytest.raises(seed.SeedError, match="does not own"):
        seed.run_seed(db_session)
