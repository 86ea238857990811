"""Payment providers behind one protocol (``base.PaymentProvider``), chosen by ``PAYMENT_PROVIDER``.

``get_provider()`` builds the app's provider on first use and keeps it in
``app.extensions["payment_provider"]`` (tests may put a provider of their own there).
"""

from __future__ import annotations

from flask import Flask, current_app

from app.payments.base import (
    CheckoutRequest,
    PaymentProvider,
    PermanentProviderError,
    ProviderError,
    RefundResult,
    TransientProviderError,
)

__all__ = [
    "CheckoutRequest",
    "PaymentProvider",
    "PermanentProviderError",
    "ProviderError",
    "RefundResult",
    "TransientProviderError",
    "build_provider",
    "get_provider",
]

EXTENSION = "payment_provider"


def build_provider(app: Flask) -> PaymentProvider:
    config = app.extensions["codex_config"]
    if config.payment_provider == "stripe":
        from app.payments.stripe_provider import StripeProvider

        return StripeProvider.from_config(app.config)
    from app.payments.local_provider import LocalProvider

    return LocalProvider(app.config)


def get_provider() -> PaymentProvider:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    provider: PaymentProvider | None = app.extensions.get(EXTENSION)
    if provider is None:
        provider = build_provider(app)
        app.extensions[EXTENSION] = provider
    return provider
