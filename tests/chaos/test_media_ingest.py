"""Media ingest with the media worker SIGKILLed mid-encode: the stall detector (``media.recover_stuck``)
takes the dead attempt back, a fresh worker ingests again, and every item ends ``ready`` with a
complete HLS tree of the winning attempt and nothing left of the killed ones."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from app import db
from app.db import enqueue_after_commit
from app.media.models import MediaItem
from app.storage import keys
from app.storage.base import Storage
from tests import factories
from tests.chaos.common import count, pipeline_state, publishing_to, wait_quiescent
from tests.chaos.conftest import Killer, Scale
from tests.e2e.harness import Stack, Supervisor
from tests.factories import committed_session
from tests.identity.helpers import make_org
from tests.media.conftest import Clips

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

KILL_GAP = 1.0  # an encode takes seconds: kill whenever one runs, at least this far apart


@pytest.fixture(scope="session")
def chaos_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long enough (12 s of 640x360) that a kill lands mid-encode on a busy machine."""
    return Clips(tmp_path_factory.mktemp("chaos-clips")).video(640, 360, 12.0)


def playlist_uris(storage: Storage, key: str) -> list[str]:
    text = storage.get_bytes(key).decode()
    assert text.startswith("#EXTM3U"), f"{key} is not a playlist"
    base = key.rsplit("/", 1)[0]
    return [f"{base}/{line.strip()}" for line in text.splitlines() if line.strip() and not line.startswith("#")]


def check_outputs(storage: Storage, media: MediaItem) -> int:
    """The live HLS tree is whole (every playlist and segment present and non-empty), the thumbnail
    exists, and no object of another attempt is left. Returns the number of segments."""
    assert media.hls_master_key and media.thumbnail_key, media.id
    attempt = keys.output_attempt(media.hls_master_key)
    segments = 0
    for playlist in playlist_uris(storage, media.hls_master_key):
        for segment in playlist_uris(storage, playlist):
            assert storage.get_bytes(segment), f"empty segment {segment}"
            segments += 1
    assert segments > 0
    assert storage.get_bytes(media.thumbnail_key)
    stale = [
        key
        for key in storage.list_keys(keys.media_prefix(media.organization_id, media.id))
        if keys.output_attempt(key) not in (None, attempt)
    ]
    assert not stale, f"objects of killed attempts left behind: {stale[:5]}"
    return segments


def stale_outputs_left(storage: Storage, items: list[MediaItem]) -> bool:
    for media in items:
        attempt = keys.output_attempt(media.hls_master_key or "")
        for key in storage.list_keys(keys.media_prefix(media.organization_id, media.id)):
            if keys.output_attempt(key) not in (None, attempt):
                return True
    return False


def test_media_ingest_survives_worker_kills_mid_encode(
    committed_db: Flask, chaos_stack: Stack, chaos_clip: Path, scale: Scale
) -> None:
    app, stack = committed_db, chaos_stack
    storage: Storage = app.extensions["storage"]
    with committed_session(app):
        owner = factories.UserFactory(email_verified_at=datetime.now(UTC))
        org = make_org(owner)
        items = [
            factories.MediaItemFactory(
                organization_id=org.id, created_by=owner.id, file_size_bytes=chaos_clip.stat().st_size
            )
            for _ in range(scale.clips)
        ]
        ids = [media.id for media in items]
    for media in items:
        storage.put_file(media.original_key, chaos_clip, media.mime_type)

    # The Procfile's split: a media worker (killed) and a worker for the sweepers, purges and email.
    media_worker = stack.start_worker("media", queues="media", concurrency=1)
    stack.start_worker("worker", queues="email,default", concurrency=1)
    stack.start_beat()

    def encoding() -> bool:  # a live attempt: processing, and its heartbeat (every second) is fresh
        fresh = MediaItem.heartbeat_at > func.now() - timedelta(seconds=2)
        return count(app, MediaItem, MediaItem.status == "processing", fresh) > 0

    started = time.monotonic()
    with (
        Supervisor(media_worker) as supervisor,
        Killer(supervisor, KILL_GAP, scale.media_kills, encoding) as killer,
    ):
        with publishing_to(app, stack.env["CELERY_BROKER_URL"]), app.app_context():
            for media_id in ids:  # what the upload-complete request does
                enqueue_after_commit(db.session, "media.ingest", str(media_id))
            db.session.commit()
        wait_quiescent(
            app,
            lambda: killer.kills >= scale.media_kills or count(app, MediaItem, MediaItem.status == "ready") == len(ids),
            scale.settle_timeout,
            "the kills mid-encode",
            stack.report,
        )
        killer.stop()
        assert killer.kills >= 1, "every clip was ingested before the killer saw one encoding"
        wait_quiescent(
            app,
            lambda: count(app, MediaItem, MediaItem.status == "ready") == len(ids),
            scale.settle_timeout,
            "every media item ready",
            stack.report,
        )
    with app.app_context():
        ready = list(db.session.scalars(select(MediaItem).where(MediaItem.id.in_(ids))))
    wait_quiescent(app, lambda: not stale_outputs_left(storage, ready), 60, "stale attempts purged", stack.report)

    assert {media.status for media in ready} == {"ready"}
    assert all(media.error_message is None and media.job_id for media in ready)
    retried = sum(1 for media in ready if media.attempts > 1)
    assert retried >= 1  # at least the item the kill interrupted was taken back and ingested again
    segments = sum(check_outputs(storage, media) for media in ready)
    print(
        f"\nchaos media: {len(ready)} clips ready in {time.monotonic() - started:.1f}s after {killer.kills} kills "
        f"(restarts {supervisor.restarts}); {retried} ingested more than once; {segments} segments checked; "
        f"{pipeline_state(app)}"
    )
