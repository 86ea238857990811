"""Commerce/payments fixtures: the fake Stripe API server, provider switching, a shop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app.payments.local_provider import LocalProvider
from app.payments.stripe_provider import StripeProvider
from tests.commerce.helpers import Shop, make_shop
from tests.fakes.stripe_api import FakeStripe

TEST_KEY = "sk_test_codex_fake"


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[FakeStripe]:
    server = FakeStripe().start()
    yield server
    server.stop()


@pytest.fixture()
def fake_stripe(stripe_server: FakeStripe) -> FakeStripe:
    stripe_server.reset()
    return stripe_server


def _install(flask_app: Flask, provider: Any) -> Any:
    previous = flask_app.extensions.get("payment_provider")
    flask_app.extensions["payment_provider"] = provider
    return previous


def _restore(flask_app: Flask, previous: Any) -> None:
    if previous is None:
        flask_app.extensions.pop("payment_provider", None)
    else:
        flask_app.extensions["payment_provider"] = previous


@pytest.fixture()
def stripe_provider(app: Flask, fake_stripe: FakeStripe) -> Iterator[StripeProvider]:
    """The real Stripe provider (official SDK) pointed at the fake server via STRIPE_API_BASE."""
    provider = StripeProvider(TEST_KEY, api_base=fake_stripe.url, api_version=app.config["STRIPE_API_VERSION"])
    previous = _install(app, provider)
    yield provider
    _restore(app, previous)


@pytest.fixture()
def local_provider(app: Flask) -> Iterator[LocalProvider]:
    provider = LocalProvider(app.config)
    previous = _install(app, provider)
    yield provider
    _restore(app, previous)


@pytest.fixture()
def shop(db_session: Any) -> Shop:
    return make_shop()
