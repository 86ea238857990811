"""The HLS proxy with the S3 backend (moto in server mode): presigned segment URLs fetched over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.storage.s3 import S3Storage
from tests.access.helpers import ORIGINAL_BYTES, World, make_world, path_of, segment_bytes, stream, uri_lines


@pytest.fixture()
def s3_world(app: Flask, db_session: Any, redis: Any, s3_server: str) -> Iterator[tuple[World, S3Storage]]:
    storage = S3Storage.from_config(
        {
            "S3_BUCKET": f"codex-access-{uuid.uuid4().hex[:12]}",
            "S3_ENDPOINT_URL": s3_server,
            "S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )
    storage.ensure_bucket()
    original = app.extensions["storage"]
    app.extensions["storage"] = storage
    try:
        yield make_world(storage), storage
    finally:
        app.extensions["storage"] = original


def fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, exc.read(), ""
        finally:
            exc.close()  # (it holds the response: left open, its socket warns when collected)


def test_s3_segments_are_presigned_and_return_the_bytes(
    client: FlaskClient, s3_world: tuple[World, S3Storage], s3_server: str
) -> None:
    world, storage = s3_world
    body = stream(client, world.buyer, world.content.id, expires_in=600).json
    assert body["thumbnail_url"].startswith(f"{s3_server}/{storage.bucket}/")
    top = client.get(path_of(body["manifest_url"]))
    assert top.status_code == 200 and top.headers["Cache-Control"] == "private, no-store"
    texts = [top.get_data(as_text=True)]
    for rendition_url in uri_lines(texts[0]):
        rendition = rendition_url.rsplit("/", 2)[-2]
        playlist = client.get(path_of(rendition_url)).get_data(as_text=True)
        texts.append(playlist)
        segments = uri_lines(playlist)
        assert len(segments) == 3
        for index, url in enumerate(segments, start=1):
            parts = urlsplit(url)
            assert url.startswith(f"{s3_server}/{storage.bucket}/orgs/{world.org.id}/media/{world.media.id}/hls/a1/")
            assert parts.path.endswith(f"/{rendition}/seg_{index:05d}.ts")
            query = parse_qs(parts.query)
            assert "X-Amz-Signature" in query and 60 <= int(query["X-Amz-Expires"][0]) <= 600
            status, data, content_type = fetch(url)
            assert status == 200 and data == segment_bytes(world.media.id, rendition, index)
            assert content_type == "video/mp2t"
    for text in texts:
        assert world.media.original_key not in text and "original" not in text
    # The original exists in the bucket, but nothing handed out points at it.
    assert storage.get_bytes(world.media.original_key) == ORIGINAL_BYTES
