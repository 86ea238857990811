"""GET /content/{id}/access, GET /content/{id}/stream and the HLS proxy (api.md §10, security.md §7)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from app.access import service
from app.access.cache import access_cache_key
from app.access.service import decode_reason
from app.content.cache import content_changed_after_commit, gen_key
from app.content.models import Content
from app.identity import access_entries
from app.media.models import MediaItem
from app.security.hls_tokens import mint_hls_token
from tests import factories
from tests.access.helpers import (
    ORIGINAL_BYTES,
    SEGMENTS_PER_PLAYLIST,
    World,
    give_comp,
    headers,
    make_world,
    path_of,
    segment_bytes,
    staff,
    stream,
    uri_lines,
)
from tests.commerce.helpers import Shop, ingest_event, process
from tests.fakes import stripe_objects as so


def access(client: FlaskClient, user: Any, content_id: Any) -> Any:
    return client.get(f"/api/v1/content/{content_id}/access", headers=headers(user))


def token_of(manifest_url: str) -> str:
    return manifest_url.split("/api/v1/stream/", 1)[1].split("/", 1)[0]


def download_token(url: str) -> str:
    """The token of a local download URL, ``…/storage/download/<token>/<file name>``."""
    token, name = url.split("/storage/download/", 1)[1].split("/")
    assert name.endswith((".ts", ".m3u8", ".jpg", ".png", ".json", ".vtt")), url
    return token


def claims_of(token: str) -> dict[str, Any]:
    body = token.split(".", 1)[0]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def full_token(client: FlaskClient, world: World, user: Any, *, expires_in: int = 600) -> str:
    return mint_hls_token(
        content_id=world.content.id,
        media_id=world.content.media_id,
        user_id=user.id,
        scope="full",
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        secret=client.application.config["SECRET_KEY"],
    )


def master(client: FlaskClient, token: str) -> Any:
    return client.get(f"/api/v1/stream/{token}/master.m3u8")


# ---- the access check --------------------------------------------------------------------------


def test_access_reasons(app: Flask, client: FlaskClient, world: World, db_session: Any) -> None:
    comp_user = factories.UserFactory()
    give_comp(comp_user, world.content)
    revoked_user = factories.UserFactory()
    give_comp(revoked_user, world.content, revoked=True)
    admin = factories.UserFactory(role="platform_owner")
    free = world.add_content(price_cents=None)
    cases = [
        (world.buyer, world.content, True, "purchased"),
        (comp_user, world.content, True, "complimentary"),
        (revoked_user, world.content, False, "none"),
        (world.stranger, world.content, False, "none"),
        (staff(world), world.content, True, "staff"),
        (world.owner, world.content, True, "staff"),
        (admin, world.content, True, "staff"),
        (world.stranger, free, True, "free"),
    ]
    for user, content, has_access, reason in cases:
        response = access(client, user, content.id)
        assert response.status_code == 200, response.json
        assert response.json == {"content_id": str(content.id), "has_access": has_access, "reason": reason}


def test_access_visibility_and_errors(app: Flask, client: FlaskClient, world: World, db_session: Any) -> None:
    draft = world.add_content(status="draft", published_at=None)
    deleted = world.add_content(deleted_at=datetime.now(UTC))
    other_org = make_world(app.extensions["storage"], grant=False)
    creator = staff(world)
    assert client.get(f"/api/v1/content/{world.content.id}/access").status_code == 401
    for user, content_id in [
        (world.buyer, uuid.uuid4()),
        (world.buyer, "not-a-uuid"),
        (world.buyer, deleted.id),
        (creator, deleted.id),
        (world.buyer, draft.id),
        (other_org.owner, draft.id),  # staff of another org
    ]:
        response = access(client, user, content_id)
        assert response.status_code == 404
        assert response.json["error"]["code"] == "CONTENT_NOT_FOUND"
    assert access(client, creator, draft.id).json["reason"] == "staff"


def test_access_is_cached_and_free_is_never_hidden_by_the_cache(
    client: FlaskClient, world: World, redis: Any, db_session: Any
) -> None:
    key = access_cache_key(world.stranger.id, world.content.id)
    assert access(client, world.stranger, world.content.id).json["reason"] == "none"
    assert decode_reason(redis.get(key)) == "none"
    # The content becomes free: the cached "none" must not hide it.
    db_session.execute(update(Content).where(Content.id == world.content.id).values(price_cents=0, visibility="public"))
    assert access(client, world.stranger, world.content.id).json["reason"] == "free"
    # A cached grant answer is used as it is (TTL 60 s) until commerce deletes the key.
    redis.set(key, "complimentary", ex=60)
    assert access(client, world.stranger, world.content.id).json["reason"] == "complimentary"
    redis.delete(key)
    assert access(client, world.stranger, world.content.id).json["reason"] == "free"


def test_access_without_redis_reads_the_database(
    app: Flask, client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis as redis_lib

    def down(*args: Any, **kwargs: Any) -> Any:
        raise redis_lib.ConnectionError("down")

    monkeypatch.setattr(app.extensions["redis"], "get", down)
    monkeypatch.setattr(app.extensions["redis"], "set", down)
    assert access(client, world.buyer, world.content.id).json["reason"] == "purchased"
    assert access(client, world.stranger, world.content.id).json["reason"] == "none"


# ---- stream --------------------------------------------------------------------------------------


def test_buyer_streams_and_non_buyer_is_denied(app: Flask, client: FlaskClient, world: World) -> None:
    before = datetime.now(UTC)
    response = stream(client, world.buyer, world.content.id, expires_in=1800)
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {
        "manifest_url", "expires_at", "content_type", "preview", "duration_seconds", "renditions",
        "thumbnail_url", "waveform_url", "captions",
    }  # fmt: skip
    assert body["manifest_url"].startswith("http://localhost:5000/api/v1/stream/")
    assert body["manifest_url"].endswith("/master.m3u8")
    assert (body["content_type"], body["preview"], body["duration_seconds"]) == ("video", False, 18)
    assert body["renditions"] == ["720p", "360p"]
    assert body["thumbnail_url"].startswith("http://localhost:5000/storage/download/")
    assert body["waveform_url"] is None
    assert body["captions"] == []
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=1798) <= expires_at <= datetime.now(UTC) + timedelta(seconds=1800)
    claims = claims_of(token_of(body["manifest_url"]))
    assert claims["u"] == str(world.buyer.id) and claims["s"] == "full"
    assert claims["c"] == str(world.content.id) and claims["m"] == str(world.media.id)
    assert claims["exp"] == int(expires_at.timestamp())

    denied = stream(client, world.stranger, world.content.id)
    assert denied.status_code == 403 and denied.json["error"]["code"] == "ACCESS_DENIED"


def test_stream_default_expiry_and_bad_expires_in(client: FlaskClient, world: World) -> None:
    body = stream(client, world.buyer, world.content.id).json
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert abs((expires_at - datetime.now(UTC)).total_seconds() - 3600) < 5
    for bad in ({"expires_in": "299"}, {"expires_in": "86401"}, {"expires_in": "1e3"}, {"expires_in": "-5"},
                {"expires_in": ""}, {"other": "1"}):  # fmt: skip
        response = stream(client, world.buyer, world.content.id, **bad)
        assert response.status_code == 400, bad
        assert response.json["error"]["code"] == "VALIDATION_ERROR"
    assert stream(client, world.buyer, world.content.id, expires_in="300").status_code == 200
    assert stream(client, world.buyer, world.content.id, expires_in="86400").status_code == 200


def test_stream_media_not_ready_is_422(client: FlaskClient, world: World, db_session: Any) -> None:
    media = factories.MediaItemFactory(organization_id=world.org.id, created_by=world.owner.id, status="processing")
    content = world.add_content(media_id=media.id, price_cents=None)
    response = stream(client, world.stranger, content.id)
    assert response.status_code == 422 and response.json["error"]["code"] == "MEDIA_NOT_READY"
    # Access comes first: a paid item without access is 403 even if not ready.
    paid = world.add_content(media_id=media.id)
    assert stream(client, world.stranger, paid.id).json["error"]["code"] == "ACCESS_DENIED"


def test_staff_stream_drafts_of_their_org_only(app: Flask, client: FlaskClient, world: World) -> None:
    draft = world.add_content(status="draft", published_at=None)
    archived = world.add_content(status="archived")
    creator = staff(world)
    for content in (draft, archived):
        response = stream(client, creator, content.id)
        assert response.status_code == 200
        assert master(client, token_of(response.json["manifest_url"])).status_code == 200
    outsider = make_world(app.extensions["storage"], grant=False).owner
    assert stream(client, outsider, draft.id).status_code == 404
    # A buyer of the item does not see it once it is unpublished.
    give = factories.PurchaseFactory(customer_id=world.buyer.id, content=draft)
    factories.GrantFactory(
        user_id=world.buyer.id, content_id=draft.id, organization_id=world.org.id, source="purchase",
        purchase_id=give.id,
    )  # fmt: skip
    assert stream(client, world.buyer, draft.id).status_code == 404


def test_complimentary_grant_streams(client: FlaskClient, world: World) -> None:
    guest = factories.UserFactory()
    give_comp(guest, world.content)
    response = stream(client, guest, world.content.id)
    assert response.status_code == 200
    assert master(client, token_of(response.json["manifest_url"])).status_code == 200


# ---- the HLS proxy (local storage) ----------------------------------------------------------------


def _all_playlists(client: FlaskClient, manifest_url: str) -> tuple[Any, dict[str, Any]]:
    top = client.get(path_of(manifest_url))
    renditions = {}
    for line in uri_lines(top.get_data(as_text=True)):
        renditions[line] = client.get(path_of(line))
    return top, renditions


def test_every_segment_is_a_signed_url_that_returns_the_bytes(client: FlaskClient, world: World) -> None:
    manifest_url = stream(client, world.buyer, world.content.id, expires_in=900).json["manifest_url"]
    token = token_of(manifest_url)
    top, renditions = _all_playlists(client, manifest_url)
    assert top.status_code == 200
    assert top.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert top.headers["Cache-Control"] == "private, no-store"
    assert top.headers["Access-Control-Allow-Origin"] == "*"
    text = top.get_data(as_text=True)
    assert text.startswith("#EXTM3U") and text.count("#EXT-X-STREAM-INF") == 2
    base = f"http://localhost:5000/api/v1/stream/{token}"
    assert uri_lines(text) == [f"{base}/720p/index.m3u8", f"{base}/360p/index.m3u8"]

    bodies = [text]
    for url, response in renditions.items():
        assert response.status_code == 200 and response.headers["Cache-Control"] == "private, no-store"
        playlist = response.get_data(as_text=True)
        bodies.append(playlist)
        assert "#EXT-X-ENDLIST" in playlist and playlist.count("#EXTINF") == SEGMENTS_PER_PLAYLIST
        segments = uri_lines(playlist)
        assert len(segments) == SEGMENTS_PER_PLAYLIST
        rendition = url.rsplit("/", 2)[-2]
        for index, segment_url in enumerate(segments, start=1):
            assert segment_url.startswith("http://localhost:5000/storage/download/")
            download = claims_of(download_token(segment_url))
            assert download["k"].endswith(f"/hls/a1/{rendition}/seg_{index:05d}.ts")
            assert 60 <= download["exp"] - datetime.now(UTC).timestamp() <= 901
            fetched = client.get(path_of(segment_url))
            assert fetched.status_code == 200 and fetched.data == segment_bytes(world.media.id, rendition, index)
            assert fetched.headers["Content-Type"] == "video/mp2t"
    for body in bodies:
        assert world.media.original_key not in body and "original" not in body
        assert ORIGINAL_BYTES.decode(errors="ignore")[:20] not in body


def test_segment_urls_live_at_least_60_seconds(client: FlaskClient, world: World) -> None:
    token = full_token(client, world, world.buyer, expires_in=5)
    playlist = client.get(f"/api/v1/stream/{token}/360p/index.m3u8").get_data(as_text=True)
    for url in uri_lines(playlist):
        exp = claims_of(download_token(url))["exp"]
        assert exp - datetime.now(UTC).timestamp() >= 58


def test_bad_tokens_are_rejected(client: FlaskClient, world: World) -> None:
    good = full_token(client, world, world.buyer)
    body, sig = good.split(".")
    forged_claims = {**claims_of(good), "u": str(world.stranger.id)}
    forged_body = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    from app.security import tokens

    wrong_purpose = tokens.sign(
        client.application.config["SECRET_KEY"], "download", {"k": world.media.original_key}, 2**31
    )
    for bad in [
        f"{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",  # tampered signature (never the same)
        f"{forged_body}.{sig}",  # tampered claims
        full_token(client, world, world.buyer, expires_in=-5),  # expired
        wrong_purpose,  # a download token is not a stream token
        "garbage",
        "x" * 3000,
    ]:
        for path in (f"/api/v1/stream/{bad}/master.m3u8", f"/api/v1/stream/{bad}/360p/index.m3u8"):
            response = client.get(path)
            assert response.status_code == 403, path
            assert response.json["error"]["code"] == "INVALID_SIGNED_URL"


def test_token_of_a_user_without_access_is_denied(client: FlaskClient, world: World) -> None:
    """A valid token bound to another user (who has no access) is not a key for anyone else."""
    stranger_token = full_token(client, world, world.stranger)
    response = master(client, stranger_token)
    assert response.status_code == 403 and response.json["error"]["code"] == "ACCESS_DENIED"
    assert client.get(f"/api/v1/stream/{stranger_token}/360p/index.m3u8").status_code == 403


def test_proxy_rechecks_content_and_media(client: FlaskClient, world: World, db_session: Any) -> None:
    token = full_token(client, world, world.buyer)
    assert client.get(f"/api/v1/stream/{token}/1080p/index.m3u8").status_code == 404
    assert client.get(f"/api/v1/stream/{token}/preview/index.m3u8").json["error"]["code"] == "NOT_FOUND"
    other = factories.MediaItemFactory(organization_id=world.org.id, created_by=world.owner.id)
    db_session.execute(update(Content).where(Content.id == world.content.id).values(media_id=other.id))
    response = master(client, token)
    assert response.status_code == 404 and response.json["error"]["code"] == "CONTENT_NOT_FOUND"
    db_session.execute(
        update(Content)
        .where(Content.id == world.content.id)
        .values(media_id=world.media.id, deleted_at=datetime.now(UTC))
    )
    assert master(client, token).json["error"]["code"] == "CONTENT_NOT_FOUND"


def test_preview_token_lists_only_the_preview(client: FlaskClient, world: World, db_session: Any) -> None:
    token = mint_hls_token(
        content_id=world.content.id,
        media_id=world.media.id,
        user_id=None,
        scope="preview",
        expires_at=datetime.now(UTC) + timedelta(minutes=10),
        secret=client.application.config["SECRET_KEY"],
    )
    text = master(client, token).get_data(as_text=True)
    assert uri_lines(text) == [f"http://localhost:5000/api/v1/stream/{token}/preview/index.m3u8"]
    assert "RESOLUTION=1280x720" in text  # the 720p rung the preview is cut from
    preview = client.get(f"/api/v1/stream/{token}/preview/index.m3u8")
    assert preview.status_code == 200
    for index, url in enumerate(uri_lines(preview.get_data(as_text=True)), start=1):
        assert client.get(path_of(url)).data == segment_bytes(world.media.id, "preview", index)
    assert client.get(f"/api/v1/stream/{token}/720p/index.m3u8").status_code == 404
    db_session.execute(update(Content).where(Content.id == world.content.id).values(status="draft"))
    assert master(client, token).status_code == 404


def test_proxy_never_serves_a_uri_outside_the_playlist_folder(app: Flask, client: FlaskClient, world: World) -> None:
    storage = app.extensions["storage"]
    key = world.media.hls_master_key.replace("master.m3u8", "360p/index.m3u8")
    hostile = "\n".join([
        "#EXTM3U", "#EXT-X-TARGETDURATION:6",
        "#EXTINF:6.0,", "../../original.mp4",
        "#EXTINF:6.0,", "https://evil.example/x.ts",
        "#EXTINF:6.0,", "seg_00001.ts",
        '#EXT-X-MAP:URI="../../../original.mp4"',
        "#EXT-X-ENDLIST",
    ])  # fmt: skip
    storage.put_bytes(key, hostile.encode(), "application/vnd.apple.mpegurl")
    token = full_token(client, world, world.buyer)
    playlist = client.get(f"/api/v1/stream/{token}/360p/index.m3u8").get_data(as_text=True)
    [only] = uri_lines(playlist)
    assert claims_of(download_token(only))["k"].endswith("/360p/seg_00001.ts")
    assert playlist.count("#EXTINF") == 1 and "original" not in playlist and "evil" not in playlist


def test_platform_owner_and_staff_tokens(client: FlaskClient, world: World) -> None:
    creator = staff(world)
    assert master(client, full_token(client, world, creator)).status_code == 200
    admin = factories.UserFactory(role="platform_owner")
    assert master(client, full_token(client, world, admin)).status_code == 200


# ---- refunds and disputes take effect at once --------------------------------------------------------


def _shop(world: World) -> Shop:
    return Shop(world.owner, world.org, world.content, world.buyer)


def _run(app: Flask, db_session: Any, evt: dict[str, Any]) -> str | None:
    return process(app, db_session, ingest_event(app, db_session, evt))


@pytest.mark.parametrize("ending", ["refund", "dispute"])
def test_refunded_or_disputed_buyer_loses_access_at_once(
    app: Flask, client: FlaskClient, db_session: Any, redis: Any, sent_tasks: Any, ending: str
) -> None:
    world = make_world(app.extensions["storage"], grant=False)
    shop = _shop(world)
    paid = shop.paid_session()
    assert _run(app, db_session, so.event("checkout.session.completed", paid)) == "processed"
    assert redis.get(access_cache_key(world.buyer.id, world.content.id)) == access_entries.TOMBSTONE.encode()
    assert access(client, world.buyer, world.content.id).json["reason"] == "purchased"  # (from Postgres)
    redis.delete(access_cache_key(world.buyer.id, world.content.id))  # the purchase's tombstone ran out (30 s)
    # The purchase works: access (cache warmed), stream, playlists.
    assert access(client, world.buyer, world.content.id).json["reason"] == "purchased"
    assert decode_reason(redis.get(access_cache_key(world.buyer.id, world.content.id))) == "purchased"
    manifest_url = stream(client, world.buyer, world.content.id).json["manifest_url"]
    token = token_of(manifest_url)
    assert master(client, token).status_code == 200
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204

    if ending == "refund":
        charge = so.charge(payment_intent=paid["payment_intent"], amount=1999, amount_refunded=1999)
        evt = so.event("charge.refunded", charge, previous_attributes={"amount_refunded": 0})
    else:
        evt = so.event("charge.dispute.created", so.dispute(payment_intent=paid["payment_intent"]))
    assert _run(app, db_session, evt) == "processed"

    # No waiting for the 60 s cache: the very next requests are refused.
    assert access(client, world.buyer, world.content.id).json == {
        "content_id": str(world.content.id), "has_access": False, "reason": "none",
    }  # fmt: skip
    assert stream(client, world.buyer, world.content.id).json["error"]["code"] == "ACCESS_DENIED"
    assert heartbeat(client, world.buyer, world.content.id).json["error"]["code"] == "ACCESS_DENIED"
    for path in (f"/api/v1/stream/{token}/master.m3u8", f"/api/v1/stream/{token}/360p/index.m3u8"):
        response = client.get(path)
        assert response.status_code == 403 and response.json["error"]["code"] == "ACCESS_DENIED"


def test_a_refund_reaches_every_process_at_once(
    app: Flask, client: FlaskClient, db_session: Any, redis: Any, sent_tasks: Any, as_other_process: Any
) -> None:
    """Another web process streams from its near cache (session, access entry, content token); the
    worker's refund reaches it before its next request."""
    world = make_world(app.extensions["storage"], grant=False)
    paid = _shop(world).paid_session()
    assert _run(app, db_session, so.event("checkout.session.completed", paid)) == "processed"
    redis.delete(access_cache_key(world.buyer.id, world.content.id))  # the purchase's tombstone ran out (30 s)
    bearer = headers(world.buyer)  # one session throughout, as a player has
    path = f"/api/v1/content/{world.content.id}/stream"
    with as_other_process() as near:
        for _ in range(3):  # the session's database read and put, the fill, then a hit
            assert client.get(path, headers=bearer).status_code == 200
        assert decode_reason(near.get(access_cache_key(world.buyer.id, world.content.id))) == "purchased"
    charge = so.charge(payment_intent=paid["payment_intent"], amount=1999, amount_refunded=1999)
    evt = so.event("charge.refunded", charge, previous_attributes={"amount_refunded": 0})
    assert _run(app, db_session, evt) == "processed"
    with as_other_process():
        assert client.get(path, headers=bearer).json["error"]["code"] == "ACCESS_DENIED"


# ---- a real ingest, then playback of its real playlists ---------------------------------------------


@pytest.mark.e2e
def test_real_ingest_output_streams_through_the_proxy(
    app: Flask, client: FlaskClient, db_session: Any, sent_tasks: Any, tmp_path: Any
) -> None:
    import subprocess

    from app.media.ingest import run_ingest
    from tests.commerce.helpers import in_app

    clip = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(clip)],
        check=True,
    )  # fmt: skip
    storage = app.extensions["storage"]
    owner = factories.UserFactory()
    world = make_world(storage, grant=False)
    media = factories.MediaItemFactory(organization_id=world.org.id, created_by=owner.id, status="uploaded")
    storage.put_file(media.original_key, clip, "video/mp4")
    with in_app(app, db_session):
        assert run_ingest(db_session, media.id, f"job-{uuid.uuid4()}") == "ready"
    db_session.expire_all()
    ready = db_session.get(MediaItem, media.id)
    assert ready is not None and ready.status == "ready"
    content = world.add_content(media_id=media.id, price_cents=None)

    manifest_url = stream(client, world.stranger, content.id).json["manifest_url"]
    top, renditions = _all_playlists(client, manifest_url)
    assert top.status_code == 200 and len(renditions) == len(ready.renditions) == 1
    [response] = renditions.values()
    playlist = response.get_data(as_text=True)
    segments = uri_lines(playlist)
    assert len(segments) >= 2 and playlist.rstrip().endswith("#EXT-X-ENDLIST")
    for index, segment_url in enumerate(segments, start=1):
        fetched = client.get(path_of(segment_url))
        key = f"{ready.hls_master_key.rsplit('/', 1)[0]}/360p/seg_{index:05d}.ts"
        assert fetched.status_code == 200 and fetched.data == storage.get_bytes(key)
        assert fetched.data[:1] == b"\x47"  # MPEG-TS sync byte
    for body in [top.get_data(as_text=True), playlist]:
        assert ready.original_key not in body


# ---- the content snapshot of the hot paths (app.content.cache) -----------------------------------------


def heartbeat(client: FlaskClient, user: Any, content_id: Any) -> Any:
    body = {"position_seconds": 12, "duration_seconds": 600}
    return client.put(f"/api/v1/content/{content_id}/progress", json=body, headers=headers(user))


def test_content_changes_reach_stream_and_heartbeats_at_once(client: FlaskClient, world: World, redis: Any) -> None:
    manage = headers(world.owner)
    path = f"/api/v1/content/{world.content.id}"
    assert stream(client, world.buyer, world.content.id).status_code == 200  # snapshots warm
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204
    assert stream(client, world.stranger, world.content.id).json["error"]["code"] == "ACCESS_DENIED"
    assert heartbeat(client, world.stranger, world.content.id).json["error"]["code"] == "ACCESS_DENIED"

    assert client.post(f"{path}/unpublish", headers=manage).status_code == 200
    assert redis.get(gen_key(world.content.id))  # a fresh token once committed
    assert stream(client, world.buyer, world.content.id).json["error"]["code"] == "CONTENT_NOT_FOUND"
    assert heartbeat(client, world.buyer, world.content.id).json["error"]["code"] == "CONTENT_NOT_FOUND"
    assert stream(client, world.owner, world.content.id).status_code == 200  # staff still see drafts

    assert client.post(f"{path}/publish", headers=manage).status_code == 200
    assert stream(client, world.buyer, world.content.id).status_code == 200
    assert client.patch(path, json={"price_cents": None}, headers=manage).status_code == 200
    assert stream(client, world.stranger, world.content.id).status_code == 200  # free now
    assert heartbeat(client, world.stranger, world.content.id).status_code == 204

    assert client.delete(path, headers=manage).status_code == 204
    assert stream(client, world.buyer, world.content.id).json["error"]["code"] == "CONTENT_NOT_FOUND"
    assert heartbeat(client, world.stranger, world.content.id).json["error"]["code"] == "CONTENT_NOT_FOUND"


def test_a_change_outside_the_content_service_lags_at_most_the_snapshot_ttl(
    client: FlaskClient, world: World, db_session: Any, redis: Any
) -> None:
    first = stream(client, world.buyer, world.content.id)
    assert first.status_code == 200 and service.cached_snapshot(world.content.id) is not None
    db_session.execute(update(Content).where(Content.id == world.content.id).values(status="draft"))
    # No token was replaced: within the snapshot's 10 s a URL may still be issued, but nothing can be
    # played with it (the proxy reads the rows) …
    late = stream(client, world.buyer, world.content.id)
    assert late.status_code == 200
    assert master(client, token_of(late.json["manifest_url"])).status_code == 404
    # … and a new token (or the snapshot's age) makes the hot paths read the rows again.
    redis.set(gen_key(world.content.id), "changed")
    assert stream(client, world.buyer, world.content.id).status_code == 404
    assert heartbeat(client, world.buyer, world.content.id).status_code == 404
    redis.delete(gen_key(world.content.id))
    service.forget_snapshots()
    assert stream(client, world.buyer, world.content.id).status_code == 404


def test_the_token_is_replaced_only_when_the_change_is_committed(
    app: Flask, world: World, db_session: Any, redis: Any
) -> None:
    with app.app_context():
        with db_session.begin_nested():
            content_changed_after_commit(db_session, world.content.id)
        assert redis.get(gen_key(world.content.id)) is None  # a savepoint is not a commit
        db_session.commit()
        first = redis.get(gen_key(world.content.id))
        assert first and redis.ttl(gen_key(world.content.id)) > 3600
        db_session.execute(update(Content).where(Content.id == world.content.id).values(title="Renamed"))
        content_changed_after_commit(db_session, world.content.id)
        db_session.rollback()
        db_session.commit()
        assert redis.get(gen_key(world.content.id)) == first  # rolled back: nothing to announce


def test_heartbeat_replaces_an_unreadable_access_entry(client: FlaskClient, world: World, redis: Any) -> None:
    redis.set(access_cache_key(world.buyer.id, world.content.id), "garbage")
    assert heartbeat(client, world.buyer, world.content.id).status_code == 204
    assert decode_reason(redis.get(access_cache_key(world.buyer.id, world.content.id))) == "purchased"
    redis.set(access_cache_key(world.stranger.id, world.content.id), "garbage")
    assert heartbeat(client, world.stranger, world.content.id).status_code == 403


def test_a_warm_stream_request_makes_one_redis_round_trip(app: Flask, client: FlaskClient, world: World) -> None:
    """The session entry, the access entry and the content token come back from one script call."""
    url, buyer = f"/api/v1/content/{world.content.id}/stream", headers(world.buyer)
    assert client.get(url, headers=buyer).status_code == 200  # warms the caches
    redis_client = app.extensions["redis"]
    commands: list[str] = []
    original = redis_client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        commands.append(str(args[0]))
        return original(*args, **kwargs)

    redis_client.execute_command = counting
    try:
        warm = client.get(url, headers=buyer)
    finally:
        del redis_client.execute_command
    assert warm.status_code == 200 and warm.json["renditions"] == ["720p", "360p"]
    assert commands == ["EVALSHA"]
    assert stream(client, world.stranger, world.content.id).status_code == 403  # keys are per user


def test_stream_without_redis_reads_the_database(
    app: Flask, client: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis as redis_lib

    def down(*args: Any, **kwargs: Any) -> Any:
        raise redis_lib.ConnectionError("down")

    for name in ("get", "set", "mget", "execute_command", "pipeline"):
        monkeypatch.setattr(app.extensions["redis"], name, down)
    assert stream(client, world.buyer, world.content.id).status_code == 200
    assert stream(client, world.stranger, world.content.id).json["error"]["code"] == "ACCESS_DENIED"


@pytest.mark.parametrize(
    "query",
    [{}, {"expires_in": "3600"}, {"expires_in": "300"}, {"expires_in": "86400"}, {"expires_in": "0300"},
     {"expires_in": "299"}, {"expires_in": "86401"}, {"expires_in": "x"}, {"expires_in": ""}, {"expires_in": "+300"},
     {"expires_in": "\u0663\u0660\u0660"}, {"expires_in": "3" * 19}, {"foo": "1"}, {"expires_in": "300", "foo": "1"}],
)  # fmt: skip
def test_stream_args_fast_load_agrees_with_the_schema(query: dict[str, str]) -> None:
    import marshmallow as ma
    from webargs.multidictproxy import MultiDictProxy
    from werkzeug.datastructures import MultiDict

    from app.access.schemas import StreamArgsSchema, fast_stream_args

    schema = StreamArgsSchema()
    args = MultiDict(query)
    try:
        slow: Any = schema.load(MultiDictProxy(args, schema))
    except ma.ValidationError as exc:
        slow = exc.messages
    fast = fast_stream_args(args)
    if fast is not None:  # the fast path only ever answers where the schema loads the same
        assert fast == slow
    if query in ({}, {"expires_in": "3600"}, {"expires_in": "300"}):
        assert fast is not None  # and it does answer the usual cases


def test_stream_args_repeated_or_unknown_take_the_schema_path(client: FlaskClient, world: World) -> None:
    for query in ("expires_in=300&expires_in=600", "expires_in=300&foo=1", "expires_in=299"):
        response = client.get(f"/api/v1/content/{world.content.id}/stream?{query}", headers=headers(world.buyer))
        assert response.status_code == 400 and response.json["error"]["code"] == "VALIDATION_ERROR", query
    ok = client.get(f"/api/v1/content/{world.content.id}/stream?expires_in=600", headers=headers(world.buyer))
    assert ok.status_code == 200
