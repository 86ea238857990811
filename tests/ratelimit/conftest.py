"""Fixtures of the limiter tests: an app with limits on, and the access tests' world."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.access.helpers import World, make_world


@pytest.fixture(scope="module")
def limited_app(app_factory: Any) -> Flask:
    flask_app: Flask = app_factory(RATELIMIT_ENABLED=True)
    assert flask_app.extensions["near_cache"].wait_usable(5.0)
    return flask_app


@pytest.fixture()
def world(app: Flask, db_session: Any, redis: Any) -> World:
    return make_world(app.extensions["storage"])
