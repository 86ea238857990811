"""One ingest attempt's vocabulary (jobs.md §6): settings, the claimed ``Job``, its result, the
user-facing error messages and the exceptions an attempt raises, plus the ``Heartbeat`` progress
callback. No database access; ``ingest``, ``transcode`` and ``sweepers`` all build on it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog
from sqlalchemy.exc import InterfaceError, OperationalError

from app.config import media_hard_time_limit
from app.media import ffmpeg
from app.media.ffmpeg import Limits
from app.media.models import MediaItem
from app.storage import keys
from app.storage.base import StorageError

log = structlog.get_logger(__name__)

INGEST_TASK = "media.ingest"
PURGE_TASK = "media.purge_storage"
PURGE_STALE_TASK = "media.purge_stale_outputs"

HEARTBEAT_INTERVAL_SECONDS = 30.0  # the spec asks for at least every 60 s
MIN_DURATION, MAX_DURATION = 1.0, 86400.0

# User-facing error messages (jobs.md §6.1, §6.4): short, readable, stored in ``error_message``.
UNREADABLE = "The file could not be read as audio or video."
NO_VIDEO = "The file has no video stream."
NO_AUDIO = "The file has no audio stream."
BAD_DURATION = "Duration must be between 1 second and 24 hours."
TOO_LARGE = "Video dimensions exceed 7680×4320."  # noqa: RUF001 - the spec's text
TRANSCODE_FAILED = "Transcoding failed."
VALIDATION_FAILED = "Output validation failed."
TOO_LONG = "Processing took too long."
FAILED_REPEATEDLY = "Processing failed repeatedly."
STALLED = "Processing stalled."
UPLOAD_CHANGED = "The upload changed after it was completed."  # security.md §8
# Decision (the spec names no message for this state): shown while a transient error waits for its retry.
INTERRUPTED = "Processing was interrupted and will be retried."

# jobs.md §3: "transient errors everywhere" (storage outages, DB connection errors, Redis errors).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (StorageError, OperationalError, InterfaceError, redis.RedisError)


class IngestFailure(Exception):
    """A deterministic failure: the same input would fail again. ``message`` is user-facing."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # for logs only (ffmpeg stderr tail etc.)


class TransientIngestError(Exception):
    """Worth another attempt later (our own ffmpeg stall watchdog fired, say)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IngestCancelled(Exception):
    """The heartbeat lost the claim (media deleted, or the job was declared stalled and re-run)."""


# ---- settings and the job -----------------------------------------------------------------


@dataclass(frozen=True)
class MediaSettings:
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    x264_preset: str = "veryfast"
    max_attempts: int = 3
    stuck_after_seconds: int = 900
    heartbeat_interval: float = HEARTBEAT_INTERVAL_SECONDS
    # Resource limits of every ffmpeg/ffprobe child (security.md §8); the defaults are the config's.
    cpu_limit_seconds: int = media_hard_time_limit(7200)
    max_memory_mb: int = 4096
    max_video_bytes: int = 5 * 1024**3
    max_audio_bytes: int = 500 * 1024**2

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> MediaSettings:
        values: dict[str, Any] = {
            "ffmpeg": config["FFMPEG_PATH"],
            "ffprobe": config["FFPROBE_PATH"],
            "x264_preset": config["MEDIA_X264_PRESET"],
            "max_attempts": int(config["MEDIA_MAX_ATTEMPTS"]),
            "stuck_after_seconds": int(config["MEDIA_STUCK_AFTER_SECONDS"]),
            "cpu_limit_seconds": media_hard_time_limit(int(config["MEDIA_TASK_SOFT_TIME_LIMIT"])),
            "max_memory_mb": int(config["MEDIA_FFMPEG_MAX_MEMORY_MB"]),
            "max_video_bytes": int(config["MEDIA_MAX_VIDEO_BYTES"]),
            "max_audio_bytes": int(config["MEDIA_MAX_AUDIO_BYTES"]),
        }
        values.update(overrides)
        return cls(**values)

    def limits(self, media_type: str) -> Limits:
        """RLIMIT_CPU: the task's hard limit; RLIMIT_AS: the memory cap; RLIMIT_FSIZE: 4 times the type's limit."""
        type_limit = self.max_video_bytes if media_type == "video" else self.max_audio_bytes
        return Limits(
            cpu_seconds=self.cpu_limit_seconds,
            memory_bytes=self.max_memory_mb * 1024 * 1024,
            file_bytes=4 * type_limit,
        )


@dataclass(frozen=True)
class Job:
    """One claimed attempt: what ``process`` needs, detached from the ORM row."""

    media_id: uuid.UUID
    organization_id: uuid.UUID
    media_type: str
    original_key: str
    attempt: int
    job_id: str
    upload_etag: str | None = None  # None: a row uploaded before ETags were pinned (nothing to compare)

    @classmethod
    def from_media(cls, media: MediaItem, job_id: str) -> Job:
        return cls(
            media.id,
            media.organization_id,
            media.media_type,
            media.original_key,
            media.attempts,
            job_id,
            media.upload_etag,
        )

    @property
    def mime_type(self) -> str:
        """The declared MIME type (the original's key was built from it)."""
        parsed = keys.parse_original_key(self.original_key)
        if parsed is None:  # pragma: no cover - keys are only built by keys.original_key
            raise IngestFailure(UNREADABLE, f"not an original key: {self.original_key}")
        return parsed[2]

    def prefixes(self) -> tuple[str, ...]:
        return keys.attempt_prefixes(self.organization_id, self.media_id, self.attempt)


@dataclass
class IngestResult:
    renditions: list[str]
    hls_master_key: str
    hls_preview_key: str
    duration: float
    thumbnail_key: str | None = None
    waveform_key: str | None = None
    width: int | None = None  # source, display-rotated
    height: int | None = None
    loudness_lufs: float | None = None
    uploaded_keys: list[str] = field(default_factory=list)

    @property
    def duration_seconds(self) -> int:
        return min(int(MAX_DURATION), max(1, round(self.duration)))


# ---- heartbeat ----------------------------------------------------------------------------


class Heartbeat:
    """Progress callback for ``ffmpeg.run`` and the upload loop: beats at most every ``interval`` s.

    ``beat()`` runs the heartbeat UPDATE (its own short transaction) and returns False when the
    claim is gone; a database error while beating is logged and ignored, since the stall detector
    is the safety net. Each beat logs the stage and its progress (``media.progress``).
    """

    def __init__(self, beat: Callable[[], bool], interval: float = HEARTBEAT_INTERVAL_SECONDS) -> None:
        self._beat = beat
        self.interval = interval
        self.stage = "start"
        self.total: float | None = None
        self.beats = 0
        self._last = time.monotonic()

    def set_stage(self, stage: str, total: float | None = None) -> None:
        self.stage, self.total = stage, total

    def __call__(self, progress: ffmpeg.Progress | None = None) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval:
            return True
        self._last = now
        percent = None
        if progress is not None and progress.out_time is not None and self.total:
            percent = min(100.0, round(100 * progress.out_time / self.total, 1))
        log.info("media.progress", stage=self.stage, percent=percent)
        try:
            alive = self._beat()
        except TRANSIENT_ERRORS as exc:
            log.warning("media.heartbeat_failed", error=type(exc).__name__)
            return True
        self.beats += 1
        return alive
