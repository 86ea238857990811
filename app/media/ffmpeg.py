"""Thin wrappers around ffprobe/ffmpeg (jobs.md §6, security.md §15).

Everything runs with argument lists (never a shell) on files inside the job's temporary
directory. ``probe`` parses ``ffprobe -show_format -show_streams -of json`` into small dataclasses;
``run`` executes one ffmpeg command, parses its ``-progress pipe:1`` output and hands each progress
block to a callback that may stop the run (the heartbeat lost its claim). The ``*_args`` builders
are the only place command lines are written, so the benchmark can run the very same commands
by hand.
"""

from __future__ import annotations

import json
import math
import os
import re
import selectors
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.media import ladder
from app.media.ladder import AudioRendition, VideoRendition

HLS_SEGMENT_SECONDS = 6
SEGMENT_PATTERN = "seg_%05d.ts"  # seg_00001.ts… (keys.hls_segment_key)
PLAYLIST_NAME = "index.m3u8"
LOUDNORM_TARGET = "I=-16:TP=-1.5:LRA=11"
VIDEO_AUDIO_RATE = 48000
AUDIO_RATE = 44100
WAVEFORM_RATE = 8000
PROBE_TIMEOUT_SECONDS = 120
STDERR_TAIL_BYTES = 64 * 1024


# ---- errors -------------------------------------------------------------------------------


class FFmpegError(Exception):
    """ffmpeg/ffprobe exited non-zero (or could not run); ``stderr`` is the tail, for logs only."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class ProbeError(FFmpegError):
    """ffprobe could not read the file."""


class FFmpegUnavailable(FFmpegError):
    """The binary could not be started (missing, not executable): the machine's fault, not the file's."""


class FFmpegCancelled(Exception):
    """The progress callback asked to stop; ffmpeg was killed."""


class FFmpegStalled(Exception):
    """ffmpeg reported no progress for longer than the stall timeout; it was killed."""


# ---- probe --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int  # coded size, before rotation
    height: int
    rotation: float = 0.0
    sample_aspect_ratio: str | None = None
    fps: float | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        return ladder.display_size(self.width, self.height, self.rotation, self.sample_aspect_ratio)


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    channels: int = 0
    sample_rate: int = 0


@dataclass(frozen=True)
class ProbeResult:
    format_name: str
    duration: float | None
    video: VideoStream | None  # the main picture (cover art does not count)
    audio: AudioStream | None

    @property
    def has_stream(self) -> bool:
        return self.video is not None or self.audio is not None


def probe(path: Path, ffprobe: str = "ffprobe", *, timeout: float = PROBE_TIMEOUT_SECONDS) -> ProbeResult:
    """Run ffprobe on ``path``; ProbeError when it fails or prints something unreadable."""
    args = [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)]
    try:
        completed = subprocess.run(  # noqa: S603 - argument list, no shell
            args, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise ProbeError("ffprobe timed out") from exc
    except OSError as exc:
        raise FFmpegUnavailable(f"ffprobe could not run: {exc.strerror or exc}") from exc
    stderr = completed.stderr.decode(errors="replace")[-STDERR_TAIL_BYTES:]
    if completed.returncode != 0:
        raise ProbeError("ffprobe failed", returncode=completed.returncode, stderr=stderr)
    try:
        data = json.loads(completed.stdout or b"{}")
    except ValueError as exc:
        raise ProbeError("ffprobe printed invalid JSON", stderr=stderr) from exc
    if not isinstance(data, dict):
        raise ProbeError("ffprobe printed unexpected JSON", stderr=stderr)
    return parse_probe(data)


def parse_probe(data: Mapping[str, Any]) -> ProbeResult:
    """Pick the main video and audio streams out of ffprobe's JSON (pure; tested on fixtures)."""
    fmt = data.get("format") or {}
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    video = _pick([(_video(s), s) for s in streams if s.get("codec_type") == "video"])
    audio = _pick([(_audio(s), s) for s in streams if s.get("codec_type") == "audio"])
    duration = _positive_float(fmt.get("duration"))
    if duration is None:
        durations = [d for s in streams if (d := _positive_float(s.get("duration"))) is not None]
        duration = max(durations) if durations else None
    return ProbeResult(format_name=str(fmt.get("format_name") or ""), duration=duration, video=video, audio=audio)


def _pick(candidates: Sequence[tuple[Any, Mapping[str, Any]]]) -> Any:
    usable = [(parsed, raw) for parsed, raw in candidates if parsed is not None]
    for parsed, raw in usable:  # the stream flagged default wins, else the first
        if (raw.get("disposition") or {}).get("default") == 1:
            return parsed
    return usable[0][0] if usable else None


def _video(stream: Mapping[str, Any]) -> VideoStream | None:
    disposition = stream.get("disposition") or {}
    # Cover art in an audio file (or a poster frame in a video) is a "video" stream of one picture.
    if disposition.get("attached_pic") == 1 or disposition.get("still_image") == 1:
        return None
    width, height = _int(stream.get("width")), _int(stream.get("height"))
    codec = stream.get("codec_name")
    if not codec or width <= 0 or height <= 0:
        return None
    fps = None
    for name in ("avg_frame_rate", "r_frame_rate"):
        ratio = ladder.parse_ratio(str(stream.get(name) or ""))
        if ratio and 0 < ratio <= 1000:
            fps = float(ratio)
            break
    return VideoStream(
        index=_int(stream.get("index")),
        codec=str(codec),
        width=width,
        height=height,
        rotation=_rotation(stream),
        sample_aspect_ratio=stream.get("sample_aspect_ratio") or None,
        fps=fps,
    )


def _audio(stream: Mapping[str, Any]) -> AudioStream | None:
    codec = stream.get("codec_name")
    if not codec:
        return None
    return AudioStream(
        index=_int(stream.get("index")),
        codec=str(codec),
        channels=_int(stream.get("channels")),
        sample_rate=_int(stream.get("sample_rate")),
    )


def _rotation(stream: Mapping[str, Any]) -> float:
    for side in stream.get("side_data_list") or []:
        if isinstance(side, dict) and "rotation" in side:
            try:
                return float(side["rotation"])
            except (TypeError, ValueError):
                return 0.0
    try:  # older muxers: a "rotate" tag
        return float((stream.get("tags") or {}).get("rotate", 0))
    except (TypeError, ValueError):
        return 0.0


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _positive_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


# ---- run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """One ``-progress`` block: media time written so far and whether ffmpeg is done."""

    out_time: float | None
    speed: str | None
    done: bool


ProgressCallback = Callable[[Progress], bool]  # return False to stop ffmpeg


def run(
    args: Sequence[str],
    *,
    on_progress: ProgressCallback | None = None,
    stall_timeout: float | None = None,
) -> str:
    """Run one ffmpeg command (built by the ``*_args`` helpers below); return its stderr tail.

    ``on_progress`` gets each progress block (about every 0.5 s) and returns False to stop: ffmpeg
    is killed and FFmpegCancelled raised. No progress for ``stall_timeout`` seconds kills it with
    FFmpegStalled. Whatever ends this function (including the task's SoftTimeLimitExceeded, raised
    into the wait below), ffmpeg does not outlive it. Non-zero exit → FFmpegError.
    """
    try:
        proc = subprocess.Popen(  # noqa: S603 - argument list from our builders, no shell
            list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True
        )
    except OSError as exc:
        raise FFmpegUnavailable(f"ffmpeg could not run: {exc.strerror or exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    stderr = bytearray()
    pending = b""
    block: dict[str, str] = {}
    last_progress = time.monotonic()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ, "out")
            selector.register(proc.stderr, selectors.EVENT_READ, "err")
            while selector.get_map():
                for key, _ in selector.select(timeout=1.0):
                    data = os.read(key.fd, 65536)
                    if not data:
                        selector.unregister(key.fileobj)
                        continue
                    if key.data == "err":
                        stderr += data
                        del stderr[:-STDERR_TAIL_BYTES]
                        continue
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for raw in lines:
                        name, _, value = raw.decode(errors="replace").strip().partition("=")
                        block[name] = value
                        if name != "progress":
                            continue
                        last_progress = time.monotonic()
                        progress = Progress(_out_time(block), block.get("speed"), value == "end")
                        block = {}
                        if on_progress is not None and on_progress(progress) is False:
                            raise FFmpegCancelled("stopped by the progress callback")
                if stall_timeout is not None and time.monotonic() - last_progress > stall_timeout:
                    raise FFmpegStalled(f"no progress for {stall_timeout:.0f} s")
            returncode = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    tail = stderr.decode(errors="replace")
    if returncode != 0:
        raise FFmpegError("ffmpeg failed", returncode=returncode, stderr=tail[-4000:])
    return tail


def _out_time(block: Mapping[str, str]) -> float | None:
    raw = block.get("out_time_us") or block.get("out_time_ms")  # both are microseconds
    try:
        value = int(raw) / 1_000_000 if raw else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


# ---- command builders ---------------------------------------------------------------------


def _global(ffmpeg: str, loglevel: str = "error") -> list[str]:
    return [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", loglevel, "-progress", "pipe:1", "-nostats"]


def _hls(out_dir: Path, name: str) -> list[str]:
    folder = out_dir / name
    return [
        "-f", "hls",
        "-hls_time", str(HLS_SEGMENT_SECONDS),
        "-hls_playlist_type", "vod",
        "-hls_flags", "independent_segments",
        "-hls_segment_type", "mpegts",
        "-start_number", "1",
        "-hls_segment_filename", str(folder / SEGMENT_PATTERN),
        str(folder / PLAYLIST_NAME),
    ]  # fmt: skip


def video_encode_args(
    ffmpeg: str,
    source: Path,
    out_dir: Path,
    video: VideoStream,
    audio: AudioStream | None,
    renditions: Sequence[VideoRendition],
    *,
    preset: str,
) -> list[str]:
    """One ffmpeg run for the whole ladder: decode once, ``split`` to one scaler + x264 per rung.

    Output folders ``out_dir/<rendition>/`` must exist (the HLS muxer does not create them).
    """
    fps = video.fps or 25.0
    gop = str(ladder.gop_frames(fps))
    head = f"[0:{video.index}]"
    if fps > ladder.MAX_FPS:
        head += f"fps={ladder.MAX_FPS:g},"
    else:
        head += "null,"
    graph = [f"{head}split={len(renditions)}" + "".join(f"[s{i}]" for i in range(len(renditions)))]
    for i, r in enumerate(renditions):
        graph.append(f"[s{i}]scale={r.width}:{r.height}:flags=bicubic,setsar=1,format=yuv420p[v{i}]")
    args = [*_global(ffmpeg), "-i", str(source), "-filter_complex", ";".join(graph)]
    for i, r in enumerate(renditions):
        args += ["-map", f"[v{i}]"]
        if audio is not None:
            args += ["-map", f"0:{audio.index}"]
        args += [
            "-c:v", "libx264", "-preset", preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-b:v", f"{r.video_kbps}k", "-maxrate", f"{r.maxrate_kbps}k", "-bufsize", f"{r.bufsize_kbps}k",
            "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
            # Keyframes on a 2 s media-time grid as well, so variable frame rates still cut 6 s segments.
            "-force_key_frames", f"expr:gte(t,n_forced*{ladder.KEYFRAME_SECONDS:g})",
        ]  # fmt: skip
        if audio is not None:
            args += [
                "-c:a", "aac", "-profile:a", "aac_low", "-b:a", f"{r.audio_kbps}k",
                "-ar", str(VIDEO_AUDIO_RATE), "-ac", "2",
            ]  # fmt: skip
        args += _hls(out_dir, r.name)
    return args


def thumbnail_args(
    ffmpeg: str, source: Path, target: Path, video: VideoStream, at_seconds: float, size: tuple[int, int]
) -> list[str]:
    """One JPEG frame (``-q:v 3``) at ``at_seconds``, scaled to ``size`` (display-rotated)."""
    width, height = size
    return [
        *_global(ffmpeg),
        "-ss", f"{max(0.0, at_seconds):.3f}",
        "-i", str(source),
        "-map", f"0:{video.index}",
        "-frames:v", "1",
        "-vf", f"scale={width}:{height}:flags=bicubic,setsar=1",
        "-q:v", "3",
        "-f", "image2", "-update", "1",
        str(target),
    ]  # fmt: skip


def loudnorm_measure_args(ffmpeg: str, source: Path, audio: AudioStream) -> list[str]:
    """Pass 1: measure only (the JSON report goes to stderr at level info)."""
    return [
        *_global(ffmpeg, "info"),
        "-i", str(source),
        "-map", f"0:{audio.index}",
        "-af", f"loudnorm={LOUDNORM_TARGET}:print_format=json",
        "-f", "null", "-",
    ]  # fmt: skip


@dataclass(frozen=True)
class Loudness:
    input_i: float
    input_tp: float
    input_lra: float
    input_thresh: float
    target_offset: float

    @property
    def usable(self) -> bool:
        """Silence measures as -inf: then pass 2 runs without measured values (dynamic mode)."""
        values = (self.input_i, self.input_tp, self.input_lra, self.input_thresh, self.target_offset)
        return all(math.isfinite(v) for v in values)


_LOUDNORM_JSON = re.compile(r"\[Parsed_loudnorm[^\]]*\]\s*(\{.*?\})", re.S)


def parse_loudnorm(stderr: str) -> Loudness:
    """The measurement printed by pass 1; FFmpegError when it is missing or malformed."""
    matches = _LOUDNORM_JSON.findall(stderr)
    if not matches:
        raise FFmpegError("loudnorm printed no measurement", stderr=stderr[-4000:])
    try:
        data = json.loads(matches[-1])
        return Loudness(
            input_i=float(data["input_i"]),
            input_tp=float(data["input_tp"]),
            input_lra=float(data["input_lra"]),
            input_thresh=float(data["input_thresh"]),
            target_offset=float(data["target_offset"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise FFmpegError("loudnorm measurement unreadable", stderr=stderr[-4000:]) from exc


def loudnorm_apply_filter(measured: Loudness | None) -> str:
    if measured is None or not measured.usable:
        return f"loudnorm={LOUDNORM_TARGET}"
    return (
        f"loudnorm={LOUDNORM_TARGET}"
        f":measured_I={measured.input_i:.2f}:measured_TP={measured.input_tp:.2f}"
        f":measured_LRA={measured.input_lra:.2f}:measured_thresh={measured.input_thresh:.2f}"
        f":offset={measured.target_offset:.2f}:linear=true"
    )


def audio_encode_args(
    ffmpeg: str,
    source: Path,
    out_dir: Path,
    audio: AudioStream,
    renditions: Sequence[AudioRendition],
    measured: Loudness | None,
    waveform_pcm: Path,
) -> list[str]:
    """Pass 2 in one run: normalise once, then every AAC rendition and the 8 kHz mono PCM for the waveform."""
    n = len(renditions)
    graph = (
        f"[0:{audio.index}]{loudnorm_apply_filter(measured)},aresample={AUDIO_RATE},"
        f"asplit={n + 1}" + "".join(f"[a{i}]" for i in range(n)) + "[w];"
        f"[w]aresample={WAVEFORM_RATE},aformat=sample_fmts=s16:channel_layouts=mono[wf]"
    )
    args = [*_global(ffmpeg), "-i", str(source), "-filter_complex", graph]
    for i, r in enumerate(renditions):
        args += [
            "-map", f"[a{i}]",
            "-c:a", "aac", "-profile:a", "aac_low", "-b:a", f"{r.audio_kbps}k",
            "-ar", str(AUDIO_RATE), "-ac", "2",
            *_hls(out_dir, r.name),
        ]  # fmt: skip
    args += ["-map", "[wf]", "-c:a", "pcm_s16le", "-f", "s16le", str(waveform_pcm)]
    return args


def stream_level(path: Path, ffprobe: str = "ffprobe") -> int | None:
    """H.264 ``level_idc`` of the first video stream of an output segment (for CODECS)."""
    args = [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=level", "-of", "json", str(path)]
    try:
        completed = subprocess.run(  # noqa: S603 - argument list, no shell
            args, capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL
        )
        streams = json.loads(completed.stdout or b"{}").get("streams") or []
        level = int(streams[0]["level"]) if streams else None
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError, AttributeError):
        return None
    return level if level and level > 0 else None
