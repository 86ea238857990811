"""Fixtures of the access/playback tests: a world with ready media whose HLS files are in storage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app.access import hls
from tests.access.helpers import World, make_world


@pytest.fixture(autouse=True)
def _fresh_playlist_cache() -> Iterator[None]:
    hls.playlists.clear()
    yield
    hls.playlists.clear()


@pytest.fixture()
def world(app: Flask, db_session: Any, redis: Any) -> World:
    return make_world(app.extensions["storage"])
