"""The ffmpeg side of one ingest attempt (jobs.md §6.1 steps 2-4): no database access.

``process`` downloads the original (only the version upload-complete checked: its pinned ETag),
re-checks its magic bytes, probes it, runs ffmpeg, checks the outputs and uploads them under the
attempt's own prefix (``…/hls/a{n}/``, ``…/thumbnails/a{n}/``, ``…/waveforms/a{n}/``). Only the
final conditional UPDATE (``ingest.complete``) points the row at them, so readers see either the
previous complete set of keys or the new one, and a failed attempt never touches a working set.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import structlog

from app.media import ffmpeg, ladder, magic
from app.media import waveform as waveform_mod
from app.media.ffmpeg import Limits
from app.media.job import (
    BAD_DURATION,
    INTERRUPTED,
    MAX_DURATION,
    MIN_DURATION,
    NO_AUDIO,
    NO_VIDEO,
    STALLED,
    TOO_LARGE,
    TRANSCODE_FAILED,
    UNREADABLE,
    UPLOAD_CHANGED,
    VALIDATION_FAILED,
    Heartbeat,
    IngestCancelled,
    IngestFailure,
    IngestResult,
    Job,
    MediaSettings,
    TransientIngestError,
)
from app.storage import keys
from app.storage.base import ObjectChanged, Storage, StorageError

log = structlog.get_logger(__name__)

UPLOAD_THREADS = 8


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
