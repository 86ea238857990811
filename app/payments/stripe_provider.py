"""Stripe through the official SDK (stripe-python ``StripeClient``).

One client per app: the API key, the pinned API version (``STRIPE_API_VERSION``), the base URL
(``STRIPE_API_BASE``, so stripe-mock or a local fake can stand in), a 10 s timeout per call and
``max_network_retries = 2`` (security.md §14). The SDK retries only what is safe to retry and
sends our idempotency keys unchanged on every retry. Using a ``StripeClient`` instead of the
module-level globals (``stripe.api_key``, ``stripe.api_base``) keeps two apps in one process
(tests, a worker next to a web app) from sharing configuration.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import stripe
import structlog

from app.payments.base import (
    IDEMPOTENCY_CONFLICT,
    CheckoutRequest,
    PermanentProviderError,
    ProviderError,
    RefundResult,
    StripeObject,
    TransientProviderError,
)

log = structlog.get_logger(__name__)

TIMEOUT_SECONDS = 10
MAX_NETWORK_RETRIES = 2
# Stripe answers 409 while a request with the same idempotency key is still running.
_TRANSIENT_CODES = {"idempotency_key_in_use", "lock_timeout", "rate_limit"}


def classify(exc: stripe.StripeError) -> ProviderError:
    """Turn an SDK exception into a transient or permanent provider error (no secrets in the text)."""
    status = exc.http_status
    code = exc.code
    message = f"{type(exc).__name__}: {exc.user_message or 'no message'}"[:500]
    transient = (
        isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError)
        or (status is not None and (status >= 500 or status == 429))
        or code in _TRANSIENT_CODES
        or (isinstance(exc, stripe.APIError) and status is None)
    )
    if transient:
        return TransientProviderError(message, code=code, status=status)
    if isinstance(exc, stripe.IdempotencyError):
        code = IDEMPOTENCY_CONFLICT
    return PermanentProviderError(message, code=code, status=status)


def _plain(obj: Any) -> StripeObject:
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict(recursive=True)
    return dict(obj)


class StripeProvider:
    name = "stripe"

    def __init__(self, api_key: str, *, api_base: str, api_version: str) -> None:
        self._api_key = api_key
        self.client = stripe.StripeClient(
            api_key,
            stripe_version=api_version,
            base_addresses={"api": api_base.rstrip("/")},
            max_network_retries=MAX_NETWORK_RETRIES,
            http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StripeProvider:
        return cls(
            config["STRIPE_SECRET_KEY"],
            api_base=config["STRIPE_API_BASE"],
            api_version=config["STRIPE_API_VERSION"],
        )

    @property
    def livemode(self) -> bool:
        return self._api_key.startswith(("sk_live_", "rk_live_"))

    def create_checkout_session(self, request: CheckoutRequest) -> StripeObject:
        metadata = dict(request.metadata)
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.amount_cents,
                        "product_data": {"name": request.product_name},
                    },
                }
            ],
            "customer_email": request.customer_email,
            "client_reference_id": request.client_reference_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "expires_at": int(request.expires_at.timestamp()),
        }
        try:
            session = self.client.v1.checkout.sessions.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": request.idempotency_key},
            )
        except stripe.StripeError as exc:
            raise classify(exc) from exc
        return _plain(session)

    def retrieve_checkout_session(self, session_id: str) -> StripeObject | None:
        try:
            return _plain(self.client.v1.checkout.sessions.retrieve(session_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise classify(exc) from exc
        except stripe.StripeError as exc:
            raise classify(exc) from exc

    def find_session_for_payment_intent(self, payment_intent_id: str) -> StripeObject | None:
        try:
            page = self.client.v1.checkout.sessions.list({"payment_intent": payment_intent_id, "limit": 1})
        except stripe.StripeError as exc:
            raise classify(exc) from exc
        for item in page.data:
            return _plain(item)
        return None

    def payment_intent_for_charge(self, charge_id: str) -> str | None:
        try:
            charge = self.client.v1.charges.retrieve(charge_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise classify(exc) from exc
        except stripe.StripeError as exc:
            raise classify(exc) from exc
        intent: Any = charge.payment_intent
        if intent is None or isinstance(intent, str):
            return intent
        return str(intent.id)

    def list_recent_complete_sessions(self, created_since: datetime) -> Iterator[StripeObject]:
        params: dict[str, Any] = {
            "created": {"gte": int(created_since.timestamp())},
            "status": "complete",
            "limit": 100,
        }
        try:
            page = self.client.v1.checkout.sessions.list(params)  # type: ignore[arg-type]
            for item in page.auto_paging_iter():
                yield _plain(item)
        except stripe.StripeError as exc:
            raise classify(exc) from exc

    def create_refund(
        self, *, payment_intent_id: str, amount_cents: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundResult:
        try:
            refund = self.client.v1.refunds.create(
                {"payment_intent": payment_intent_id, "amount": amount_cents, "metadata": dict(metadata)},
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise classify(exc) from exc
        return RefundResult(refund_id=refund.id, status=str(refund.status or "pending"))
