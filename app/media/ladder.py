"""The rendition ladder and the master playlist (jobs.md §6.2, §6.3): pure functions, no I/O.

Sizes are worked out on the *display* frame: a phone clip stored as 1920x1080 with a 90°
display matrix is a 1080x1920 portrait video, and ffmpeg (autorotate is on by default) hands the
filter graph upright frames, so the scale targets computed here apply as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

#: (name, short side, video kb/s) — highest first; every rung gets AAC 128 kb/s.
VIDEO_LADDER: tuple[tuple[str, int, int], ...] = (
    ("1080p", 1080, 5000),
    ("720p", 720, 2800),
    ("480p", 480, 1400),
    ("360p", 360, 800),
)
SOURCE_RENDITION = "source"
SOURCE_VIDEO_KBPS = 800
VIDEO_AUDIO_KBPS = 128
MAXRATE_FACTOR = 1.07
BUFSIZE_FACTOR = 1.5

#: (name, kb/s) — highest first (jobs.md §6.3).
AUDIO_LADDER: tuple[tuple[str, int], ...] = (("128k", 128), ("64k", 64))
AUDIO_CODECS = "mp4a.40.2"  # AAC-LC

PREVIEW_SECONDS = 30.0
PREVIEW_MAX_SHORT_SIDE = 720
THUMBNAIL_MAX_WIDTH = 1280
MAX_WIDTH, MAX_HEIGHT = 7680, 4320
KEYFRAME_SECONDS = 2.0
MAX_FPS = 60.0  # decision: sources above 60 fps are encoded at 60 fps (the spec is silent)


@dataclass(frozen=True)
class VideoRendition:
    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int = VIDEO_AUDIO_KBPS

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def maxrate_kbps(self) -> int:
        return round(self.video_kbps * MAXRATE_FACTOR)

    @property
    def bufsize_kbps(self) -> int:
        return round(self.video_kbps * BUFSIZE_FACTOR)


@dataclass(frozen=True)
class AudioRendition:
    name: str
    audio_kbps: int


@dataclass(frozen=True)
class Variant:
    """One ``#EXT-X-STREAM-INF`` line of a master playlist."""

    name: str
    bandwidth: int  # peak bits/s
    average_bandwidth: int  # bits/s
    codecs: str
    resolution: tuple[int, int] | None = None  # (width, height); None for audio

    @property
    def uri(self) -> str:
        return f"{self.name}/index.m3u8"


def even_floor(value: float) -> int:
    """The largest even integer ≤ value (at least 2): yuv420p needs even sizes and we never upscale."""
    return max(2, int(value) // 2 * 2)


def display_size(
    width: int, height: int, rotation: float = 0.0, sample_aspect_ratio: str | None = None
) -> tuple[int, int]:
    """Size of the frame as shown: non-square pixels stretched (width scaled by the SAR), then rotated."""
    if sample_aspect_ratio:
        sar = parse_ratio(sample_aspect_ratio)
        if sar and sar != 1:
            width = max(1, round(width * sar))
    if round(rotation) % 180 == 90:
        width, height = height, width
    return width, height


def parse_ratio(text: str) -> Fraction | None:
    """``"16:9"``, ``"30000/1001"`` → Fraction; None for missing, zero or malformed values (``"0/0"``)."""
    for sep in (":", "/"):
        if sep in text:
            num, _, den = text.partition(sep)
            try:
                n, d = int(num), int(den)
            except ValueError:
                return None
            return Fraction(n, d) if n > 0 and d > 0 else None
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scale so the short side becomes ``short_side``, keeping the aspect ratio; even sizes."""
    if width >= height:
        return even_floor(width * short_side / height), even_floor(short_side)
    return even_floor(short_side), even_floor(height * short_side / width)


def video_ladder(width: int, height: int) -> list[VideoRendition]:
    """Renditions for a display-rotated source of ``width`` x ``height``, highest first.

    Every rung whose short side is ≤ the source's short side (never upscaled); below 360 a single
    ``source`` rendition at the source size (made even) at 800 kb/s.
    """
    if width < 1 or height < 1:
        raise ValueError("video dimensions must be positive")
    short = min(width, height)
    rungs = [
        VideoRendition(name, *scaled_size(width, height, side), kbps)
        for name, side, kbps in VIDEO_LADDER
        if side <= short
    ]
    if rungs:
        return rungs
    return [VideoRendition(SOURCE_RENDITION, even_floor(width), even_floor(height), SOURCE_VIDEO_KBPS)]


def audio_ladder() -> list[AudioRendition]:
    return [AudioRendition(name, kbps) for name, kbps in AUDIO_LADDER]


def preview_source(renditions: Sequence[VideoRendition]) -> VideoRendition:
    """The rendition the preview is cut from: the highest with short side ≤ 720, else the lowest."""
    for rendition in renditions:  # highest first
        if rendition.short_side <= PREVIEW_MAX_SHORT_SIDE:
            return rendition
    return renditions[-1]


def preview_duration(duration: float) -> float:
    return min(PREVIEW_SECONDS, duration)


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """Width ≤ 1280 with the aspect ratio kept (display-rotated source size in)."""
    if width <= THUMBNAIL_MAX_WIDTH:
        return even_floor(width), even_floor(height)
    return THUMBNAIL_MAX_WIDTH, even_floor(height * THUMBNAIL_MAX_WIDTH / width)


def gop_frames(fps: float) -> int:
    """Frames between keyframes: 2 s worth (``-g``/``-keyint_min``)."""
    return max(1, round(KEYFRAME_SECONDS * min(fps, MAX_FPS)))


def avc1_codecs(profile_idc: int = 100, level_idc: int = 40) -> str:
    """RFC 6381 ``avc1.PPCCLL`` (constraint flags 0); High profile is 100 (0x64)."""
    return f"avc1.{profile_idc:02x}00{level_idc:02x}"


def video_codecs(level_idc: int, *, with_audio: bool) -> str:
    video = avc1_codecs(100, level_idc)
    return f"{video},{AUDIO_CODECS}" if with_audio else video


def master_playlist(variants: Sequence[Variant]) -> str:
    """``master.m3u8`` listing ``variants`` in the given order (the ladder's: highest first).

    URIs are relative (``<name>/index.m3u8``); the stream proxy rewrites them per token.
    """
    if not variants:
        raise ValueError("a master playlist needs at least one variant")
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in variants:
        attrs = [f"BANDWIDTH={variant.bandwidth}", f"AVERAGE-BANDWIDTH={variant.average_bandwidth}"]
        if variant.resolution:
            attrs.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
        attrs.append(f'CODECS="{variant.codecs}"')
        lines += [f"#EXT-X-STREAM-INF:{','.join(attrs)}", variant.uri]
    return "\n".join(lines) + "\n"


def nominal_bandwidth(video_kbps: int, audio_kbps: int) -> tuple[int, int]:
    """(peak, average) bits/s from the encoder settings; used when no segment could be measured."""
    peak = round((video_kbps * MAXRATE_FACTOR + audio_kbps) * 1000)
    return peak, (video_kbps + audio_kbps) * 1000
