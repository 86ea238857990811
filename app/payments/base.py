"""The payment provider protocol and its errors.

Two implementations: ``stripe`` (the official SDK against ``STRIPE_API_BASE``) and ``local``
(the built-in test checkout page). Objects cross this boundary as plain dicts in Stripe's JSON
shape (a Checkout Session is exactly what a ``checkout.session.*`` event carries in
``data.object``), so webhook payloads, reconciliation and self-healing share one code path.

Errors are classified once, here: ``TransientProviderError`` (connection, timeout, rate limit,
5xx: retry later) and ``PermanentProviderError`` (4xx: retrying the same call cannot help).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

StripeObject = dict[str, Any]
# The idempotency key was used before with other parameters (Stripe's ``idempotency_error``).
IDEMPOTENCY_CONFLICT = "idempotency_error"


class ProviderError(Exception):
    """A payment provider call failed; ``transient`` says whether a retry may succeed."""

    transient = False

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class TransientProviderError(ProviderError):
    transient = True


class PermanentProviderError(ProviderError):
    transient = False

    @property
    def already_refunded(self) -> bool:
        return self.code == "charge_already_refunded"

    @property
    def idempotency_conflict(self) -> bool:
        return self.code == IDEMPOTENCY_CONFLICT


@dataclass(frozen=True)
class CheckoutRequest:
    """Everything a Checkout Session is created from; amounts come from the database."""

    amount_cents: int
    currency: str
    product_name: str
    customer_email: str
    client_reference_id: str
    metadata: Mapping[str, str]
    success_url: str
    cancel_url: str
    expires_at: datetime
    idempotency_key: str
    # Only the local provider stores its session itself; Stripe ignores these.
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    status: str


class PaymentProvider(Protocol):
    name: str  # "stripe" | "local"

    @property
    def livemode(self) -> bool:
        """Whether events from this provider are live (``sk_live_`` keys); local and test keys: False."""
        ...

    def create_checkout_session(self, request: CheckoutRequest) -> StripeObject:
        """Create a Checkout Session (mode ``payment``, one line item) and return it."""
        ...

    def retrieve_checkout_session(self, session_id: str) -> StripeObject | None:
        """The session as the provider sees it now; None when it does not know the id."""
        ...

    def find_session_for_payment_intent(self, payment_intent_id: str) -> StripeObject | None:
        """The Checkout Session that created ``payment_intent_id`` (self-healing), or None."""
        ...

    def payment_intent_for_charge(self, charge_id: str) -> str | None:
        """The payment intent of a charge (disputes without ``payment_intent``)."""
        ...

    def list_recent_complete_sessions(self, created_since: datetime) -> Iterator[StripeObject]:
        """Every ``complete`` Checkout Session created since then, all pages."""
        ...

    def create_refund(
        self, *, payment_intent_id: str, amount_cents: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundResult:
        """Refund ``amount_cents`` of the payment. "Already refunded" is a ``PermanentProviderError``
        whose ``already_refunded`` is True."""
        ...
