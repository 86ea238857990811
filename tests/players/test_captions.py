"""Captions as real players see them (api.md §6.2): a caption PUT through the API over real HTTP on
media a real worker ingested with ffmpeg, then

- ffprobe/ffmpeg open the signed master URL, find a WebVTT subtitle stream and extract the cue
  (text escaped, timing as uploaded). FFmpeg 5.1's HLS demuxer reads subtitle renditions only with
  ``-strict experimental`` (by default it skips them with a warning and plays the rest), and it
  does not apply ``X-TIMESTAMP-MAP`` (cues keep their local times while the video starts at the
  segments' 1.4 s): the cue is extracted with ``-copyts`` and compared with its local times, and
  the map's value is checked against the segments' first timestamp separately;
- headless Chromium plays the stream with hls.js, which lists the subtitle track and shows the cue
  at its time;
- Chromium's own HLS player (``<video src=master.m3u8>``) plays the stream, and a ``<track>`` with
  the signed VTT URL a viewer reads from the subtitle playlist (of a language the stream answer's
  ``captions`` lists) shows the cue at its time (whether the native player also lists the
  playlist's subtitles group is printed, not asserted: see test_native_player).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urljoin

import pytest
import requests

from tests.players.conftest import Site
from tests.players.test_browser import PLAY_TIMEOUT_MS, Watched, chromium, context, shout

__all__ = ["chromium", "context"]  # fixtures used below

pytestmark = pytest.mark.e2e

CUE_START, CUE_END = 1.0, 2.5
CUE_TEXT = "Hello <b>captions</b> & <img src=x onerror=alert(1)>"
SAFE_TEXT = "Hello <b>captions</b> &amp; &lt;img src=x onerror=alert(1)&gt;"
VTT = f"WEBVTT\n\nNOTE a comment\n\n00:00:01.000 --> 00:00:02.500\n{CUE_TEXT}\n".encode()
TOLERANCE = 0.35  # a poll every 50 ms, plus the player's own timeupdate granularity


def put_caption(site: Site, language: str = "en") -> dict[str, Any]:
    response = requests.put(
        f"{site.base_url}/api/v1/media/{site.video['id']}/captions/{language}",
        data=VTT,
        headers={**site.owner.headers, "Content-Type": "text/vtt"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def stream_of(site: Site) -> dict[str, Any]:
    stream: dict[str, Any] = site.owner.call("GET", f"/api/v1/content/{site.video_content_id}/stream", 200)
    assert stream["captions"] == [{"language": "en", "label": "English"}]
    return stream


def viewer_vtt_url(manifest_url: str, language: str) -> str:
    """What a viewer's page that plays with a native player uses for a ``<track>``: the signed VTT
    URL in the subtitle playlist of a language the stream answer's ``captions`` lists (fetched over
    HTTP with the viewer's token, as the player would fetch it)."""
    playlist_url = urljoin(manifest_url, f"subs/{language}.m3u8")
    response = requests.get(playlist_url, timeout=30)
    assert response.status_code == 200, response.text
    uris = [line for line in response.text.splitlines() if line and not line.startswith("#")]
    assert len(uris) == 1, response.text  # one segment: the whole VTT
    return urljoin(playlist_url, uris[0])


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_ffmpeg_finds_the_subtitle_stream_and_extracts_the_cue(
    backend: str, make_site: Callable[..., Site], request: pytest.FixtureRequest
) -> None:
    s3_endpoint: Any = request.getfixturevalue("s3_server") if backend == "s3" else None
    site = make_site(backend, s3_endpoint)
    put_caption(site)
    manifest_url = stream_of(site)["manifest_url"]
    master = requests.get(manifest_url, timeout=30).text
    [subs_uri] = re.findall(r'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",.*URI="([^"]+)"', master)
    subtitle_playlist = requests.get(subs_uri, timeout=30).text
    [vtt_url] = [line for line in subtitle_playlist.splitlines() if line and not line.startswith("#")]
    assert vtt_url.split("?", 1)[0].endswith(".vtt")
    vtt = requests.get(vtt_url, timeout=30)
    assert vtt.status_code == 200 and vtt.headers["Content-Type"].startswith("text/vtt")
    # The stored file maps its zero to the segments' earliest timestamp (ffmpeg's mpegts muxer
    # starts the video's DTS at 1.4 s = 126000 ticks of 90 kHz; read from the segment, not assumed).
    mapping = re.search(r"X-TIMESTAMP-MAP=MPEGTS:(\d+),LOCAL:00:00:00\.000", vtt.text)
    assert mapping is not None, vtt.text
    probe_ts = run(
        "ffprobe", "-v", "error", "-show_entries", "packet=pts,dts", "-read_intervals", "%+#40", "-of", "json",
        first_segment_url(manifest_url),
    )  # fmt: skip
    assert probe_ts.returncode == 0, probe_ts.stderr
    packets = json.loads(probe_ts.stdout)["packets"]
    assert int(mapping.group(1)) == min(min(int(p["pts"]), int(p["dts"])) for p in packets), packets[:6]

    # FFmpeg's HLS demuxer reads WebVTT subtitle renditions only with -strict experimental; by
    # default it skips them with a warning ("Can't support the subtitle"), and still plays the rest.
    default = run("ffprobe", "-v", "warning", "-show_streams", "-of", "json", manifest_url)
    assert default.returncode == 0, default.stderr
    shout(request, f"ffprobe default on the master: {default.stderr.strip()[:300]!r}")
    probe = run("ffprobe", "-v", "error", "-strict", "experimental", "-show_streams", "-of", "json", manifest_url)
    assert probe.returncode == 0, probe.stderr
    streams = json.loads(probe.stdout)["streams"]
    subtitles = [s for s in streams if s["codec_type"] == "subtitle"]
    assert subtitles and all(s["codec_name"] == "webvtt" for s in subtitles), streams
    assert {s.get("tags", {}).get("language") for s in subtitles} == {"en"}, subtitles

    extracted = run(
        "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-strict", "experimental", "-copyts", "-i", manifest_url,
        "-map", "0:s:0", "-c:s", "copy", "-f", "webvtt", "-",
    )  # fmt: skip
    assert extracted.returncode == 0, extracted.stderr
    shout(request, f"ffmpeg extracted ({backend}):\n{extracted.stdout.strip()}")
    cues = re.findall(r"(\d\d:\d\d:\d\d\.\d{3}|\d\d:\d\d\.\d{3}) --> (\S+)\n(.+)", extracted.stdout)
    assert [text for _, _, text in cues] == [SAFE_TEXT], extracted.stdout
    start = seconds(cues[0][0])
    assert abs(start - CUE_START) <= 0.05 and abs(seconds(cues[0][1]) - CUE_END) <= 0.05, cues


def first_segment_url(manifest_url: str) -> str:
    master = requests.get(manifest_url, timeout=30).text
    variant = next(line for line in master.splitlines() if line and not line.startswith("#"))
    playlist = requests.get(variant, timeout=30).text
    return next(line for line in playlist.splitlines() if line and not line.startswith("#"))


def seconds(stamp: str) -> float:
    parts = [float(p) for p in stamp.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


# ---- Chromium ----------------------------------------------------------------------------------

# Runs before the test player's own script: every subtitle/caption track the video gets is shown,
# and every 50 ms the active cues are written down with the playback time. With ?track=<url>, a
# <track> of that URL is added (the media element asks for CORS, so the cross-origin VTT loads).
CAPTION_WATCH = """
window.captionLog = [];
window.trackLog = [];
document.addEventListener("DOMContentLoaded", function () {
  var video = document.getElementById("video");
  var params = new URLSearchParams(location.search);
  function show(track) {
    window.trackLog.push({kind: track.kind, label: track.label, language: track.language});
    if (track.kind === "subtitles" || track.kind === "captions") track.mode = "showing";
  }
  for (var i = 0; i < video.textTracks.length; i++) show(video.textTracks[i]);
  video.textTracks.addEventListener("addtrack", function (e) { show(e.track); });
  if (params.get("track")) {
    video.crossOrigin = "anonymous";  // a cross-origin <track> loads only through CORS
    var track = document.createElement("track");
    track.kind = "captions"; track.srclang = "en"; track.label = "English (track)";
    track.src = params.get("track"); track.default = true;
    video.appendChild(track);
  }
  setInterval(function () {
    for (var i = 0; i < video.textTracks.length; i++) {
      var t = video.textTracks[i];
      var active = t.activeCues || [];
      for (var j = 0; j < active.length; j++) {
        var cue = active[j];
        var fragment = cue.getCueAsHTML();
        var elements = Array.from(fragment.querySelectorAll("*")).map(function (e) { return e.localName; });
        window.captionLog.push({time: video.currentTime, text: cue.text, elements: elements,
                                shown: fragment.textContent, start: cue.startTime,
                                end: cue.endTime, label: t.label, language: t.language});
      }
    }
  }, 50);
});
"""


def play_with_captions(context: Any, site: Site, manifest_url: str, mode: str, track: str | None = None) -> Any:
    watched = Watched.open(context)
    page = watched.page
    page.add_init_script(CAPTION_WATCH)
    query = f"mode={mode}&src={quote(manifest_url, safe='')}"
    if track:
        query += f"&track={quote(track, safe='')}"
    page.goto(f"{site.frontend.url}/player.html?{query}")
    page.wait_for_function("window.player.ended || window.player.error", timeout=PLAY_TIMEOUT_MS)
    state: dict[str, Any] = page.evaluate(
        "({player: window.player, captions: window.captionLog, tracks: window.trackLog,"
        " textTracks: Array.from(document.getElementById('video').textTracks).map("
        "   t => ({kind: t.kind, label: t.label, language: t.language, mode: t.mode,"
        "          cues: t.cues ? t.cues.length : null}))})"
    )
    state["page_errors"] = watched.errors
    page.close()
    return state


def check_cue_shown(state: dict[str, Any], label: str) -> None:
    seen = [entry for entry in state["captions"] if entry["label"] == label]
    assert seen, state
    assert {entry["text"] for entry in seen} == {SAFE_TEXT}, seen
    # The escaped markup is shown as text; <b> is the one element the cue makes.
    assert {tuple(entry["elements"]) for entry in seen} == {("b",)}, seen
    assert {entry["shown"] for entry in seen} == {"Hello captions & <img src=x onerror=alert(1)>"}, seen
    assert all(abs(entry["start"] - CUE_START) < 0.01 and abs(entry["end"] - CUE_END) < 0.01 for entry in seen), [
        (e["start"], e["end"], e["time"]) for e in seen[:3]
    ] + state["player"]["events"]
    times = [entry["time"] for entry in seen]
    assert min(times) >= CUE_START - TOLERANCE and max(times) <= CUE_END + TOLERANCE, times
    assert min(times) <= CUE_START + TOLERANCE and max(times) >= CUE_END - TOLERANCE, times  # shown all along


def test_hls_js_lists_the_subtitle_track_and_shows_the_cue_at_its_time(
    make_site: Callable[..., Site], context: Any, request: pytest.FixtureRequest
) -> None:
    site = make_site("local")
    put_caption(site)
    state = play_with_captions(context, site, stream_of(site)["manifest_url"], "hlsjs")
    shout(request, f"hls.js text tracks: {state['textTracks']}")
    assert state["player"]["error"] is None and state["page_errors"] == [], state
    assert state["player"]["ended"] is True
    assert {"kind": "subtitles", "label": "English", "language": "en"} in state["tracks"], state["tracks"]
    check_cue_shown(state, "English")


def test_native_player(make_site: Callable[..., Site], context: Any, request: pytest.FixtureRequest) -> None:
    """Chromium's own HLS player plays the master; a <track> of the signed VTT URL a viewer reads
    from the language's subtitle playlist shows the cue at its time. Whether the native player
    itself exposes the master's subtitles group is reported (Chromium's HLS support may not map it
    to text tracks)."""
    site = make_site("local")
    put_caption(site)
    stream = stream_of(site)
    manifest_url = stream["manifest_url"]
    native = play_with_captions(context, site, manifest_url, "native")
    shout(
        request,
        f"chromium native HLS: canPlayType={native['player']['canPlayType']!r} "
        f"text tracks from the playlist: {native['textTracks']} cues seen: {len(native['captions'])}",
    )
    assert native["player"]["error"] is None and native["page_errors"] == [], native
    assert native["player"]["ended"] is True
    if native["captions"]:  # the native player mapped the subtitles group: it must show it right
        check_cue_shown(native, "English")

    # Where the native player does not map the group, the page adds a <track> per listed caption,
    # from what a viewer has: the stream answer's languages and their subtitle playlists.
    track_url = viewer_vtt_url(manifest_url, stream["captions"][0]["language"])
    with_track = play_with_captions(context, site, manifest_url, "native", track=track_url)
    shout(request, f"chromium native HLS + <track>: text tracks {with_track['textTracks']}")
    assert with_track["player"]["error"] is None and with_track["page_errors"] == [], with_track
    assert with_track["player"]["ended"] is True
    check_cue_shown(with_track, "English (track)")
