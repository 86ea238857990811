"""The media tasks: registration, retries, the beat entries, a real worker end to end, and S3."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from celery.schedules import crontab
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import db
from app.jobs import queue_for
from app.media.models import MediaItem
from app.notifications.models import EmailOutbox
from app.storage import keys
from app.storage.base import ObjectNotFound, StorageError
from tasks import media as media_tasks
from tasks import storage as storage_tasks
from tasks.media import run_ingest
from tasks.schedule import beat_schedule
from tests import factories
from tests.factories import MediaItemFactory, UserFactory
from tests.media.conftest import Clips, Sent


def task(flask_app: Flask, name: str) -> Any:
    return flask_app.extensions["celery"].tasks[name]


# ---- registration ----------------------------------------------------------------------------


def test_tasks_are_registered_with_their_queues_and_limits(app: Flask) -> None:
    ingest = task(app, "media.ingest")
    assert ingest.acks_late and ingest.reject_on_worker_lost
    soft = app.config["MEDIA_TASK_SOFT_TIME_LIMIT"]
    assert (ingest.soft_time_limit, ingest.time_limit) == (soft, soft + 300)
    limits = (media_tasks.SOFT_LIMIT, media_tasks.HARD_LIMIT)
    assert limits == (soft, soft + 300)
    assert queue_for("media.ingest") == "media"
    for name in ("media.purge_storage", "media.purge_stale_outputs"):
        assert task(app, name).acks_late and (task(app, name).soft_time_limit, task(app, name).time_limit) == (300, 360)
        assert queue_for(name) == "default"
    for name in ("media.recover_stuck", "media.reap_abandoned_uploads"):
        assert (task(app, name).soft_time_limit, task(app, name).time_limit) == (60, 90)
        assert not task(app, name).acks_late
    delete = task(app, "storage.delete_object")
    assert (delete.soft_time_limit, delete.time_limit, queue_for("storage.delete_object")) == (30, 45, "default")


def test_beat_runs_the_media_sweepers(app: Flask) -> None:
    schedule = beat_schedule(app.extensions["codex_config"])
    assert schedule["media.recover_stuck"]["schedule"] == 300.0
    hourly = schedule["media.reap_abandoned_uploads"]["schedule"]
    assert isinstance(hourly, crontab) and hourly == crontab(minute=45)


# ---- task wrappers (eager, on the rolled-back session) ------------------------------------------


class AlwaysFailing:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def delete_prefix(self, prefix: str) -> int:
        self.calls += 1
        raise StorageError("s3 delete batch failed: EndpointConnectionError")

    def delete(self, key: str) -> None:
        self.calls += 1
        raise StorageError("s3 delete failed: EndpointConnectionError")


@contextmanager
def storage_swapped(flask_app: Flask, storage: Any) -> Iterator[None]:
    original = flask_app.extensions["storage"]
    flask_app.extensions["storage"] = storage
    try:
        yield
    finally:
        flask_app.extensions["storage"] = original


def record_countdowns(monkeypatch: pytest.MonkeyPatch, celery_task: Any) -> list[float]:
    countdowns: list[float] = []
    original = celery_task.retry

    def retry(*args: Any, **kwargs: Any) -> Any:
        countdowns.append(kwargs["countdown"])
        return original(*args, **kwargs)

    monkeypatch.setattr(celery_task, "retry", retry)
    return countdowns


def test_purge_storage_task_purges_deleted_media(app: Flask, db_session: Session, sent_tasks: Sent) -> None:
    media = MediaItemFactory(deleted_at=func.now())
    app.extensions["storage"].put_bytes(media.original_key, b"x", "video/mp4")
    assert task(app, "media.purge_storage").apply(args=[str(media.id)]).get() is True
    assert app.extensions["storage"].head(media.original_key) is None
    db_session.expire_all()
    assert db_session.get(MediaItem, media.id).purged_at is not None  # type: ignore[union-attr]
    assert task(app, "media.purge_storage").apply(args=["not-a-uuid"]).get() is False


def test_purge_storage_task_backs_off_five_tries(
    app: Flask, db_session: Session, sent_tasks: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = MediaItemFactory(deleted_at=func.now())
    broken = AlwaysFailing()
    purge = task(app, "media.purge_storage")
    countdowns = record_countdowns(monkeypatch, purge)
    with storage_swapped(app, broken):
        assert purge.apply(args=[str(media.id)]).get() is False
    assert broken.calls == 5
    assert countdowns == [30, 60, 120, 240]
    db_session.expire_all()
    assert db_session.get(MediaItem, media.id).purged_at is None  # type: ignore[union-attr]


def test_purge_stale_outputs_task_tries_three_times(
    app: Flask, db_session: Session, sent_tasks: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory()
    media = MediaItemFactory(created_by=user.id, status="failed")
    db_session.execute(
        update(MediaItem)
        .where(MediaItem.id == media.id)
        .values(status="ready", hls_master_key=keys.hls_master_key(media.organization_id, media.id, 2),
                hls_preview_key="p", thumbnail_key="t", duration_seconds=4, width=2, height=2,
                ready_at=func.now(), renditions=["360p"])
    )  # fmt: skip
    stale = keys.thumbnail_key(media.organization_id, media.id, 1)
    app.extensions["storage"].put_bytes(stale, b"x", "image/jpeg")
    purge = task(app, "media.purge_stale_outputs")
    assert purge.apply(args=[str(media.id)]).get() == 1
    assert app.extensions["storage"].head(stale) is None

    class ListsButFails(AlwaysFailing):
        def list_keys(self, prefix: str) -> Iterator[str]:
            yield stale

    broken = ListsButFails()
    countdowns = record_countdowns(monkeypatch, purge)
    with storage_swapped(app, broken):
        assert purge.apply(args=[str(media.id)]).get() == 0
    assert (broken.calls, countdowns) == (3, [30, 30])


def test_delete_object_is_best_effort(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"orgs/{uuid.uuid4()}/branding/logo-{uuid.uuid4()}.png"
    app.extensions["storage"].put_bytes(key, b"png", "image/png")
    delete = task(app, "storage.delete_object")
    assert delete.apply(args=[key]).get() is True
    assert app.extensions["storage"].head(key) is None
    assert delete.apply(args=[key]).get() is True  # already gone: success
    assert delete.apply(args=["../etc/passwd"]).get() is False

    class Missing:
        def delete(self, key: str) -> None:
            raise ObjectNotFound("missing")

    with storage_swapped(app, Missing()):
        assert delete.apply(args=[key]).get() is True
    broken = AlwaysFailing()
    countdowns = record_countdowns(monkeypatch, delete)
    with storage_swapped(app, broken):
        assert delete.apply(args=[key]).get() is False
    assert (broken.calls, countdowns) == (3, [30, 30])
    assert storage_tasks.TRIES == 3


def test_sweeper_tasks_commit_and_publish(app: Flask, db_session: Session, sent_tasks: Sent) -> None:
    waiting = MediaItemFactory(status="uploaded", updated_at=func.now() - timedelta(minutes=11))
    abandoned = MediaItemFactory(status="uploading", created_at=func.now() - timedelta(days=2))
    assert task(app, "media.recover_stuck").apply().get() == {"stalled": 0, "resent": 1, "purges": 0}
    assert task(app, "media.reap_abandoned_uploads").apply().get() == 1
    assert ("media.ingest", (str(waiting.id),), None) in sent_tasks
    assert ("media.purge_storage", (str(abandoned.id),), None) in sent_tasks


def test_ingest_task_skips_a_finished_item_and_bad_ids(
    app: Flask, db_session: Session, sent_tasks: Sent, clips: Clips
) -> None:
    media = MediaItemFactory(status="failed", attempts=1, error_message="Transcoding failed.")
    ingest = task(app, "media.ingest")
    assert ingest.apply(args=[str(media.id)], task_id="dup-1").get() == "skipped"
    assert ingest.apply(args=["nope"]).get() == "skipped"
    db_session.expire_all()
    row = db_session.get(MediaItem, media.id)
    assert row is not None and (row.status, row.attempts, row.job_id) == ("failed", 1, None)


# ---- end to end: a real worker ------------------------------------------------------------------


def wait_for(flask_app: Flask, media_id: uuid.UUID, status: str, timeout: float = 90) -> MediaItem:
    """Poll until the row reaches ``status``. Like the recover_stuck sweeper, send the ingest again
    when a row sits in ``uploaded`` for a while (the test broker's Redis DB is shared with any
    concurrent test run, which may flush it)."""
    deadline = time.monotonic() + timeout
    resend_at = time.monotonic() + 5
    row = None
    while time.monotonic() < deadline:
        with flask_app.app_context():
            row = db.session.get(MediaItem, media_id)
            if row is not None and row.status == status:
                return row
        if row is not None and row.status == "uploaded" and time.monotonic() > resend_at:
            flask_app.extensions["task_sender"]("media.ingest", (str(media_id),), None)
            resend_at = time.monotonic() + 5
        time.sleep(0.1)
    raise AssertionError(f"media is {row.status if row else None} ({row and row.error_message}), expected {status}")


def committed(flask_app: Flask, make: Callable[[], Any]) -> Any:
    """Run factories in a real, committed transaction (a worker thread must see the rows)."""
    with flask_app.app_context():
        factories.bind(db.session)
        try:
            made = make()
            db.session.commit()
        finally:
            factories.bind(None)
    return made


def emails(flask_app: Flask, media_id: uuid.UUID) -> list[EmailOutbox]:
    with flask_app.app_context():
        query = select(EmailOutbox).where(EmailOutbox.dedupe_key.like(f"%:{media_id}:%"))
        return list(db.session.scalars(query.order_by(EmailOutbox.created_at)))


@pytest.mark.e2e
def test_end_to_end_through_a_real_worker(committed_db: Flask, celery_worker: Any, clips: Clips) -> None:
    flask_app = committed_db
    storage = flask_app.extensions["storage"]

    def make() -> tuple[Any, ...]:
        user = UserFactory()
        return (
            user,
            MediaItemFactory(created_by=user.id, title="Video"),
            MediaItemFactory(created_by=user.id, media_type="audio", mime_type="audio/mpeg", title="Tone"),
            MediaItemFactory(created_by=user.id, title="Broken"),
        )

    user, video, tone, broken = committed(flask_app, make)
    storage.put_file(video.original_key, clips.video(640, 360), "video/mp4")
    storage.put_file(tone.original_key, clips.tone(), "audio/mpeg")
    storage.put_file(broken.original_key, clips.garbage(), "video/mp4")
    send = flask_app.extensions["task_sender"]
    for media in (video, tone, broken):
        send("media.ingest", (str(media.id),), None)

    ready = wait_for(flask_app, video.id, "ready")
    assert ready.renditions == ["360p"] and (ready.width, ready.height) == (640, 360) and ready.attempts == 1
    master = storage.get_bytes(ready.hls_master_key).decode()
    assert master.count("#EXT-X-STREAM-INF") == 1 and "RESOLUTION=640x360" in master
    assert storage.head(keys.hls_segment_key(video.organization_id, video.id, 1, "360p", 1)) is not None
    assert storage.head(ready.hls_preview_key) is not None and storage.head(ready.thumbnail_key) is not None
    assert wait_for(flask_app, tone.id, "ready").renditions == ["128k", "64k"]

    failed = wait_for(flask_app, broken.id, "failed")
    assert failed.error_message == "The file could not be read as audio or video." and failed.attempts == 1
    [mail] = emails(flask_app, broken.id)
    assert (mail.template, mail.recipient, mail.context["attempts_left"]) == ("media-failed", user.email, 2)
    assert [m.template for m in emails(flask_app, video.id)] == ["media-ready"]

    # Retry after the failure (what POST /media/{id}/retry does), with a good file this time.
    storage.put_file(broken.original_key, clips.video(640, 360), "video/mp4")
    with flask_app.app_context():
        db.session.execute(
            update(MediaItem).where(MediaItem.id == broken.id).values(status="uploaded", error_message=None)
        )
        db.session.commit()
    send("media.ingest", (str(broken.id),), None)
    retried = wait_for(flask_app, broken.id, "ready")
    assert retried.attempts == 2 and retried.hls_master_key == keys.hls_master_key(broken.organization_id, broken.id, 2)

    # A duplicate message for the finished item: the claim finds nothing to do.
    send("media.ingest", (str(video.id),), None)
    assert task(flask_app, "media.ingest").apply(args=[str(video.id)], task_id="dup").get() == "skipped"
    time.sleep(1.0)
    again = wait_for(flask_app, video.id, "ready")
    assert (again.attempts, again.job_id, again.updated_at) == (1, ready.job_id, ready.updated_at)
    assert len(emails(flask_app, video.id)) == 1


# ---- S3 (moto's server) ----------------------------------------------------------------------


@pytest.mark.e2e
def test_ingest_and_purge_on_s3(committed_db: Flask, app_factory: Any, s3_server: str, clips: Clips) -> None:
    s3_app: Flask = app_factory(
        STORAGE_BACKEND="s3",
        S3_ENDPOINT_URL=s3_server,
        S3_BUCKET=f"codex-media-{uuid.uuid4().hex[:12]}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    storage = s3_app.extensions["storage"]
    storage.ensure_bucket()
    sent: Sent = []
    s3_app.extensions["task_sender"] = lambda name, args, countdown: sent.append((name, args, countdown))
    media = committed(s3_app, lambda: MediaItemFactory())
    storage.put_file(media.original_key, clips.video(640, 360), "video/mp4")

    with s3_app.app_context():
        assert run_ingest(db.session, media.id, "job-s3") == "ready"
        row = db.session.get(MediaItem, media.id)
        assert row is not None and row.hls_master_key and row.thumbnail_key
    master = storage.head(row.hls_master_key)
    assert master is not None and master.content_type == "application/vnd.apple.mpegurl"
    segment = storage.head(keys.hls_segment_key(media.organization_id, media.id, 1, "360p", 1))
    assert segment is not None and segment.content_type == "video/mp2t"
    assert storage.head(row.thumbnail_key).content_type == "image/jpeg"
    assert ("media.purge_stale_outputs", (str(media.id),), None) in sent

    with s3_app.app_context():
        db.session.execute(update(MediaItem).where(MediaItem.id == media.id).values(deleted_at=func.now()))
        db.session.commit()
        assert task(s3_app, "media.purge_storage").apply(args=[str(media.id)]).get() is True
    assert list(storage.list_keys(keys.media_prefix(media.organization_id, media.id))) == []
