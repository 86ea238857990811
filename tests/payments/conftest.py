"""The payments tests share the commerce fixtures (fake Stripe server, providers, shop)."""

from tests.commerce.conftest import fake_stripe, local_provider, shop, stripe_provider, stripe_server

__all__ = ["fake_stripe", "local_provider", "shop", "stripe_provider", "stripe_server"]
