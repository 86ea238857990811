"""``Stripe-Signature`` signing and verification, byte for byte as Stripe does it (security.md §9).

Header: ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "{t}.{raw body}")>[,v1=…][,v0=…]``.
Verification tries every configured secret (rotation) against every ``v1`` value with a
constant-time compare and refuses timestamps more than ``tolerance`` seconds from now, in
either direction (a replayed old delivery and a forged future one are both refused).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

DEFAULT_TOLERANCE_SECONDS = 300
MAX_HEADER_LENGTH = 4096


class SignatureError(Exception):
    """The signature is missing, malformed, wrong or outside the tolerance."""


def compute(body: bytes, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``"{timestamp}.{body}"`` with ``secret``."""
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={compute(body, secret, ts)}"


def parse_header(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures). Unknown schemes (``v0``) are ignored, as Stripe's libraries do."""
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError("signature header too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isdigit() or len(value) > 12:
                raise SignatureError("malformed timestamp")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("no timestamp")
    if not signatures:
        raise SignatureError("no v1 signature")
    return timestamp, signatures


def verify(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Return the signed timestamp, or raise ``SignatureError``."""
    if not header:
        raise SignatureError("missing signature header")
    timestamp, signatures = parse_header(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = compute(body, secret, timestamp).encode("ascii")
        for candidate in signatures:
            # Every comparison runs (no early exit) so timing says nothing about which one matched.
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    if not matched:
        raise SignatureError("no matching signature")
    return timestamp
