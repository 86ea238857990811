"""Thin wrappers around ffprobe/ffmpeg (jobs.md §6, security.md §8 and §15).

Everything runs with argument lists (never a shell) on files inside the job's temporary
directory. ``probe`` parses ``ffprobe -show_format -show_streams -of json`` into small dataclasses;
``run`` executes one ffmpeg command, parses its ``-progress pipe:1`` output and hands each progress
block to a callback that may stop the run (the heartbeat lost its claim). The ``*_args`` builders
are the only place command lines are written, so the benchmark can run the very same commands
by hand.

Every original is hostile (security.md §8). Each read of an original, or of a file made from it,
goes through ``input_args``: a forced demuxer (never ffmpeg's guess, which would follow an HLS or
concat playlist to other files) and ``-protocol_whitelist file``. Every child runs in its own
process group with no stdin and the resource limits of ``Limits``, and a timeout or a stop kills
the whole group.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import re
import resource
import selectors
import signal
import subprocess
import sys
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


# ---- hostile input: demuxer, protocols, limits, process group (security.md §8) ------------

#: The names ffprobe reports as ``format_name`` for each demuxer we force.
DEMUXER_NAMES: dict[str, frozenset[str]] = {
    "mov": frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"}),
    "matroska": frozenset({"matroska", "webm"}),
    "mp3": frozenset({"mp3"}),
    "wav": frozenset({"wav"}),
    "ogg": frozenset({"ogg"}),
    "mpegts": frozenset({"mpegts"}),  # our own HLS segments (``stream_level``)
}
# Local files only: no http, no tcp, no concat:/subfile:/data: wrappers. The pipeline's pipes are all
# outputs (``-progress pipe:1``, ``-f null -``), which this per-input option does not govern, so
# ``pipe`` is not needed here.
INPUT_PROTOCOLS = "file"


def input_args(source: Path, demuxer: str) -> list[str]:
    """The options that open an original (or a file derived from it): forced demuxer, file protocol only."""
    if demuxer not in DEMUXER_NAMES:
        raise ValueError(f"not a demuxer we read originals with: {demuxer!r}")
    return ["-protocol_whitelist", INPUT_PROTOCOLS, "-f", demuxer, "-i", f"file:{source}"]


def format_matches(format_name: str, demuxer: str) -> bool:
    """True when every name of a probe's ``format_name`` belongs to ``demuxer``."""
    names = [name for name in format_name.split(",") if name]
    allowed = DEMUXER_NAMES.get(demuxer, frozenset())
    return bool(names) and all(name in allowed for name in names)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one ffmpeg/ffprobe child (soft = hard): CPU seconds, address space, file size."""

    cpu_seconds: int
    memory_bytes: int
    file_bytes: int


_PR_SET_PDEATHSIG = 1
try:  # Linux: the child is killed when the worker dies (its own process group no longer shares the worker's fate)
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _child_setup(limits: Limits | None) -> Callable[[], None]:
    """Runs in the child between fork and exec: no locks, no logging, only system calls."""
    wanted = []
    if limits is not None:
        wanted = [
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_AS, limits.memory_bytes),
            (resource.RLIMIT_FSIZE, limits.file_bytes),
        ]

    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        for which, value in wanted:
            hard = resource.getrlimit(which)[1]
            # An unprivileged process cannot raise its hard limit: never ask for more than it has.
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))

    return setup


def _spawn(args: Sequence[str], limits: Limits | None, what: str) -> subprocess.Popen[bytes]:
    """Start a child in a new session (its own process group), stdin /dev/null, with ``limits``."""
    try:
        return subprocess.Popen(  # noqa: S603 - argument list from our builders, no shell
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
            # Not thread-safe in general; this one only makes system calls, and ffmpeg runs from one thread.
            preexec_fn=_child_setup(limits),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise FFmpegUnavailable(f"{what} could not run: {detail}") from exc


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group (the child leads it: pgid = pid), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _capture(args: Sequence[str], limits: Limits | None, timeout: float, what: str) -> tuple[int, bytes, bytes]:
    """Run to the end and return (returncode, stdout, stderr); a timeout (or anything raised into the
    wait, such as the task's soft time limit) kills the group and re-raises."""
    with _spawn(args, limits, what) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:
            _kill_group(proc)
            raise
    return proc.returncode, stdout, stderr


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
    demuxer: str = ""  # what the file was read with; every later run reads it the same way

    @property
    def has_stream(self) -> bool:
        return self.video is not None or self.audio is not None


def probe(
    path: Path,
    ffprobe: str = "ffprobe",
    *,
    demuxer: str | None = None,
    limits: Limits | None = None,
    timeout: float = PROBE_TIMEOUT_SECONDS,
) -> ProbeResult:
    """Run ffprobe on ``path``; ProbeError when it fails or prints something unreadable.

    The pipeline always passes ``demuxer`` (an original is never read as ffprobe guesses);
    ``None`` lets ffprobe guess, for our own files in tests and the benchmark only.
    """
    if demuxer is None:
        source = ["-protocol_whitelist", INPUT_PROTOCOLS, "-i", f"file:{path}"]
    else:
        source = input_args(path, demuxer)
    args = [ffprobe, "-v", "error", *source, "-show_format", "-show_streams", "-of", "json"]
    try:
        returncode, stdout, raw_stderr = _capture(args, limits, timeout, "ffprobe")
    except subprocess.TimeoutExpired as exc:
        raise ProbeError("ffprobe timed out") from exc
    stderr = raw_stderr.decode(errors="replace")[-STDERR_TAIL_BYTES:]
    if returncode != 0:
        raise ProbeError("ffprobe failed", returncode=returncode, stderr=stderr)
    try:
        data = json.loads(stdout or b"{}")
    except ValueError as exc:
        raise ProbeError("ffprobe printed invalid JSON", stderr=stderr) from exc
    if not isinstance(data, dict):
        raise ProbeError("ffprobe printed unexpected JSON", stderr=stderr)
    return parse_probe(data, demuxer)


def parse_probe(data: Mapping[str, Any], demuxer: str | None = None) -> ProbeResult:
    """Pick the main video and audio streams out of ffprobe's JSON (pure; tested on fixtures).

    ``demuxer``: the one forced on ffprobe; without it, the first name of the guessed format.
    """
    fmt = data.get("format") or {}
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    video = _pick([(_video(s), s) for s in streams if s.get("codec_type") == "video"])
    audio = _pick([(_audio(s), s) for s in streams if s.get("codec_type") == "audio"])
    duration = _positive_float(fmt.get("duration"))
    if duration is None:
        durations = [d for s in streams if (d := _positive_float(s.get("duration"))) is not None]
        duration = max(durations) if durations else None
    format_name = str(fmt.get("format_name") or "")
    return ProbeResult(
        format_name=format_name,
        duration=duration,
        video=video,
        audio=audio,
        demuxer=demuxer or format_name.split(",", 1)[0],
    )


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
    limits: Limits | None = None,
) -> str:
    """Run one ffmpeg command (built by the ``*_args`` helpers below); return its stderr tail.

    ``on_progress`` gets each progress block (about every 0.5 s) and returns False to stop: ffmpeg
    is killed and FFmpegCancelled raised. No progress for ``stall_timeout`` seconds kills it with
    FFmpegStalled. Whatever ends this function (including the task's SoftTimeLimitExceeded, raised
    into the wait below), ffmpeg and its process group do not outlive it. A child stopped by a
    resource limit (SIGXCPU, SIGXFSZ, or a failed allocation) exits non-zero → FFmpegError.
    """
    proc = _spawn(args, limits, "ffmpeg")
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
            _kill_group(proc)
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
    demuxer: str,
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
    args = [*_global(ffmpeg), *input_args(source, demuxer), "-filter_complex", ";".join(graph)]
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
    ffmpeg: str,
    source: Path,
    target: Path,
    video: VideoStream,
    at_seconds: float,
    size: tuple[int, int],
    *,
    demuxer: str,
) -> list[str]:
    """One JPEG frame (``-q:v 3``) at ``at_seconds``, scaled to ``size`` (display-rotated)."""
    width, height = size
    return [
        *_global(ffmpeg),
        "-ss", f"{max(0.0, at_seconds):.3f}",
        *input_args(source, demuxer),
        "-map", f"0:{video.index}",
        "-frames:v", "1",
        "-vf", f"scale={width}:{height}:flags=bicubic,setsar=1",
        "-q:v", "3",
        "-f", "image2", "-update", "1",
        str(target),
    ]  # fmt: skip


def loudnorm_measure_args(ffmpeg: str, source: Path, audio: AudioStream, *, demuxer: str) -> list[str]:
    """Pass 1: measure only (the JSON report goes to stderr at level info)."""
    return [
        *_global(ffmpeg, "info"),
        *input_args(source, demuxer),
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
    *,
    demuxer: str,
) -> list[str]:
    """Pass 2 in one run: normalise once, then every AAC rendition and the 8 kHz mono PCM for the waveform."""
    n = len(renditions)
    graph = (
        f"[0:{audio.index}]{loudnorm_apply_filter(measured)},aresample={AUDIO_RATE},"
        f"asplit={n + 1}" + "".join(f"[a{i}]" for i in range(n)) + "[w];"
        f"[w]aresample={WAVEFORM_RATE},aformat=sample_fmts=s16:channel_layouts=mono[wf]"
    )
    args = [*_global(ffmpeg), *input_args(source, demuxer), "-filter_complex", graph]
    for i, r in enumerate(renditions):
        args += [
            "-map", f"[a{i}]",
            "-c:a", "aac", "-profile:a", "aac_low", "-b:a", f"{r.audio_kbps}k",
            "-ar", str(AUDIO_RATE), "-ac", "2",
            *_hls(out_dir, r.name),
        ]  # fmt: skip
    args += ["-map", "[wf]", "-c:a", "pcm_s16le", "-f", "s16le", str(waveform_pcm)]
    return args


def stream_level(path: Path, ffprobe: str = "ffprobe", *, limits: Limits | None = None) -> int | None:
    """H.264 ``level_idc`` of the first video stream of an output segment (for CODECS).

    The segment is made from the original, so it is read like one: forced MPEG-TS, files only.
    """
    args = [
        ffprobe, "-v", "error", *input_args(path, "mpegts"),
        "-select_streams", "v:0", "-show_entries", "stream=level", "-of", "json",
    ]  # fmt: skip
    try:
        returncode, stdout, _ = _capture(args, limits, 60, "ffprobe")
        if returncode != 0:
            return None
        streams = json.loads(stdout or b"{}").get("streams") or []
        level = int(streams[0]["level"]) if streams else None
    except (FFmpegUnavailable, subprocess.TimeoutExpired, ValueError, KeyError, TypeError, AttributeError):
        return None
    return level if level and level > 0 else None
