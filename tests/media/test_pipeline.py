"""The ingest pipeline against real ffmpeg, local storage and the rolled-back test transaction.

``run_ingest`` (the task body) is called directly with ``db_session``; its commits become
savepoints. Outputs are checked in storage, the row and the email outbox.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import func, select, update

from app.content.models import Content
from app.media import ffmpeg, sweepers, transcode
from app.media.ingest import heartbeat, run_ingest
from app.media.job import Heartbeat, IngestFailure, Job, MediaSettings
from app.media.models import MediaItem
from app.notifications.models import EmailOutbox
from app.storage import keys
from app.storage.base import ObjectInfo, Storage, StorageError
from tests.factories import MediaItemFactory, UserFactory
from tests.media.conftest import Clips, MediaEnv


def ingest(env: MediaEnv, media: MediaItem, job_id: str | None = None, **kwargs: Any) -> str:
    return run_ingest(env.session, media.id, job_id or f"job-{uuid.uuid4()}", settings=env.settings, **kwargs)


def playlist(env: MediaEnv, key: str) -> str:
    return env.storage.get_bytes(key).decode()


def outbox(env: MediaEnv, media: MediaItem) -> list[EmailOutbox]:
    rows = env.session.scalars(
        select(EmailOutbox).where(EmailOutbox.dedupe_key.like(f"%:{media.id}:%")).order_by(EmailOutbox.created_at)
    )
    return list(rows)


def stored(env: MediaEnv, media: MediaItem) -> list[str]:
    return list(env.storage.list_keys(keys.media_prefix(media.organization_id, media.id)))


def assert_rendition_complete(env: MediaEnv, media: MediaItem, attempt: int, name: str, duration: float) -> None:
    key = keys.hls_rendition_playlist_key(media.organization_id, media.id, attempt, name)
    entries = transcode.parse_media_playlist(playlist(env, key))
    assert playlist(env, key).rstrip().endswith("#EXT-X-ENDLIST")
    assert sum(d for d, _ in entries) == pytest.approx(duration, abs=max(2.0, 0.02 * duration))
    for index in range(1, len(entries) + 1):
        info = env.storage.head(keys.hls_segment_key(media.organization_id, media.id, attempt, name, index))
        assert info is not None and info.size > 0


def content_using(env: MediaEnv, media: MediaItem, title: str) -> Content:
    """A free draft content item of the media's org pointing at ``media`` (flushed)."""
    content = Content(
        organization_id=media.organization_id,
        created_by=media.created_by,
        media_id=media.id,
        title=title,
        slug=f"{title.lower()}-{uuid.uuid4().hex[:8]}",
        content_type="video",
        visibility="public",
        currency="usd",
    )
    env.session.add(content)
    env.session.flush()
    return content


# ---- happy paths ----------------------------------------------------------------------------


def test_video_ingest_goes_ready_with_one_360p_rendition(media_env: MediaEnv, clips: Clips) -> None:
    user = UserFactory(name="Ada Creator")
    media = MediaItemFactory(created_by=user.id, title="Lesson 1")
    media_env.put_original(media, clips.video(640, 360))

    assert ingest(media_env, media, "job-1") == "ready"

    row = media_env.refresh(media)
    assert row.status == "ready" and row.attempts == 1 and row.job_id == "job-1"
    assert row.renditions == ["360p"]
    assert (row.width, row.height, row.duration_seconds) == (640, 360, 4)
    assert row.error_message is None and row.ready_at is not None and row.loudness_lufs is None
    org, mid = media.organization_id, media.id
    assert row.hls_master_key == keys.hls_master_key(org, mid, 1)
    assert row.hls_preview_key == keys.hls_preview_playlist_key(org, mid, 1)
    assert row.thumbnail_key == keys.thumbnail_key(org, mid, 1)
    assert row.waveform_key is None

    master = playlist(media_env, row.hls_master_key)
    assert master.count("#EXT-X-STREAM-INF") == 1
    assert "RESOLUTION=640x360" in master and 'CODECS="avc1.64' in master and "mp4a.40.2" in master
    assert "360p/index.m3u8" in master and "720p" not in master and "480p" not in master
    assert_rendition_complete(media_env, media, 1, "360p", 3.5)
    assert_rendition_complete(media_env, media, 1, "preview", 3.5)
    thumb = media_env.storage.head(row.thumbnail_key)
    assert thumb is not None and thumb.size > 0
    assert media_env.storage.get_bytes(row.thumbnail_key)[:2] == b"\xff\xd8"  # JPEG

    [email] = outbox(media_env, media)
    assert (email.template, email.recipient, email.user_id) == ("media-ready", user.email, user.id)
    assert email.dedupe_key == f"media-ready:{mid}:1" and email.organization_id == org
    assert email.context["media_title"] == "Lesson 1"
    assert email.context["media_url"] == f"{media_env.app.config['FRONTEND_URL']}/studio/{org}/media/{mid}"
    assert "email.send" in media_env.names()
    assert ("media.purge_stale_outputs", (str(mid),), None) in media_env.sent


def test_content_using_the_media_reloads_its_snapshot_when_it_is_ready(media_env: MediaEnv, clips: Clips) -> None:
    """Content may point at media still processing; once ingest commits ``ready`` its snapshot token is
    replaced, so the stream stops answering MEDIA_NOT_READY at once (not after the snapshot's 10 s)."""
    from app.content.cache import gen_key

    media = MediaItemFactory()
    content = content_using(media_env, media, "Waiting")
    media_env.session.commit()
    cache = media_env.app.extensions["redis"]
    cache.delete(gen_key(content.id))
    media_env.put_original(media, clips.video(640, 360))

    assert ingest(media_env, media) == "ready"
    assert cache.get(gen_key(content.id))  # a fresh token, written after the commit


def test_720p_source_gets_three_renditions(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(1280, 720))

    assert ingest(media_env, media) == "ready"

    row = media_env.refresh(media)
    assert row.renditions == ["720p", "480p", "360p"]
    master = playlist(media_env, row.hls_master_key or "")
    resolutions = [line.split("RESOLUTION=")[1].split(",")[0] for line in master.splitlines() if "RESOLUTION" in line]
    assert resolutions == ["1280x720", "852x480", "640x360"]
    for name in row.renditions:
        assert_rendition_complete(media_env, media, 1, name, 3.5)
    # The preview is cut from the 720p rendition.
    preview_seg = keys.hls_segment_key(media.organization_id, media.id, 1, "preview", 1)
    seg_720 = keys.hls_segment_key(media.organization_id, media.id, 1, "720p", 1)
    assert media_env.storage.get_bytes(preview_seg) == media_env.storage.get_bytes(seg_720)


def test_rotated_phone_video_is_portrait(media_env: MediaEnv, clips: Clips, tmp_path: Path) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.rotated())

    assert ingest(media_env, media) == "ready"

    row = media_env.refresh(media)
    assert (row.width, row.height) == (720, 1280)
    assert row.renditions == ["720p", "480p", "360p"]
    master = playlist(media_env, row.hls_master_key or "")
    assert "RESOLUTION=720x1280" in master and "RESOLUTION=480x852" in master and "RESOLUTION=360x640" in master
    thumb = tmp_path / "thumb.jpg"
    media_env.storage.download_file(row.thumbnail_key or "", thumb)
    probed = ffmpeg.probe(thumb)
    assert probed.video is not None and (probed.video.width, probed.video.height) == (720, 1280)


def test_small_silent_video_gets_one_video_only_source_rendition(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(320, 240, 2, audio=False))

    assert ingest(media_env, media) == "ready"

    row = media_env.refresh(media)
    assert row.renditions == ["source"] and (row.width, row.height, row.duration_seconds) == (320, 240, 2)
    master = playlist(media_env, row.hls_master_key or "")
    assert "RESOLUTION=320x240" in master and "source/index.m3u8" in master and "mp4a" not in master
    assert_rendition_complete(media_env, media, 1, "source", 2.0)
    assert_rendition_complete(media_env, media, 1, "preview", 2.0)


def test_audio_ingest_normalises_and_draws_a_waveform(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory(media_type="audio", mime_type="audio/mpeg")
    media_env.put_original(media, clips.tone(3.5))

    assert ingest(media_env, media) == "ready"

    row = media_env.refresh(media)
    assert row.renditions == ["128k", "64k"]
    assert row.thumbnail_key is None and row.width is None and row.height is None
    assert row.loudness_lufs is not None and -40 < float(row.loudness_lufs) < 0
    master = playlist(media_env, row.hls_master_key or "")
    assert master.count('CODECS="mp4a.40.2"') == 2 and "RESOLUTION" not in master
    assert master.index("128k/index.m3u8") < master.index("64k/index.m3u8")
    probed = ffmpeg.probe(clips.tone(3.5))
    assert probed.duration is not None
    for name in ("128k", "64k", "preview"):
        assert_rendition_complete(media_env, media, 1, name, probed.duration)

    assert row.waveform_key == keys.waveform_key(media.organization_id, media.id, 1)
    doc = json.loads(media_env.storage.get_bytes(row.waveform_key))
    assert (doc["version"], doc["points_per_second"], doc["duration_seconds"]) == (1, 10, 4)
    assert len(doc["peaks"]) == math.ceil(probed.duration * 10)
    assert all(0 <= p <= 1 for p in doc["peaks"]) and max(doc["peaks"]) > 0.05
    [email] = outbox(media_env, media)
    assert email.template == "media-ready" and email.context["duration"] == 4


def test_outputs_have_their_content_types(media_env: MediaEnv, clips: Clips) -> None:
    recorded: dict[str, str] = {}

    class Recording(Wrapped):
        def put_file(self, key: str, path: Path, content_type: str) -> None:
            recorded[key] = content_type
            super().put_file(key, path, content_type)

    media = MediaItemFactory()
    media_env.put_original(media, clips.video(640, 360))
    assert ingest(media_env, media, storage=Recording(media_env.storage)) == "ready"
    kinds = {key.rsplit(".", 1)[1]: value for key, value in recorded.items()}
    assert kinds == {
        "m3u8": "application/vnd.apple.mpegurl",
        "ts": "video/mp2t",
        "jpg": "image/jpeg",
    }
    assert all(keys.output_attempt(key) == 1 for key in recorded)


# ---- deterministic failures ----------------------------------------------------------------


def test_ftyp_garbage_fails_with_a_readable_error_and_emails_the_uploader(media_env: MediaEnv, clips: Clips) -> None:
    user = UserFactory()
    media = MediaItemFactory(created_by=user.id, title="Broken")
    media_env.put_original(media, clips.garbage())

    assert ingest(media_env, media) == "failed"

    row = media_env.refresh(media)
    assert row.status == "failed" and row.attempts == 1
    assert row.error_message == "The file could not be read as audio or video."
    assert row.hls_master_key is None
    assert stored(media_env, media) == [media.original_key]  # the attempt left nothing behind
    [email] = outbox(media_env, media)
    assert (email.template, email.recipient, email.user_id) == ("media-failed", user.email, user.id)
    assert email.dedupe_key == f"media-failed:{media.id}:1"
    assert email.context["error_message"] == "The file could not be read as audio or video."
    assert email.context["attempts_left"] == 2
    assert "media.ingest" not in media_env.names()  # no automatic retry


@pytest.mark.parametrize(
    ("media_type", "mime", "clip", "message"),
    [
        ("video", "video/mp4", "tone_mp4", "The file has no video stream."),
        ("audio", "audio/mp4", "silent_video", "The file has no audio stream."),
        ("video", "video/mp4", "short", "Duration must be between 1 second and 24 hours."),
    ],
)
def test_probe_checks(media_env: MediaEnv, clips: Clips, media_type: str, mime: str, clip: str, message: str) -> None:
    path = {
        "tone_mp4": lambda: clips.tone_mp4(),
        "silent_video": lambda: clips.video(320, 240, 2, audio=False),
        "short": lambda: clips.video(320, 240, 0.5),
    }[clip]()
    media = MediaItemFactory(media_type=media_type, mime_type=mime)
    media_env.put_original(media, path)

    assert ingest(media_env, media) == "failed"
    assert media_env.refresh(media).error_message == message


def test_probe_rejects_huge_dimensions(tmp_path: Path) -> None:
    probed = ffmpeg.ProbeResult("mov", 10.0, ffmpeg.VideoStream(0, "h264", 8192, 4320), None)
    settings = MediaSettings()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ffmpeg, "probe", lambda *a, **k: probed)
        with pytest.raises(IngestFailure) as info:
            transcode.check_probe("video", tmp_path / "x.mp4", settings, demuxer="mov")
    assert info.value.message == "Video dimensions exceed 7680×4320."  # noqa: RUF001


def test_ffmpeg_failure_is_transcoding_failed(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(640, 360))
    broken = MediaSettings(**{**media_env.settings.__dict__, "x264_preset": "no-such-preset"})

    assert run_ingest(media_env.session, media.id, "job-x", settings=broken) == "failed"
    row = media_env.refresh(media)
    assert row.status == "failed" and row.error_message == "Transcoding failed."
    assert stored(media_env, media) == [media.original_key]


def test_missing_ffmpeg_is_transient(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(640, 360))
    missing = MediaSettings(**{**media_env.settings.__dict__, "ffprobe": "/nonexistent/ffprobe"})

    assert run_ingest(media_env.session, media.id, "job-m", settings=missing) == "retry"
    row = media_env.refresh(media)
    assert (row.status, row.error_message) == ("uploaded", "Processing was interrupted and will be retried.")


def test_soft_time_limit_is_processing_took_too_long(media_env: MediaEnv, clips: Clips) -> None:
    class Slow(Wrapped):
        def download_file(self, key: str, path: Path, *, if_match: str | None = None) -> None:
            raise SoftTimeLimitExceeded()

    media = MediaItemFactory()
    assert ingest(media_env, media, storage=Slow(media_env.storage)) == "failed"
    assert media_env.refresh(media).error_message == "Processing took too long."


def test_output_validation(tmp_path: Path) -> None:
    folder = tmp_path / "360p"
    folder.mkdir()
    (folder / "seg_00001.ts").write_bytes(b"x" * 10)
    good = "#EXTM3U\n#EXTINF:6.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n"
    (folder / "index.m3u8").write_text(good)
    assert transcode.validate_playlist(folder, 6.5) == [(6.0, "seg_00001.ts")]
    assert transcode.validate_playlist(folder, 7.9)  # within 2 s
    bad = {
        "no endlist": "#EXTM3U\n#EXTINF:6.0,\nseg_00001.ts\n",
        "too short": "#EXTM3U\n#EXTINF:3.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n",
        "missing segment": "#EXTM3U\n#EXTINF:6.0,\nseg_00002.ts\n#EXT-X-ENDLIST\n",
        "odd name": "#EXTM3U\n#EXTINF:6.0,\n../x.ts\n#EXT-X-ENDLIST\n",
        "no extinf": "#EXTM3U\nseg_00001.ts\n#EXT-X-ENDLIST\n",
    }
    for text in bad.values():
        (folder / "index.m3u8").write_text(text)
        with pytest.raises(IngestFailure) as info:
            transcode.validate_playlist(folder, 6.0)
        assert info.value.message == "Output validation failed."
    # 2 % beats 2 s for long media: 1000 s listed for 1030 s probed is off by more than 20 s.
    (folder / "index.m3u8").write_text("#EXTM3U\n#EXTINF:1000.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n")
    assert transcode.validate_playlist(folder, 1019.0)
    with pytest.raises(IngestFailure):
        transcode.validate_playlist(folder, 1030.0)


def test_preview_takes_the_first_30_seconds(tmp_path: Path) -> None:
    source = tmp_path / "720p"
    source.mkdir()
    lines = ["#EXTM3U"]
    for i in range(1, 11):
        (source / f"seg_{i:05d}.ts").write_bytes(bytes([i]))
        lines += ["#EXTINF:6.000000,", f"seg_{i:05d}.ts"]
    (source / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST"]))
    transcode.make_preview(source, tmp_path / "preview", 30.0)
    entries = transcode.validate_playlist(tmp_path / "preview", 30.0)
    assert [uri for _, uri in entries] == [f"seg_{i:05d}.ts" for i in range(1, 6)]
    assert (tmp_path / "preview" / "seg_00005.ts").read_bytes() == bytes([5])


# ---- transient failures, retries, duplicates --------------------------------------------------


class Wrapped:
    """Delegates to a real storage; subclasses break one method."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self.inner.put_file(key, path, content_type)

    def download_file(self, key: str, path: Path, *, if_match: str | None = None) -> None:
        self.inner.download_file(key, path, if_match=if_match)

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(key)


class FlakyUploads(Wrapped):
    """Fails every upload after the first ``ok`` ones."""

    def __init__(self, inner: Storage, ok: int) -> None:
        super().__init__(inner)
        self.ok = ok

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        if self.ok <= 0:
            raise StorageError("s3 upload failed: EndpointConnectionError")
        self.ok -= 1
        super().put_file(key, path, content_type)


def test_storage_outage_goes_back_to_uploaded_and_retries_in_120_s(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(640, 360))

    assert ingest(media_env, media, storage=FlakyUploads(media_env.storage, ok=2)) == "retry"

    row = media_env.refresh(media)
    assert row.status == "uploaded" and row.attempts == 1
    assert row.error_message == "Processing was interrupted and will be retried."
    assert ("media.ingest", (str(media.id),), 120) in media_env.sent
    assert stored(media_env, media) == [media.original_key]  # partial uploads discarded
    assert outbox(media_env, media) == []


def test_transient_failure_on_the_last_attempt_fails_for_good(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory(attempts=2)  # MEDIA_MAX_ATTEMPTS is 3: the next claim is the last
    media_env.put_original(media, clips.video(640, 360))

    assert ingest(media_env, media, storage=FlakyUploads(media_env.storage, ok=0)) == "failed"

    row = media_env.refresh(media)
    assert (row.status, row.attempts, row.error_message) == ("failed", 3, "Processing failed repeatedly.")
    [email] = outbox(media_env, media)
    assert email.template == "media-failed" and email.context["attempts_left"] == 0
    assert email.dedupe_key == f"media-failed:{media.id}:3"
    assert "media.ingest" not in media_env.names()


def test_retry_after_failure_counts_attempts_and_uses_a_new_prefix(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.garbage())
    assert ingest(media_env, media) == "failed"

    # What POST /media/{id}/retry does: failed -> uploaded (the user re-uploaded a good file meanwhile).
    media_env.session.execute(
        update(MediaItem).where(MediaItem.id == media.id).values(status="uploaded", error_message=None)
    )
    media_env.put_original(media, clips.video(640, 360))
    assert ingest(media_env, media) == "ready"

    row = media_env.refresh(media)
    assert row.attempts == 2 and row.status == "ready"
    assert row.hls_master_key == keys.hls_master_key(media.organization_id, media.id, 2)
    assert [e.dedupe_key for e in outbox(media_env, media)] == [
        f"media-failed:{media.id}:1",
        f"media-ready:{media.id}:2",
    ]


def test_duplicate_message_for_a_ready_item_does_nothing(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(640, 360))
    assert ingest(media_env, media, "job-1") == "ready"
    before = media_env.refresh(media)
    snapshot = (before.attempts, before.job_id, before.hls_master_key, before.updated_at)
    objects = stored(media_env, media)

    assert ingest(media_env, media, "job-2") == "skipped"

    after = media_env.refresh(media)
    assert (after.attempts, after.job_id, after.hls_master_key, after.updated_at) == snapshot
    assert stored(media_env, media) == objects
    assert len(outbox(media_env, media)) == 1


def test_deleted_or_processing_items_are_not_claimed(media_env: MediaEnv) -> None:
    deleted = MediaItemFactory(deleted_at=func.now())
    busy = MediaItemFactory(status="processing", job_id="other", attempts=1)
    assert ingest(media_env, deleted) == "skipped"
    assert ingest(media_env, busy) == "skipped"
    assert media_env.refresh(busy).job_id == "other"


def test_media_deleted_while_processing_discards_the_attempt(media_env: MediaEnv, clips: Clips) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(640, 360))

    class DeleteAfterDownload(Wrapped):
        def download_file(self, key: str, path: Path, *, if_match: str | None = None) -> None:
            super().download_file(key, path, if_match=if_match)
            # DELETE /media/{id} while ffmpeg runs: the next heartbeat finds no row of ours.
            media_env.as_other_actor(update(MediaItem).where(MediaItem.id == media.id).values(deleted_at=func.now()))

    assert ingest(media_env, media, storage=DeleteAfterDownload(media_env.storage)) == "cancelled"
    row = media_env.refresh(media)
    assert row.deleted_at is not None
    assert row.status == "processing" and row.hls_master_key is None  # status unchanged by a delete
    assert stored(media_env, media) == [media.original_key]
    assert outbox(media_env, media) == []


def test_a_superseded_attempt_never_touches_the_row(media_env: MediaEnv, clips: Clips) -> None:
    """The stall detector re-ran the item; the old worker finishes late: its outputs go, the row stays."""
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(640, 360))
    session = media_env.session

    class Reclaimed(Wrapped):
        def download_file(self, key: str, path: Path, *, if_match: str | None = None) -> None:
            super().download_file(key, path, if_match=if_match)
            media_env.as_other_actor(update(MediaItem).where(MediaItem.id == media.id).values(job_id="newer-job"))

    settings = MediaSettings(**{**media_env.settings.__dict__, "heartbeat_interval": 3600.0})
    result = run_ingest(session, media.id, "old-job", settings=settings, storage=Reclaimed(media_env.storage))
    assert result == "superseded"
    row = media_env.refresh(media)
    assert (row.status, row.job_id, row.hls_master_key) == ("processing", "newer-job", None)
    assert stored(media_env, media) == [media.original_key]


def test_heartbeat_is_guarded_by_the_claim(media_env: MediaEnv) -> None:
    media = MediaItemFactory(status="processing", job_id="j1", attempts=1)
    job = Job.from_media(media, "j1")
    assert heartbeat(media_env.session, job) is True
    assert heartbeat(media_env.session, Job.from_media(media, "j2")) is False

    beats: list[int] = []
    hb = Heartbeat(lambda: beats.append(1) is None, interval=3600)
    assert hb(None) is True and beats == []  # throttled
    hb.interval = 0
    assert hb(ffmpeg.Progress(1.0, "1x", False)) is True and beats == [1]

    def broken() -> bool:
        raise StorageError("db down")

    assert Heartbeat(broken, interval=0)(None) is True  # errors do not stop the work


# ---- sweepers and purges --------------------------------------------------------------------


def ago(minutes: float) -> Any:
    return func.now() - timedelta(minutes=minutes)


def test_recover_stuck_requeues_stalled_items(media_env: MediaEnv) -> None:
    stalled = MediaItemFactory(status="processing", job_id="j1", attempts=1, heartbeat_at=ago(20))
    exhausted = MediaItemFactory(status="processing", job_id="j2", attempts=3, heartbeat_at=ago(20))
    alive = MediaItemFactory(status="processing", job_id="j3", attempts=1, heartbeat_at=ago(1))

    report = sweepers.recover_stuck(media_env.session, media_env.settings)
    media_env.session.commit()

    assert report.stalled == 2
    row = media_env.refresh(stalled)
    assert (row.status, row.error_message, row.attempts) == ("uploaded", "Processing stalled.", 1)
    assert ("media.ingest", (str(stalled.id),), 120) in media_env.sent
    gone = media_env.refresh(exhausted)
    assert (gone.status, gone.error_message) == ("failed", "Processing failed repeatedly.")
    assert [e.template for e in outbox(media_env, exhausted)] == ["media-failed"]
    assert media_env.refresh(alive).status == "processing"


def test_recover_stuck_resends_lost_messages_and_purges(media_env: MediaEnv) -> None:
    waiting = MediaItemFactory(status="uploaded", updated_at=ago(11))
    fresh = MediaItemFactory(status="uploaded", updated_at=ago(1))
    unpurged = MediaItemFactory(status="failed", deleted_at=ago(11))
    recent_delete = MediaItemFactory(status="failed", deleted_at=ago(1))
    purged = MediaItemFactory(status="failed", deleted_at=ago(60), purged_at=ago(50))

    report = sweepers.recover_stuck(media_env.session, media_env.settings)
    media_env.session.commit()

    assert (report.resent, report.purges) == (1, 1)
    assert ("media.ingest", (str(waiting.id),), None) in media_env.sent
    assert ("media.purge_storage", (str(unpurged.id),), None) in media_env.sent
    mentioned = {args[0] for _, args, _ in media_env.sent}
    assert {str(fresh.id), str(recent_delete.id), str(purged.id)}.isdisjoint(mentioned)


def test_reap_abandoned_uploads(media_env: MediaEnv) -> None:
    old = MediaItemFactory(status="uploading", created_at=ago(25 * 60))
    young = MediaItemFactory(status="uploading", created_at=ago(60))
    in_use = MediaItemFactory(status="uploading", created_at=ago(25 * 60))
    content_using(media_env, in_use, "Draft")

    assert sweepers.reap_abandoned_uploads(media_env.session) == [old.id]
    media_env.session.commit()
    assert media_env.refresh(old).deleted_at is not None
    assert media_env.refresh(young).deleted_at is None and media_env.refresh(in_use).deleted_at is None
    assert media_env.sent == [("media.purge_storage", (str(old.id),), None)]


def put_outputs(env: MediaEnv, media: MediaItem, attempt: int) -> list[str]:
    org, mid = media.organization_id, media.id
    made = [
        keys.hls_master_key(org, mid, attempt),
        keys.hls_segment_key(org, mid, attempt, "360p", 1),
        keys.thumbnail_key(org, mid, attempt),
        keys.waveform_key(org, mid, attempt),
    ]
    for key in made:
        env.storage.put_bytes(key, b"x", keys.content_type_for(key))
    return made


def test_purge_stale_outputs_keeps_the_original_and_the_current_attempt(media_env: MediaEnv) -> None:
    media = MediaItemFactory(status="uploaded")
    media_env.storage.put_bytes(media.original_key, b"orig", "video/mp4")
    put_outputs(media_env, media, 1)
    current = put_outputs(media_env, media, 2)
    put_outputs(media_env, media, 3)  # an abandoned later attempt
    media_env.session.execute(
        update(MediaItem)
        .where(MediaItem.id == media.id)
        .values(status="ready", attempts=2, hls_master_key=current[0], hls_preview_key=current[0],
                thumbnail_key=current[2], duration_seconds=4, width=640, height=360, ready_at=func.now(),
                renditions=["360p"])
    )  # fmt: skip

    assert sweepers.purge_stale_outputs(media_env.session, media.id, media_env.storage) == [1, 3]
    assert sorted(stored(media_env, media)) == sorted([media.original_key, *current])
    assert sweepers.purge_stale_outputs(media_env.session, media.id, media_env.storage) == []


def test_purge_stale_outputs_skips_items_that_are_not_ready(media_env: MediaEnv) -> None:
    media = MediaItemFactory(status="failed")
    made = put_outputs(media_env, media, 1)
    assert sweepers.purge_stale_outputs(media_env.session, media.id, media_env.storage) == []
    assert sorted(stored(media_env, media)) == sorted(made)


def test_purge_storage_only_for_deleted_media(media_env: MediaEnv) -> None:
    live = MediaItemFactory()
    media_env.storage.put_bytes(live.original_key, b"orig", "video/mp4")
    assert sweepers.purge_storage(media_env.session, live.id, media_env.storage) is False
    assert stored(media_env, live) == [live.original_key]

    deleted = MediaItemFactory(deleted_at=func.now())
    media_env.storage.put_bytes(deleted.original_key, b"orig", "video/mp4")
    put_outputs(media_env, deleted, 1)
    assert sweepers.purge_storage(media_env.session, deleted.id, media_env.storage) is True
    assert stored(media_env, deleted) == []
    assert media_env.refresh(deleted).purged_at is not None
    assert sweepers.purge_storage(media_env.session, deleted.id, media_env.storage) is False  # once
    assert sweepers.purge_storage(media_env.session, uuid.uuid4(), media_env.storage) is False
