"""Payment providers behind one protocol (``base.PaymentProvider``), chosen by ``PAYMENT_PROVIDER``.

``get_provider()`` builds the app's provider on first use and keeps it in
``app.extensions["payment_provider"]`` (tests may put a provider of their own there).

An adapter: it knows the provider's shapes, not our tables. A provider that produces events
in-process (the local one) hands each signed delivery to the sink the domain registers with
``register_event_sink`` (commerce does, in ``create_app``), the way Stripe's own events arrive
through the webhook route.
"""

from __future__ import annotations

from collections.abc import Callable

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
    "EventSink",
    "PaymentProvider",
    "PermanentProviderError",
    "ProviderError",
    "RefundResult",
    "TransientProviderError",
    "build_provider",
    "deliver_event",
    "get_provider",
    "register_event_sink",
]

EXTENSION = "payment_provider"
SINK_EXTENSION = "payment_event_sink"

EventSink = Callable[[bytes, str], None]
"""Takes a signed delivery (body, ``Stripe-Signature``), verifies and stores it in the caller's transaction."""


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


def register_event_sink(app: Flask, sink: EventSink) -> None:
    """Where in-process provider events go (the domain's ingest, signature verified there too)."""
    app.extensions[SINK_EXTENSION] = sink


def deliver_event(body: bytes, signature: str) -> None:
    sink: EventSink | None = current_app.extensions.get(SINK_EXTENSION)
    if sink is None:
        raise RuntimeError("no payment event sink registered (create_app registers commerce's)")
    sink(body, signature)
