"""Captions in playback (api.md §6.2, §10): the master's SUBTITLES group, the subtitle playlist and
its signed VTT URL, previews without captions, and the stream answer (route and fast path) that
follows a caption change at once."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.security.hls_tokens import mint_hls_token
from tests.access.helpers import World, headers, path_of, stream, uri_lines
from tests.access.test_fast_path import Viewer, fast_path, flask_only
from tests.access.test_routes import claims_of, download_token, full_token, master, token_of

VTT = b"WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nHello <i>world</i> <img src=x onerror=alert(1)>\n"


def put_caption(client: FlaskClient, world: World, language: str, label: str | None = None) -> Any:
    response = client.put(
        f"/api/v1/media/{world.media.id}/captions/{language}",
        data=VTT,
        headers={**headers(world.owner), "Content-Type": "text/vtt"},
        query_string={"label": label} if label else {},
    )
    assert response.status_code == 200, response.json
    return response.json


def delete_caption(client: FlaskClient, world: World, language: str) -> None:
    response = client.delete(f"/api/v1/media/{world.media.id}/captions/{language}", headers=headers(world.owner))
    assert response.status_code == 204


def preview_token(client: FlaskClient, world: World) -> str:
    return mint_hls_token(
        content_id=world.content.id,
        media_id=world.media.id,
        user_id=None,
        scope="preview",
        expires_at=datetime.now(UTC) + timedelta(minutes=10),
        secret=client.application.config["SECRET_KEY"],
    )


def test_the_master_lists_a_subtitles_group_used_by_every_variant(client: FlaskClient, world: World) -> None:
    put_caption(client, world, "en")
    put_caption(client, world, "pt-BR", label='Português "BR"')
    token = full_token(client, world, world.buyer)
    text = master(client, token).get_data(as_text=True)
    base = f"http://localhost:5000/api/v1/stream/{token}"
    media_lines = [line for line in text.splitlines() if line.startswith("#EXT-X-MEDIA:")]
    assert media_lines == [
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",LANGUAGE="en",NAME="English",AUTOSELECT=YES,DEFAULT=NO,'
        f'URI="{base}/subs/en.m3u8"',
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",LANGUAGE="pt-BR",NAME="Português \'BR\'",AUTOSELECT=YES,'
        f'DEFAULT=NO,URI="{base}/subs/pt-BR.m3u8"',
    ]
    lines = text.splitlines()
    variants = [line for line in lines if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(variants) == 2 and all(line.endswith(',SUBTITLES="subs"') for line in variants)
    assert max(lines.index(line) for line in media_lines) < min(lines.index(line) for line in variants)
    assert uri_lines(text) == [f"{base}/720p/index.m3u8", f"{base}/360p/index.m3u8"]


def test_the_subtitle_playlist_is_one_signed_vtt_segment_spanning_the_duration(
    client: FlaskClient, world: World
) -> None:
    put_caption(client, world, "en")
    token = full_token(client, world, world.buyer, expires_in=900)
    response = client.get(f"/api/v1/stream/{token}/subs/en.m3u8")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    text = response.get_data(as_text=True)
    assert world.media.duration_seconds == 18
    assert "#EXT-X-TARGETDURATION:18" in text and "#EXTINF:18.000," in text and "#EXT-X-ENDLIST" in text
    [url] = uri_lines(text)
    assert re.fullmatch(r"http://localhost:5000/storage/download/[^/]+/en-[0-9a-f-]{36}\.vtt", url), url
    # The VTT URL expires with the stream token.
    assert abs(claims_of(download_token(url))["exp"] - claims_of(token)["exp"]) <= 1
    vtt = client.get(path_of(url))
    assert vtt.status_code == 200 and vtt.headers["Content-Type"].startswith("text/vtt")
    assert b"&lt;img src=x onerror=alert(1)&gt;" in vtt.data and b"<img" not in vtt.data
    assert vtt.data.startswith(b"WEBVTT\n")


def test_unknown_languages_previews_and_bad_tokens_get_no_subtitles(client: FlaskClient, world: World) -> None:
    put_caption(client, world, "en")
    token = full_token(client, world, world.buyer)
    for language in ("de", "EN", "index", "..%2F..%2Fx"):
        response = client.get(f"/api/v1/stream/{token}/subs/{language}.m3u8")
        assert response.status_code == 404, language
    preview = preview_token(client, world)
    text = master(client, preview).get_data(as_text=True)
    assert "#EXT-X-MEDIA" not in text and "SUBTITLES=" not in text
    response = client.get(f"/api/v1/stream/{preview}/subs/en.m3u8")
    assert response.status_code == 404 and response.json["error"]["code"] == "NOT_FOUND"
    response = client.get(f"/api/v1/stream/{token[:-2]}xx/subs/en.m3u8")
    assert response.status_code == 403 and response.json["error"]["code"] == "INVALID_SIGNED_URL"
    # A caller without access gets no subtitle playlist either (the proxy's access check).
    stranger = full_token(client, world, world.stranger)
    response = client.get(f"/api/v1/stream/{stranger}/subs/en.m3u8")
    assert response.status_code == 403 and response.json["error"]["code"] == "ACCESS_DENIED"


def test_the_stream_answer_follows_caption_changes_at_once(client: FlaskClient, world: World) -> None:
    assert stream(client, world.buyer, world.content.id).json["captions"] == []
    put_caption(client, world, "en")
    assert stream(client, world.buyer, world.content.id).json["captions"] == [{"language": "en", "label": "English"}]
    put_caption(client, world, "de", label="Deutsch")
    put_caption(client, world, "en", label="English (CC)")
    assert stream(client, world.buyer, world.content.id).json["captions"] == [
        {"language": "de", "label": "Deutsch"},
        {"language": "en", "label": "English (CC)"},
    ]
    delete_caption(client, world, "de")
    response = stream(client, world.buyer, world.content.id)
    assert response.json["captions"] == [{"language": "en", "label": "English (CC)"}]
    # and the master of the new token lists exactly that
    text = master(client, token_of(response.json["manifest_url"])).get_data(as_text=True)
    assert text.count("#EXT-X-MEDIA:TYPE=SUBTITLES") == 1 and 'NAME="English (CC)"' in text


def test_the_fast_path_answers_the_new_captions_too(app: Flask, client: FlaskClient, world: World) -> None:
    viewer = Viewer(client, world.buyer)
    assert viewer.get_fast(world.content.id).json["captions"] == []
    put_caption(client, world, "fr")
    # The caption change replaced the content's token: the next answer (the route's, which reloads
    # the snapshot, or the fast path's once warm again) already lists the caption.
    assert viewer.get(world.content.id).json["captions"] == [{"language": "fr", "label": "French"}]
    fast = viewer.get_fast(world.content.id)
    assert fast.json["captions"] == [{"language": "fr", "label": "French"}]
    before = fast_path(app).streams
    with flask_only(app):
        routed = viewer.get(world.content.id)
    assert fast_path(app).streams == before and routed.json["captions"] == fast.json["captions"]
    delete_caption(client, world, "fr")
    assert viewer.get(world.content.id).json["captions"] == []
    assert viewer.get_fast(world.content.id).json["captions"] == []
