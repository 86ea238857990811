"""security.md §8 "ffmpeg treats every original as hostile" and "the bytes are pinned once checked".

Real ffmpeg, local storage (and moto's S3 server), the rolled-back test transaction. Every child
process the pipeline starts is recorded (``children``) so a test can show how ffmpeg was told to
read a file: forced demuxer, ``-protocol_whitelist file``, own session, no stdin, resource limits.
A playlist pointing at another organization's original is the attack throughout: ffmpeg's own
guess would read it as HLS and transcode the other tenant's video.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.media import ffmpeg, service, transcode
from app.media.ingest import run_ingest
from app.media.job import TRANSCODE_FAILED, UNREADABLE, UPLOAD_CHANGED, IngestFailure, MediaSettings
from app.media.magic import magic_matches
from app.media.models import MediaItem
from app.storage import keys
from app.storage.s3 import S3Storage
from tests.factories import MediaItemFactory
from tests.media.conftest import Clips, MediaEnv
from tests.storage.test_s3 import s3_config

Call = tuple[list[str], dict[str, Any]]


@pytest.fixture()
def children(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Call]]:
    """Every ``subprocess.Popen`` started during the test: (argv, keyword arguments)."""
    calls: list[Call] = []
    real = subprocess.Popen

    class Recording(real):  # type: ignore[valid-type,misc]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            calls.append(([str(a) for a in args], dict(kwargs)))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    yield calls


def ingest(env: MediaEnv, media: MediaItem, settings: MediaSettings | None = None, **kwargs: Any) -> str:
    return run_ingest(env.session, media.id, f"job-{uuid.uuid4()}", settings=settings or env.settings, **kwargs)


def stored(env: MediaEnv, media: MediaItem) -> list[str]:
    return list(env.storage.list_keys(keys.media_prefix(media.organization_id, media.id)))


def id3_tag(padding: int = 20) -> bytes:
    """An empty ID3v2.3 tag: enough for the ``audio/mpeg`` magic check, skipped by ffmpeg's format guess."""
    size = bytes((padding >> shift) & 0x7F for shift in (21, 14, 7, 0))  # syncsafe
    return b"ID3\x03\x00\x00" + size + b"\x00" * padding


def playlist(kind: str, target: Path) -> bytes:
    if kind == "hls":
        return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3.5,\n{target}\n#EXT-X-ENDLIST\n".encode()
    return f"ffconcat version 1.0\nfile {target}\nduration 3.5\n".encode()


def victim(env: MediaEnv, clips: Clips) -> Path:
    """Another organization's original on local storage; returns its path on disk.

    With its index first, ffmpeg's own guess reads it fine as an HLS segment: before the fix the
    ID3 disguised playlist below became ``ready`` with this video's sound.
    """
    other = MediaItemFactory()
    env.put_original(other, clips.faststart())
    return env.storage.path_for(other.original_key)  # type: ignore[attr-defined,no-any-return]


def media_runs(calls: list[Call]) -> list[Call]:
    return [(argv, kw) for argv, kw in calls if Path(argv[0]).name in ("ffmpeg", "ffprobe")]


def read_with(argv: list[str]) -> tuple[str | None, str | None, str]:
    """(forced demuxer, protocol whitelist, input) of the one ``-i`` of a command line."""
    i = argv.index("-i")
    before = argv[:i]
    demuxer = before[before.index("-f") + 1] if "-f" in before else None
    whitelist = before[before.index("-protocol_whitelist") + 1] if "-protocol_whitelist" in before else None
    return demuxer, whitelist, argv[i + 1]


def assert_hardened(calls: list[Call], demuxer: str) -> None:
    """Each ffmpeg/ffprobe child read its input with the forced demuxer (``mpegts`` for our own
    segments), files only, in its own session, without stdin, under resource limits."""
    runs = media_runs(calls)
    assert runs
    for argv, kwargs in runs:
        forced, whitelist, source = read_with(argv)
        expected = demuxer if Path(source).name.startswith("original") else "mpegts"
        assert (forced, whitelist) == (expected, "file"), argv
        assert source.startswith("file:/"), argv
        assert kwargs.get("start_new_session") is True and kwargs.get("stdin") == subprocess.DEVNULL
        assert callable(kwargs.get("preexec_fn"))  # sets the rlimits in the child


# ---- hostile originals ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_playlist_behind_an_id3_tag_passes_the_magic_check_but_reads_nothing_else(
    media_env: MediaEnv, clips: Clips, children: list[Call], kind: str
) -> None:
    """An ``audio/mpeg`` upload whose first bytes are an ID3 tag passes upload-complete; ffmpeg's guess
    skips the tag and reads an HLS/concat playlist pointing at another org's video."""
    target = victim(media_env, clips)
    payload = id3_tag() + playlist(kind, target)
    media = MediaItemFactory(
        media_type="audio", mime_type="audio/mpeg", status="uploading", file_size_bytes=len(payload)
    )
    media_env.storage.put_bytes(media.original_key, payload, "audio/mpeg")
    assert service.upload_complete(media_env.session, media, media_env.storage) is True
    children.clear()

    assert ingest(media_env, media) == "failed"

    row = media_env.refresh(media)
    assert (row.status, row.error_message, row.hls_master_key) == ("failed", UNREADABLE, None)
    assert stored(media_env, media) == [media.original_key]  # nothing made from the other org's video
    runs = media_runs(children)
    assert [Path(argv[0]).name for argv, _ in runs] == ["ffprobe"]  # the probe failed; no ffmpeg ever ran
    assert_hardened(children, "mp3")


@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_playlist_put_after_upload_complete_fails_before_any_ffmpeg_runs(
    media_env: MediaEnv, clips: Clips, children: list[Call], kind: str
) -> None:
    """A second PUT after upload-complete (an S3 presigned URL is still valid; the local route was
    too before the fix) swaps in a playlist: the worker sees the ETag changed and reads nothing."""
    target = victim(media_env, clips)
    good = clips.video(320, 240, 2)
    media = MediaItemFactory(status="uploading", file_size_bytes=good.stat().st_size)
    media_env.put_original(media, good)
    assert service.upload_complete(media_env.session, media, media_env.storage) is True
    media_env.storage.put_bytes(media.original_key, playlist(kind, target), "video/mp4")
    children.clear()

    assert ingest(media_env, media) == "failed"

    row = media_env.refresh(media)
    assert (row.status, row.error_message, row.hls_master_key) == ("failed", UPLOAD_CHANGED, None)
    assert stored(media_env, media) == [media.original_key]
    assert media_runs(children) == []


def test_worker_checks_the_magic_bytes_before_ffprobe_sees_the_file(
    media_env: MediaEnv, clips: Clips, children: list[Call]
) -> None:
    """A row with no pinned ETag (uploaded before pinning) whose original is now an HLS playlist."""
    target = victim(media_env, clips)
    media = MediaItemFactory()
    assert media.upload_etag is None
    media_env.storage.put_bytes(media.original_key, playlist("hls", target), "video/mp4")

    assert ingest(media_env, media) == "failed"

    row = media_env.refresh(media)
    assert (row.error_message, row.hls_master_key) == (UNREADABLE, None)
    assert stored(media_env, media) == [media.original_key]
    assert media_runs(children) == []


def test_a_probe_in_another_format_than_the_forced_demuxer_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hls = ffmpeg.ProbeResult("hls", 3.5, ffmpeg.VideoStream(0, "h264", 640, 360), None, demuxer="hls")
    monkeypatch.setattr(ffmpeg, "probe", lambda *a, **k: hls)
    with pytest.raises(IngestFailure) as info:
        transcode.check_probe("video", tmp_path / "original.mp4", MediaSettings(), demuxer="mov")
    assert info.value.message == UNREADABLE
    assert ffmpeg.format_matches("mov,mp4,m4a,3gp,3g2,mj2", "mov")
    assert ffmpeg.format_matches("matroska,webm", "matroska")
    for name, demuxer in [("hls", "mov"), ("concat", "mp3"), ("mov,mp4,hls", "mov"), ("", "mov"), ("wav", "ogg")]:
        assert not ffmpeg.format_matches(name, demuxer)


@pytest.mark.parametrize(("mime", "demuxer"), [("video/mp4", "mov"), ("audio/mpeg", "mp3")])
def test_every_ffmpeg_and_ffprobe_run_of_an_ingest_is_hardened(
    media_env: MediaEnv, clips: Clips, children: list[Call], mime: str, demuxer: str
) -> None:
    clip = clips.video(640, 360) if mime.startswith("video") else clips.tone()
    media = MediaItemFactory(
        status="uploading", media_type=mime.split("/")[0], mime_type=mime, file_size_bytes=clip.stat().st_size
    )
    media_env.put_original(media, clip)
    service.upload_complete(media_env.session, media, media_env.storage)
    children.clear()

    assert ingest(media_env, media) == "ready"  # the pinned, unchanged original goes through

    assert_hardened(children, demuxer)
    names = [Path(argv[0]).name for argv, _ in media_runs(children)]
    assert names.count("ffprobe") >= 1 and names.count("ffmpeg") >= 2
    assert any(read_with(argv)[0] == "mpegts" for argv, _ in media_runs(children)) == mime.startswith("video")


def test_s3_original_changed_after_upload_complete_fails_the_attempt(
    media_env: MediaEnv, clips: Clips, s3_server: str, children: list[Call]
) -> None:
    s3 = S3Storage.from_config(s3_config(s3_server))
    s3.ensure_bucket()
    good = clips.video(320, 240, 2)
    media = MediaItemFactory(status="uploading", file_size_bytes=good.stat().st_size)
    s3.put_file(media.original_key, good, "video/mp4")
    assert service.upload_complete(media_env.session, media, s3) is True
    assert media.upload_etag == s3.head(media.original_key).etag  # type: ignore[union-attr]
    replacement = good.read_bytes()[:-1] + b"\x00"  # same size, same magic, other bytes
    s3.put_bytes(media.original_key, replacement, "video/mp4")
    children.clear()

    assert ingest(media_env, media, storage=s3) == "failed"

    row = media_env.refresh(media)
    assert (row.status, row.error_message) == ("failed", UPLOAD_CHANGED)
    assert list(s3.list_keys(keys.media_prefix(media.organization_id, media.id))) == [media.original_key]
    assert media_runs(children) == []


def test_the_id3_playlist_really_passes_the_upload_magic_check() -> None:
    """The premise of the first test: the disguised playlist is a valid ``audio/mpeg`` by the magic table."""
    assert magic_matches("audio/mpeg", (id3_tag() + playlist("hls", Path("/x/original.mp4")))[:4096])
    assert not magic_matches("video/mp4", playlist("hls", Path("/x/original.mp4")))


# ---- resource limits and process groups -------------------------------------------------------

REPORT = """
import json, os, resource, sys
limits = {name: resource.getrlimit(getattr(resource, name)) for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE")}
print(json.dumps({"pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
                  "stdin": os.readlink("/proc/self/fd/0"), "limits": limits}), file=sys.stderr)
"""


def test_children_run_in_their_own_session_without_stdin_under_the_limits() -> None:
    limits = ffmpeg.Limits(cpu_seconds=17, memory_bytes=2 * 1024**3, file_bytes=3 * 1024**2)
    report = json.loads(ffmpeg.run([sys.executable, "-c", REPORT], limits=limits).strip().splitlines()[-1])
    assert report["pid"] == report["pgid"] == report["sid"] != os.getpgid(0)
    assert report["stdin"] == "/dev/null"
    assert report["limits"] == {
        "RLIMIT_CPU": [17, 17],
        "RLIMIT_AS": [2 * 1024**3, 2 * 1024**3],
        "RLIMIT_FSIZE": [3 * 1024**2, 3 * 1024**2],
    }


def test_media_settings_take_the_limits_from_the_configuration(media_env: MediaEnv) -> None:
    config = media_env.app.config
    settings = MediaSettings.from_config(config)
    hard = int(config["MEDIA_TASK_SOFT_TIME_LIMIT"]) + 300
    assert settings.limits("video") == ffmpeg.Limits(
        hard, int(config["MEDIA_FFMPEG_MAX_MEMORY_MB"]) * 1024 * 1024, 4 * int(config["MEDIA_MAX_VIDEO_BYTES"])
    )
    assert settings.limits("audio").file_bytes == 4 * int(config["MEDIA_MAX_AUDIO_BYTES"])
    assert config["MEDIA_FFMPEG_MAX_MEMORY_MB"] == 4096  # the spec's default


def _failure_of_runs(monkeypatch: pytest.MonkeyPatch) -> list[ffmpeg.FFmpegError]:
    failures: list[ffmpeg.FFmpegError] = []
    real = ffmpeg.run

    def recording(*args: Any, **kwargs: Any) -> str:
        try:
            return real(*args, **kwargs)
        except ffmpeg.FFmpegError as exc:
            failures.append(exc)
            raise

    monkeypatch.setattr(ffmpeg, "run", recording)
    return failures


def test_a_tiny_file_size_limit_from_the_configuration_stops_the_encode_and_leaves_nothing(
    media_env: MediaEnv, clips: Clips, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(640, 360))
    monkeypatch.setitem(media_env.app.config, "MEDIA_MAX_VIDEO_BYTES", 16 * 1024)  # RLIMIT_FSIZE = 64 KiB
    settings = MediaSettings.from_config(media_env.app.config, heartbeat_interval=0.0)
    failures = _failure_of_runs(monkeypatch)

    assert ingest(media_env, media, settings) == "failed"

    row = media_env.refresh(media)
    assert (row.status, row.error_message, row.hls_master_key) == ("failed", TRANSCODE_FAILED, None)
    assert [f.returncode for f in failures] == [-signal.SIGXFSZ]  # killed writing its first big segment
    assert stored(media_env, media) == [media.original_key]


def test_a_tiny_cpu_limit_stops_the_encode_and_leaves_nothing(
    media_env: MediaEnv, clips: Clips, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = MediaItemFactory()
    media_env.put_original(media, clips.video(1280, 720, 6.0))
    settings = MediaSettings(**{**media_env.settings.__dict__, "cpu_limit_seconds": 1, "x264_preset": "medium"})
    failures = _failure_of_runs(monkeypatch)

    assert ingest(media_env, media, settings) == "failed"

    row = media_env.refresh(media)
    assert (row.status, row.error_message) == ("failed", TRANSCODE_FAILED)
    assert [f.returncode for f in failures] in ([-signal.SIGKILL], [-signal.SIGXCPU])
    assert stored(media_env, media) == [media.original_key]


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """The process no longer exists (or is a zombie nobody reaped yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_a_stalled_run_is_killed_with_its_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    with pytest.raises(ffmpeg.FFmpegStalled):
        ffmpeg.run(["sh", "-c", script], stall_timeout=1.0)
    assert _gone(int(pidfile.read_text()))


def test_a_probe_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    fake = tmp_path / "ffprobe"
    fake.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    fake.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(ffmpeg.ProbeError, match="timed out"):
        ffmpeg.probe(tmp_path / "original.mp4", str(fake), demuxer="mov", timeout=1.0)
    assert time.monotonic() - started < 10
    assert _gone(int(pidfile.read_text()))
