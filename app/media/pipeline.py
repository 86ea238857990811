"""Media ingest and its housekeeping (jobs.md §6): the rules, without the transaction boundaries.

One ingest attempt, as driven by ``tasks.media.run_ingest`` (which owns the commits)::

    claim (commit) -> process() in a temp dir, heartbeating -> complete (commit)
                                      \\-> record_failure (commit) + discard_attempt

``process`` needs no database: it downloads the original (only the version upload-complete
checked: its pinned ETag), re-checks its magic bytes, probes it, runs ffmpeg, checks the outputs
and uploads them under the attempt's own prefix (``…/hls/a{n}/``, ``…/thumbnails/a{n}/``,
``…/waveforms/a{n}/``). Only the final conditional UPDATE points the row at them, so readers see
either the previous complete set of keys or the new one, and a failed attempt never touches a
working set. Functions taking a session never commit.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import structlog
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from app.config import media_hard_time_limit
from app.content.cache import media_changed_after_commit
from app.content.models import Content
from app.db import enqueue_after_commit
from app.identity.models import User
from app.media import ffmpeg, ladder, magic
from app.media import waveform as waveform_mod
from app.media.ffmpeg import Limits
from app.media.models import MediaItem
from app.notifications.service import media_url, queue_email
from app.storage import keys
from app.storage.base import ObjectChanged, ObjectTooLarge, Storage, StorageError

log = structlog.get_logger(__name__)

INGEST_TASK = "media.ingest"
PURGE_TASK = "media.purge_storage"
PURGE_STALE_TASK = "media.purge_stale_outputs"

RETRY_COUNTDOWN_SECONDS = 120  # transient failure -> back to ``uploaded``, ingest again after this
HEARTBEAT_INTERVAL_SECONDS = 30.0  # the spec asks for at least every 60 s
RESEND_UPLOADED_AFTER = timedelta(minutes=10)
RESEND_PURGE_AFTER = timedelta(minutes=10)
ABANDONED_UPLOAD_AFTER = timedelta(hours=24)
SWEEP_BATCH = 500
UPLOAD_THREADS = 8
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


# ---- claim and heartbeat -------------------------------------------------------------------


def claim(session: Session, media_id: uuid.UUID, job_id: str) -> MediaItem | None:
    """``uploaded -> processing`` (jobs.md §6.1 step 1); None when the row is not ours to process."""
    stmt = (
        update(MediaItem)
        .where(MediaItem.id == media_id, MediaItem.status == "uploaded", MediaItem.deleted_at.is_(None))
        .values(
            status="processing",
            attempts=MediaItem.attempts + 1,
            job_id=job_id,
            processing_started_at=func.now(),
            heartbeat_at=func.now(),
            error_message=None,
        )
        .returning(MediaItem)
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).one_or_none()


def _ours(job: Job) -> list[Any]:
    """The guard of every write an attempt makes: still our claim, still processing, not deleted."""
    return [
        MediaItem.id == job.media_id,
        MediaItem.job_id == job.job_id,
        MediaItem.status == "processing",
        MediaItem.deleted_at.is_(None),
    ]


def heartbeat(session: Session, job: Job) -> bool:
    """Bump ``heartbeat_at``; False when the claim is gone (the caller stops and discards)."""
    result = session.execute(
        update(MediaItem)
        .where(*_ours(job))
        .values(heartbeat_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


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


# ---- processing ---------------------------------------------------------------------------


def process(
    job: Job,
    workdir: Path,
    storage: Storage,
    settings: MediaSettings,
    beat: Callable[[ffmpeg.Progress | None], bool] | None = None,
) -> IngestResult:
    """Download, probe, transcode, check and upload one attempt's outputs. No database access.

    Raises IngestFailure (deterministic), TransientIngestError / storage errors (transient) or
    IngestCancelled (``beat`` returned False).
    """
    beat = beat or _no_heartbeat
    source = workdir / f"original{Path(job.original_key).suffix}"
    demuxer = fetch_original(job, source, storage)
    limits = settings.limits(job.media_type)
    probed = check_probe(job.media_type, source, settings, demuxer=demuxer, limits=limits)
    out = workdir / "out"
    out.mkdir()
    if job.media_type == "video":
        result = _process_video(job, source, probed, out, settings, beat, limits)
    else:
        result = _process_audio(job, source, probed, out, settings, beat, limits)
    result.uploaded_keys = upload_outputs(job, out, result, storage, beat)
    return result


def fetch_original(job: Job, source: Path, storage: Storage) -> str:
    """Download exactly the original upload-complete checked, re-check its magic bytes, and return
    the demuxer every later run must read it with (security.md §8).

    A replaced object (ETag not the pinned one) fails with UPLOAD_CHANGED; bytes that do not fit
    the declared type never reach ffprobe.
    """
    try:
        storage.download_file(job.original_key, source, if_match=job.upload_etag)
    except ObjectChanged as exc:
        raise IngestFailure(UPLOAD_CHANGED, str(exc)) from exc
    mime_type = job.mime_type
    with source.open("rb") as handle:
        head = handle.read(magic.MAGIC_BYTES)
    if not magic.magic_matches(mime_type, head):
        raise IngestFailure(UNREADABLE, f"magic bytes do not match {mime_type}")
    return magic.demuxer_for(mime_type)


def _no_heartbeat(_progress: ffmpeg.Progress | None = None) -> bool:
    return True


def check_probe(
    media_type: str,
    source: Path,
    settings: MediaSettings,
    *,
    demuxer: str,
    limits: Limits | None = None,
) -> ffmpeg.ProbeResult:
    """ffprobe (forced ``demuxer``) + the checks of jobs.md §6.1 step 2, each with its user-facing message."""
    try:
        probed = ffmpeg.probe(source, settings.ffprobe, demuxer=demuxer, limits=limits)
    except ffmpeg.FFmpegUnavailable as exc:
        raise TransientIngestError(INTERRUPTED) from exc
    except ffmpeg.ProbeError as exc:
        raise IngestFailure(UNREADABLE, exc.stderr[-500:]) from exc
    if not ffmpeg.format_matches(probed.format_name, demuxer):
        raise IngestFailure(UNREADABLE, f"format {probed.format_name!r} is not {demuxer}")
    if not probed.has_stream:
        raise IngestFailure(UNREADABLE, "no decodable stream")
    if media_type == "video" and probed.video is None:
        raise IngestFailure(NO_VIDEO)
    if media_type == "audio" and probed.audio is None:
        raise IngestFailure(NO_AUDIO)
    if probed.duration is None or not MIN_DURATION <= probed.duration <= MAX_DURATION:
        raise IngestFailure(BAD_DURATION, f"duration {probed.duration}")
    if media_type == "video":
        assert probed.video is not None
        width, height = probed.video.display_size
        if width > ladder.MAX_WIDTH or height > ladder.MAX_HEIGHT:
            raise IngestFailure(TOO_LARGE, f"{width}x{height}")
    return probed


def _run(
    args: list[str],
    beat: Callable[[ffmpeg.Progress | None], bool],
    settings: MediaSettings,
    limits: Limits,
) -> str:
    try:
        return ffmpeg.run(args, on_progress=beat, stall_timeout=settings.stuck_after_seconds, limits=limits)
    except ffmpeg.FFmpegCancelled as exc:
        raise IngestCancelled() from exc
    except ffmpeg.FFmpegStalled as exc:
        raise TransientIngestError(STALLED) from exc
    except ffmpeg.FFmpegUnavailable as exc:
        raise TransientIngestError(INTERRUPTED) from exc
    except ffmpeg.FFmpegError as exc:
        raise IngestFailure(TRANSCODE_FAILED, exc.stderr[-1000:]) from exc


def _set_stage(beat: Any, stage: str, total: float | None) -> None:
    if isinstance(beat, Heartbeat):
        beat.set_stage(stage, total)


def _process_video(
    job: Job,
    source: Path,
    probed: ffmpeg.ProbeResult,
    out: Path,
    settings: MediaSettings,
    beat: Callable[[ffmpeg.Progress | None], bool],
    limits: Limits,
) -> IngestResult:
    assert probed.video is not None and probed.duration is not None
    duration = probed.duration
    width, height = probed.video.display_size
    renditions = ladder.video_ladder(width, height)
    for command, stage in video_commands(settings, source, out, probed):
        _set_stage(beat, stage, duration)
        _run(command, beat, settings, limits)
    thumbnail = out / "thumbnail.jpg"
    if not _nonempty(thumbnail):
        # The frame at 10 % was not there (a video stream shorter than the container): take the first.
        _run(thumbnail_command(settings, source, thumbnail, probed, at_seconds=0.0), beat, settings, limits)
    for r in renditions:
        validate_playlist(out / r.name, duration)
    chosen = ladder.preview_source(renditions)
    make_preview(out / chosen.name, out / keys.PREVIEW, ladder.preview_duration(duration))
    validate_playlist(out / keys.PREVIEW, ladder.preview_duration(duration))
    if not _nonempty(thumbnail):
        raise IngestFailure(VALIDATION_FAILED, "no thumbnail")
    with_audio = probed.audio is not None
    variants = []
    for r in renditions:
        level = ffmpeg.stream_level(out / r.name / "seg_00001.ts", settings.ffprobe, limits=limits) or 40
        peak, average = measure_bandwidth(out / r.name) or ladder.nominal_bandwidth(
            r.video_kbps, r.audio_kbps if with_audio else 0
        )
        codecs = ladder.video_codecs(level, with_audio=with_audio)
        variants.append(ladder.Variant(r.name, peak, average, codecs, (r.width, r.height)))
    (out / "master.m3u8").write_text(ladder.master_playlist(variants), encoding="utf-8")
    return IngestResult(
        renditions=[r.name for r in renditions],
        hls_master_key=keys.hls_master_key(job.organization_id, job.media_id, job.attempt),
        hls_preview_key=keys.hls_preview_playlist_key(job.organization_id, job.media_id, job.attempt),
        thumbnail_key=keys.thumbnail_key(job.organization_id, job.media_id, job.attempt),
        duration=duration,
        width=width,
        height=height,
    )


def video_commands(
    settings: MediaSettings, source: Path, out: Path, probed: ffmpeg.ProbeResult
) -> list[tuple[list[str], str]]:
    """The ffmpeg runs of a video ingest, in order: (argv, stage). Creates the output folders.

    The benchmark runs exactly these by hand to measure the pipeline's overhead.
    """
    assert probed.video is not None and probed.duration is not None
    renditions = ladder.video_ladder(*probed.video.display_size)
    for r in renditions:
        (out / r.name).mkdir(parents=True, exist_ok=True)
    encode = ffmpeg.video_encode_args(
        settings.ffmpeg,
        source,
        out,
        probed.video,
        probed.audio,
        renditions,
        preset=settings.x264_preset,
        demuxer=probed.demuxer,
    )
    thumb = thumbnail_command(settings, source, out / "thumbnail.jpg", probed, at_seconds=0.1 * probed.duration)
    return [(encode, "encode"), (thumb, "thumbnail")]


def thumbnail_command(
    settings: MediaSettings, source: Path, target: Path, probed: ffmpeg.ProbeResult, *, at_seconds: float
) -> list[str]:
    assert probed.video is not None
    size = ladder.thumbnail_size(*probed.video.display_size)
    return ffmpeg.thumbnail_args(
        settings.ffmpeg, source, target, probed.video, at_seconds, size, demuxer=probed.demuxer
    )


def _process_audio(
    job: Job,
    source: Path,
    probed: ffmpeg.ProbeResult,
    out: Path,
    settings: MediaSettings,
    beat: Callable[[ffmpeg.Progress | None], bool],
    limits: Limits,
) -> IngestResult:
    assert probed.audio is not None and probed.duration is not None
    duration = probed.duration
    _set_stage(beat, "loudness", duration)
    measure = ffmpeg.loudnorm_measure_args(settings.ffmpeg, source, probed.audio, demuxer=probed.demuxer)
    stderr = _run(measure, beat, settings, limits)
    try:
        measured = ffmpeg.parse_loudnorm(stderr)
    except ffmpeg.FFmpegError as exc:
        raise IngestFailure(TRANSCODE_FAILED, "no loudnorm measurement") from exc
    renditions = ladder.audio_ladder()
    for r in renditions:
        (out / r.name).mkdir()
    pcm = out / "waveform.pcm"
    _set_stage(beat, "encode", duration)
    _run(
        ffmpeg.audio_encode_args(
            settings.ffmpeg, source, out, probed.audio, renditions, measured, pcm, demuxer=probed.demuxer
        ),
        beat,
        settings,
        limits,
    )
    for r in renditions:
        validate_playlist(out / r.name, duration)
    make_preview(out / renditions[0].name, out / keys.PREVIEW, ladder.preview_duration(duration))
    validate_playlist(out / keys.PREVIEW, ladder.preview_duration(duration))
    waveform_mod.write_waveform(pcm, duration, out / "waveform.json")
    pcm.unlink()
    variants = []
    for r in renditions:
        peak, average = measure_bandwidth(out / r.name) or ladder.nominal_bandwidth(0, r.audio_kbps)
        variants.append(ladder.Variant(r.name, peak, average, ladder.AUDIO_CODECS))
    (out / "master.m3u8").write_text(ladder.master_playlist(variants), encoding="utf-8")
    lufs = measured.input_i if math.isfinite(measured.input_i) else None
    return IngestResult(
        renditions=[r.name for r in renditions],
        hls_master_key=keys.hls_master_key(job.organization_id, job.media_id, job.attempt),
        hls_preview_key=keys.hls_preview_playlist_key(job.organization_id, job.media_id, job.attempt),
        waveform_key=keys.waveform_key(job.organization_id, job.media_id, job.attempt),
        duration=duration,
        loudness_lufs=None if lufs is None else max(-999.0, min(999.0, lufs)),
    )


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


# ---- playlists ----------------------------------------------------------------------------

_SEGMENT_NAME = re.compile(r"seg_(\d{5})\.ts")


def parse_media_playlist(text: str) -> list[tuple[float, str]]:
    """(EXTINF duration, URI) of each segment of an HLS media playlist."""
    entries: list[tuple[float, str]] = []
    duration: float | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            try:
                duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
            except ValueError:
                duration = None
        elif line and not line.startswith("#"):
            if duration is None:
                raise ValueError(f"segment without a valid EXTINF: {line!r}")
            entries.append((duration, line))
            duration = None
    return entries


def validate_playlist(folder: Path, expected: float) -> list[tuple[float, str]]:
    """jobs.md §6.4 output check: ENDLIST, EXTINF sum within max(2 s, 2 %), every segment present."""
    playlist = folder / ffmpeg.PLAYLIST_NAME
    try:
        text = playlist.read_text(encoding="utf-8")
        entries = parse_media_playlist(text)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise IngestFailure(VALIDATION_FAILED, f"{folder.name}: unreadable playlist") from exc
    if not text.rstrip().endswith("#EXT-X-ENDLIST"):
        raise IngestFailure(VALIDATION_FAILED, f"{folder.name}: no ENDLIST")
    total = sum(d for d, _ in entries)
    if not entries or abs(total - expected) > max(2.0, 0.02 * expected):
        raise IngestFailure(VALIDATION_FAILED, f"{folder.name}: {total:.3f} s listed, {expected:.3f} s expected")
    for _, uri in entries:
        if not _SEGMENT_NAME.fullmatch(uri) or not _nonempty(folder / uri):
            raise IngestFailure(VALIDATION_FAILED, f"{folder.name}: bad or missing segment {uri!r}")
    return entries


def make_preview(rendition: Path, preview: Path, seconds: float) -> None:
    """``preview/index.m3u8``: the first segments of ``rendition`` adding up to ``seconds``.

    Decision: the preview reuses the rendition's segments (copied, renumbered from 1) instead of
    a second encode. Keyframes are forced every 2 s of media time, so segments are 6 s and the
    first five are exactly the first 30 s; we pick the prefix whose length is closest to ``seconds``.
    """
    entries = parse_media_playlist((rendition / ffmpeg.PLAYLIST_NAME).read_text(encoding="utf-8"))
    best, total, best_error = 1, 0.0, math.inf
    for count, (duration, _) in enumerate(entries, start=1):
        total += duration
        error = abs(total - seconds)
        if error < best_error - 1e-9:
            best, best_error = count, error
        if total >= seconds:
            break
    chosen = entries[:best]
    preview.mkdir(exist_ok=True)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(max(d for d, _ in chosen)))}",
        "#EXT-X-MEDIA-SEQUENCE:1",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for index, (duration, uri) in enumerate(chosen, start=1):
        name = f"seg_{index:05d}.ts"
        target = preview / name
        try:
            os.link(rendition / uri, target)  # same temp dir: no copy needed
        except OSError:
            shutil.copyfile(rendition / uri, target)
        lines += [f"#EXTINF:{duration:.6f},", name]
    lines.append("#EXT-X-ENDLIST")
    (preview / ffmpeg.PLAYLIST_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")


def measure_bandwidth(folder: Path) -> tuple[int, int] | None:
    """(peak, average) bits/s from the segment sizes: BANDWIDTH / AVERAGE-BANDWIDTH of the master."""
    entries = parse_media_playlist((folder / ffmpeg.PLAYLIST_NAME).read_text(encoding="utf-8"))
    peak, bits, seconds = 0.0, 0, 0.0
    for duration, uri in entries:
        size = (folder / uri).stat().st_size * 8
        bits += size
        seconds += duration
        if duration > 0:
            peak = max(peak, size / duration)
    if seconds <= 0 or bits <= 0:
        return None
    return math.ceil(peak), math.ceil(bits / seconds)


# ---- upload -------------------------------------------------------------------------------


def output_files(job: Job, out: Path, result: IngestResult) -> list[tuple[str, Path]]:
    """Every (key, local file) of an attempt, in upload order: segments, playlists, master, extras."""
    org, media, n = job.organization_id, job.media_id, job.attempt
    segments: list[tuple[str, Path]] = []
    playlists: list[tuple[str, Path]] = []
    for name in [*result.renditions, keys.PREVIEW]:
        folder = out / name
        for _, uri in parse_media_playlist((folder / ffmpeg.PLAYLIST_NAME).read_text(encoding="utf-8")):
            match = _SEGMENT_NAME.fullmatch(uri)
            assert match is not None  # validate_playlist checked the names
            segments.append((keys.hls_segment_key(org, media, n, name, int(match.group(1))), folder / uri))
        playlists.append((keys.hls_rendition_playlist_key(org, media, n, name), folder / ffmpeg.PLAYLIST_NAME))
    files = [*segments, *playlists, (result.hls_master_key, out / "master.m3u8")]
    if result.thumbnail_key:
        files.append((result.thumbnail_key, out / "thumbnail.jpg"))
    if result.waveform_key:
        files.append((result.waveform_key, out / "waveform.json"))
    return files


def upload_outputs(
    job: Job,
    out: Path,
    result: IngestResult,
    storage: Storage,
    beat: Callable[[ffmpeg.Progress | None], bool],
) -> list[str]:
    """Upload everything (a few threads: S3 latency, not bandwidth, dominates many small PUTs).

    Heartbeats between files; a lost claim cancels what is not started yet (IngestCancelled).
    """
    files = output_files(job, out, result)
    _set_stage(beat, "upload", float(len(files)))
    done: list[str] = []
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="media-upload") as pool:
        pending: set[Future[str]] = set()
        todo = iter(files)
        try:
            while True:
                while len(pending) < UPLOAD_THREADS * 2 and (item := next(todo, None)) is not None:
                    pending.add(pool.submit(_put, storage, *item))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    done.append(future.result())  # re-raises a StorageError
                if not beat(ffmpeg.Progress(float(len(done)), None, False)):
                    raise IngestCancelled()
        finally:
            for future in pending:
                future.cancel()
    return done


def _put(storage: Storage, key: str, path: Path) -> str:
    storage.put_file(key, path, keys.content_type_for(key))
    return key


def discard_attempt(storage: Storage, job: Job) -> None:
    """Best effort: remove this attempt's outputs (never referenced by the row)."""
    for prefix in job.prefixes():
        try:
            storage.delete_prefix(prefix)
        except StorageError as exc:
            log.warning("media.discard_failed", media_id=str(job.media_id), attempt=job.attempt, error=str(exc))


# ---- outcomes -----------------------------------------------------------------------------


def complete(session: Session, job: Job, result: IngestResult, settings: MediaSettings) -> bool:
    """``processing -> ready`` pointing at the new keys, + media-ready email + stale-output purge.

    False (nothing written) when the claim is gone: deleted meanwhile, or re-run after a stall.
    """
    stmt = (
        update(MediaItem)
        .where(*_ours(job))
        .values(
            status="ready",
            hls_master_key=result.hls_master_key,
            hls_preview_key=result.hls_preview_key,
            thumbnail_key=result.thumbnail_key,
            waveform_key=result.waveform_key,
            renditions=list(result.renditions),
            duration_seconds=result.duration_seconds,
            width=result.width,
            height=result.height,
            loudness_lufs=None if result.loudness_lufs is None else Decimal(f"{result.loudness_lufs:.2f}"),
            ready_at=func.now(),
            error_message=None,
        )
        .returning(MediaItem)
        .execution_options(populate_existing=True)
    )
    media = session.scalars(stmt).one_or_none()
    if media is None:
        return False
    _email(
        session,
        media,
        "media-ready",
        {"duration": media.duration_seconds},
    )
    enqueue_after_commit(session, PURGE_STALE_TASK, str(media.id))
    media_changed_after_commit(session, media.id)  # content already pointing at it streams at once
    log.info("media.ready", media_id=str(media.id), attempt=job.attempt, renditions=media.renditions)
    return True


def classify(exc: BaseException) -> tuple[str, str] | None:
    """("failed" | "retry", message) for an exception escaping an attempt; None: not ours to handle."""
    if isinstance(exc, IngestFailure):
        return "failed", exc.message
    if isinstance(exc, SoftTimeLimitExceeded):
        return "failed", TOO_LONG
    if isinstance(exc, TransientIngestError):
        return "retry", exc.message
    if isinstance(exc, ObjectTooLarge):
        return "failed", TRANSCODE_FAILED
    if isinstance(exc, TRANSIENT_ERRORS):
        return "retry", INTERRUPTED
    if isinstance(exc, Exception):
        # A bug or an unexpected tool behaviour would recur on every retry: fail now, log loudly.
        return "failed", TRANSCODE_FAILED
    return None


def record_failure(session: Session, job: Job, kind: str, message: str, settings: MediaSettings) -> str:
    """Apply a classified failure; returns the outcome (``failed``, ``retry`` or ``superseded``)."""
    if kind == "retry":
        return retry_later(session, job, message, settings)
    return fail(session, job, message, settings)


def fail(session: Session, job: Job, message: str, settings: MediaSettings, *, guard: Iterable[Any] = ()) -> str:
    """Deterministic failure: ``processing -> failed`` + media-failed email; no automatic retry."""
    stmt = (
        update(MediaItem)
        .where(*_ours(job), *guard)
        .values(status="failed", error_message=message[:500])
        .returning(MediaItem)
        .execution_options(populate_existing=True)
    )
    media = session.scalars(stmt).one_or_none()
    if media is None:
        return "superseded"
    attempts_left = max(0, settings.max_attempts - media.attempts)
    _email(session, media, "media-failed", {"error_message": media.error_message, "attempts_left": attempts_left})
    log.warning("media.failed", media_id=str(media.id), attempt=job.attempt, error_message=message)
    return "failed"


def retry_later(session: Session, job: Job, reason: str, settings: MediaSettings, *, guard: Iterable[Any] = ()) -> str:
    """Transient failure: back to ``uploaded`` and ingest again in 120 s, or ``failed`` when out of attempts."""
    guard = list(guard)
    if job.attempt >= settings.max_attempts:
        return fail(session, job, FAILED_REPEATEDLY, settings, guard=guard)
    result = session.execute(
        update(MediaItem)
        .where(*_ours(job), *guard)
        .values(status="uploaded", error_message=reason[:500])
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return "superseded"
    enqueue_after_commit(session, INGEST_TASK, str(job.media_id), countdown=RETRY_COUNTDOWN_SECONDS)
    log.warning("media.retry_scheduled", media_id=str(job.media_id), attempt=job.attempt, reason=reason)
    return "retry"


def _email(session: Session, media: MediaItem, template: str, extra: Mapping[str, Any]) -> None:
    user = session.get(User, media.created_by)
    if user is None:  # pragma: no cover - RESTRICT foreign key
        return
    queue_email(
        session,
        template,
        recipient=user.email,
        user_id=user.id,
        organization_id=media.organization_id,
        context={"media_title": media.title, "media_url": media_url(media.organization_id, media.id), **extra},
        dedupe_key=f"{template}:{media.id}:{media.attempts}",
    )


# ---- sweepers and purges (jobs.md §6.5) ----------------------------------------------------


@dataclass(frozen=True)
class RecoveryReport:
    stalled: int
    resent: int
    purges: int


def recover_stuck(session: Session, settings: MediaSettings) -> RecoveryReport:
    """(a) stalled ``processing`` rows -> transient failure "Processing stalled." (guarded by the
    observed job_id and a still-stale heartbeat); (b) ``uploaded`` rows idle for 10 min -> ingest
    again (lost message); (c) deleted, unpurged rows older than 10 min -> purge again."""
    cutoff = func.now() - timedelta(seconds=settings.stuck_after_seconds)
    stalled_rows = session.scalars(
        select(MediaItem)
        .where(MediaItem.status == "processing", MediaItem.deleted_at.is_(None), MediaItem.heartbeat_at < cutoff)
        .order_by(MediaItem.heartbeat_at)
        .limit(SWEEP_BATCH)
    ).all()
    stalled = 0
    for media in stalled_rows:
        if media.job_id is None:
            continue
        job = Job.from_media(media, media.job_id)
        outcome = retry_later(session, job, STALLED, settings, guard=[MediaItem.heartbeat_at < cutoff])
        stalled += outcome != "superseded"
    waiting = session.scalars(
        select(MediaItem.id)
        .where(
            MediaItem.status == "uploaded",
            MediaItem.deleted_at.is_(None),
            MediaItem.updated_at < func.now() - RESEND_UPLOADED_AFTER,
        )
        .order_by(MediaItem.updated_at)
        .limit(SWEEP_BATCH)
    ).all()
    for media_id in waiting:
        enqueue_after_commit(session, INGEST_TASK, str(media_id))
    unpurged = session.scalars(
        select(MediaItem.id)
        .where(
            MediaItem.deleted_at.is_not(None),
            MediaItem.purged_at.is_(None),
            MediaItem.deleted_at < func.now() - RESEND_PURGE_AFTER,
        )
        .order_by(MediaItem.deleted_at)
        .limit(SWEEP_BATCH)
    ).all()
    for media_id in unpurged:
        enqueue_after_commit(session, PURGE_TASK, str(media_id))
    report = RecoveryReport(stalled=stalled, resent=len(waiting), purges=len(unpurged))
    if stalled or waiting or unpurged:
        log.info("media.recover_stuck", stalled=report.stalled, resent=report.resent, purges=report.purges)
    return report


def reap_abandoned_uploads(session: Session) -> list[uuid.UUID]:
    """``uploading`` rows created more than 24 h ago -> soft-deleted + purge enqueued.

    Decision: a row referenced by non-deleted content is left alone, as DELETE would refuse it
    (409 MEDIA_IN_USE).
    """
    in_use = exists().where(Content.media_id == MediaItem.id, Content.deleted_at.is_(None))
    ids = list(
        session.scalars(
            update(MediaItem)
            .where(
                MediaItem.status == "uploading",
                MediaItem.deleted_at.is_(None),
                MediaItem.created_at < func.now() - ABANDONED_UPLOAD_AFTER,
                ~in_use,
            )
            .values(deleted_at=func.now())
            .returning(MediaItem.id)
            .execution_options(synchronize_session=False)
        ).all()
    )
    for media_id in ids:
        enqueue_after_commit(session, PURGE_TASK, str(media_id))
    if ids:
        log.info("media.reaped", count=len(ids))
    return ids


def purge_storage(session: Session, media_id: uuid.UUID, storage: Storage) -> bool:
    """Delete every object of a deleted media item, then set ``purged_at``. False: nothing to do.

    Storage errors propagate (the task retries); the row is only marked once the prefix is gone.
    """
    media = session.get(MediaItem, media_id, populate_existing=True)
    if media is None or media.deleted_at is None or media.purged_at is not None:
        return False
    count = storage.delete_prefix(keys.media_prefix(media.organization_id, media.id))
    session.execute(
        update(MediaItem)
        .where(MediaItem.id == media.id, MediaItem.deleted_at.is_not(None), MediaItem.purged_at.is_(None))
        .values(purged_at=func.now())
        .execution_options(synchronize_session=False)
    )
    log.info("media.purged", media_id=str(media.id), objects=count)
    return True


def purge_stale_outputs(session: Session, media_id: uuid.UUID, storage: Storage) -> list[int]:
    """Delete the outputs of every attempt but the current one (the original is never touched).

    Runs only on a ``ready``, non-deleted row; returns the attempt numbers whose prefixes were removed.
    """
    media = session.get(MediaItem, media_id, populate_existing=True)
    if media is None or media.deleted_at is not None or media.status != "ready" or not media.hls_master_key:
        return []
    current = keys.output_attempt(media.hls_master_key)
    stale = sorted(
        {
            attempt
            for key in storage.list_keys(keys.media_prefix(media.organization_id, media.id))
            if (attempt := keys.output_attempt(key)) is not None and attempt != current
        }
    )
    for attempt in stale:
        for prefix in keys.attempt_prefixes(media.organization_id, media.id, attempt):
            storage.delete_prefix(prefix)
    if stale:
        log.info("media.stale_outputs_purged", media_id=str(media.id), attempts=stale)
    return stale


__all__: Sequence[str] = (
    "Heartbeat",
    "IngestCancelled",
    "IngestFailure",
    "IngestResult",
    "Job",
    "MediaSettings",
    "TransientIngestError",
    "claim",
    "classify",
    "complete",
    "discard_attempt",
    "fail",
    "heartbeat",
    "process",
    "purge_stale_outputs",
    "purge_storage",
    "reap_abandoned_uploads",
    "record_failure",
    "recover_stuck",
    "retry_later",
)
