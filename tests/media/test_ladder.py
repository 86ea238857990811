"""The rendition ladder, sizes and the master playlist (pure functions)."""

from __future__ import annotations

import pytest

from app.media import ladder
from app.media.ladder import Variant, VideoRendition


def plan(width: int, height: int) -> list[tuple[str, int, int, int]]:
    return [(r.name, r.width, r.height, r.video_kbps) for r in ladder.video_ladder(width, height)]


def test_ladder_never_upscales_and_keeps_aspect() -> None:
    assert plan(640, 360) == [("360p", 640, 360, 800)]
    assert plan(1280, 720) == [("720p", 1280, 720, 2800), ("480p", 852, 480, 1400), ("360p", 640, 360, 800)]
    assert plan(1920, 1080) == [
        ("1080p", 1920, 1080, 5000),
        ("720p", 1280, 720, 2800),
        ("480p", 852, 480, 1400),
        ("360p", 640, 360, 800),
    ]
    # 4K tops out at 1080p; 4:3 keeps its shape.
    assert [r[0] for r in plan(3840, 2160)] == ["1080p", "720p", "480p", "360p"]
    assert plan(1440, 1080)[0] == ("1080p", 1440, 1080, 5000)


def test_ladder_uses_the_short_side_for_portrait_video() -> None:
    assert plan(720, 1280) == [("720p", 720, 1280, 2800), ("480p", 480, 852, 1400), ("360p", 360, 640, 800)]
    assert plan(1080, 1920)[0] == ("1080p", 1080, 1920, 5000)


def test_small_sources_get_one_source_rendition_with_even_size() -> None:
    assert plan(320, 240) == [("source", 320, 240, 800)]
    assert plan(321, 241) == [("source", 320, 240, 800)]
    assert plan(480, 359) == [("source", 480, 358, 800)]


def test_sizes_are_even_and_never_larger_than_the_source() -> None:
    for width, height in [(1279, 720), (1001, 563), (721, 1281), (4000, 2999), (7680, 4320)]:
        for r in ladder.video_ladder(width, height):
            assert r.width % 2 == 0 and r.height % 2 == 0
            assert r.width <= width and r.height <= height
    assert plan(1279, 720)[0] == ("720p", 1278, 720, 2800)


def test_rendition_rate_control() -> None:
    r = VideoRendition("720p", 1280, 720, 2800)
    assert (r.maxrate_kbps, r.bufsize_kbps, r.audio_kbps) == (2996, 4200, 128)


@pytest.mark.parametrize(
    ("size", "rotation", "sar", "expected"),
    [
        ((1920, 1080), 0, None, (1920, 1080)),
        ((1920, 1080), 90, None, (1080, 1920)),
        ((1920, 1080), -90, "1:1", (1080, 1920)),
        ((1920, 1080), 180, None, (1920, 1080)),
        ((1920, 1080), 270, None, (1080, 1920)),
        ((720, 576), 0, "16:15", (768, 576)),  # PAL 4:3 with non-square pixels
        ((720, 576), 0, "0:1", (720, 576)),  # unknown SAR
    ],
)
def test_display_size(size: tuple[int, int], rotation: float, sar: str | None, expected: tuple[int, int]) -> None:
    assert ladder.display_size(*size, rotation, sar) == expected


def test_parse_ratio() -> None:
    assert ladder.parse_ratio("30000/1001") is not None
    assert float(ladder.parse_ratio("30000/1001") or 0) == pytest.approx(29.97, abs=0.01)
    assert ladder.parse_ratio("0/0") is None
    assert ladder.parse_ratio("x:y") is None
    assert ladder.parse_ratio("") is None


def test_preview_source_is_the_highest_rendition_up_to_720() -> None:
    assert ladder.preview_source(ladder.video_ladder(1920, 1080)).name == "720p"
    assert ladder.preview_source(ladder.video_ladder(640, 360)).name == "360p"
    assert ladder.preview_source(ladder.video_ladder(320, 240)).name == "source"
    assert ladder.preview_duration(12.5) == 12.5
    assert ladder.preview_duration(600) == 30


def test_thumbnail_and_gop() -> None:
    assert ladder.thumbnail_size(1920, 1080) == (1280, 720)
    assert ladder.thumbnail_size(1080, 1920) == (1080, 1920)  # width already ≤ 1280
    assert ladder.thumbnail_size(3840, 1600) == (1280, 532)
    assert ladder.thumbnail_size(640, 360) == (640, 360)
    assert ladder.gop_frames(25) == 50
    assert ladder.gop_frames(29.97) == 60
    assert ladder.gop_frames(120) == 120  # capped at 60 fps


def test_master_playlist_lists_variants_in_ladder_order() -> None:
    text = ladder.master_playlist(
        [
            Variant("720p", 3_100_000, 2_950_000, ladder.video_codecs(31, with_audio=True), (1280, 720)),
            Variant("360p", 960_000, 930_000, ladder.video_codecs(30, with_audio=False), (640, 360)),
        ]
    )
    assert text.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        '#EXT-X-STREAM-INF:BANDWIDTH=3100000,AVERAGE-BANDWIDTH=2950000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"',
        "720p/index.m3u8",
        '#EXT-X-STREAM-INF:BANDWIDTH=960000,AVERAGE-BANDWIDTH=930000,RESOLUTION=640x360,CODECS="avc1.64001e"',
        "360p/index.m3u8",
    ]


def test_audio_master_has_no_resolution() -> None:
    text = ladder.master_playlist([Variant("128k", 140_000, 136_000, ladder.AUDIO_CODECS)])
    assert '#EXT-X-STREAM-INF:BANDWIDTH=140000,AVERAGE-BANDWIDTH=136000,CODECS="mp4a.40.2"' in text
    assert [r.name for r in ladder.audio_ladder()] == ["128k", "64k"]


def test_master_playlist_needs_a_variant_and_nominal_bandwidth() -> None:
    with pytest.raises(ValueError):
        ladder.master_playlist([])
    assert ladder.nominal_bandwidth(800, 128) == (984_000, 928_000)
