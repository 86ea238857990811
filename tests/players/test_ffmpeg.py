"""ffmpeg, the player behind ffplay and mpv, plays our streams with its default options (api.md §6:
every signed storage URL ends in the object's file name, or ffmpeg's HLS demuxer refuses the
segments with "is not in allowed_segment_extensions").

Each rendition of a video and an audio item is decoded to the end, through the real HLS proxy and
the real storage URLs (the app's own on local storage, presigned moto URLs on S3).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.players.conftest import CLIP_SECONDS, Site

pytestmark = pytest.mark.e2e

_TIME = re.compile(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)")
_DURATION_SLACK = 0.5  # AAC priming and frame rounding


def decode(url: str, *extra: str) -> tuple[float, str]:
    """``ffmpeg -i url -f null -`` with default input options: (decoded seconds, stderr)."""
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", url, *extra, "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"ffmpeg exit {result.returncode} for {url}:\n{result.stderr[-3000:]}"
    times = _TIME.findall(result.stderr)
    assert times, result.stderr[-3000:]
    hours, minutes, seconds = times[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds), result.stderr


def variant_urls(master_url: str) -> list[str]:
    master = requests.get(master_url, timeout=30)
    assert master.status_code == 200, master.text
    return [line for line in master.text.splitlines() if line and not line.startswith("#")]


def check_plays(site: Site, content_id: str, renditions: list[str]) -> None:
    stream = site.owner.call("GET", f"/api/v1/content/{content_id}/stream", 200)
    variants = variant_urls(stream["manifest_url"])
    assert [url.rsplit("/", 2)[-2] for url in variants] == renditions
    for variant in variants:
        seconds, stderr = decode(variant)
        assert abs(seconds - CLIP_SECONDS) <= _DURATION_SLACK, stderr[-2000:]
        assert "allowed_segment_extensions" not in stderr and "Invalid data" not in stderr
        playlist = requests.get(variant, timeout=30).text
        segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
        assert segments and all(s.split("?", 1)[0].endswith(".ts") for s in segments), playlist
    # The master as a player opens it, every stream of every variant mapped and decoded.
    seconds, stderr = decode(stream["manifest_url"], "-map", "0")
    assert abs(seconds - CLIP_SECONDS) <= _DURATION_SLACK, stderr[-2000:]
    assert stderr.count("Opening '") >= len(variants)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_ffmpeg_decodes_every_rendition_to_the_end(
    backend: str, make_site: Callable[..., Site], request: pytest.FixtureRequest
) -> None:
    s3_endpoint: Any = request.getfixturevalue("s3_server") if backend == "s3" else None
    site = make_site(backend, s3_endpoint)
    assert site.video["renditions"] == ["480p", "360p"] and site.audio["renditions"] == ["128k", "64k"]
    check_plays(site, site.video_content_id, site.video["renditions"])
    check_plays(site, site.audio_content_id, site.audio["renditions"])
