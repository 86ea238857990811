"""Purpose-bound HMAC tokens for stream, upload and download URLs (security.md §7).

Format ``<payload>.<sig>``: payload = base64url(compact JSON) without padding, sig =
base64url(HMAC-SHA256(K_purpose, payload)) with K_purpose = HMAC-SHA256(SECRET_KEY,
"codex-token:" + purpose). Verification is constant-time and checks purpose and expiry.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import time
from typing import Any

from app.errors import InvalidSignedUrl

MAX_TOKEN_LENGTH = 2048


_URLSAFE = bytes.maketrans(b"+/", b"-_")
# json.dumps(payload, separators=(",", ":"), sort_keys=True), without building an encoder per call
_compact = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def _b64(data: bytes) -> str:
    """``base64.urlsafe_b64encode`` without the padding (its C core, one translate)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=32)  # a few (secret, purpose) pairs, derived on every sign and verify
def _purpose_key(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), f"codex-token:{purpose}".encode(), hashlib.sha256).digest()


def sign(secret: str, purpose: str, claims: dict[str, Any], expires_at: float) -> str:
    """Sign ``claims`` for ``purpose`` until the Unix time ``expires_at``."""
    payload = {"p": purpose, **claims, "exp": int(expires_at)}
    body = _b64(_compact(payload).encode())
    sig = _b64(hmac.digest(_purpose_key(secret, purpose), body.encode(), "sha256"))  # (one-shot: no HMAC object)
    return f"{body}.{sig}"


def verify(secret: str, purpose: str, token: str, *, now: float | None = None) -> dict[str, Any]:
    """Return the claims, or raise ``InvalidSignedUrl`` (403) for any defect."""
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise InvalidSignedUrl()
    body, sig = token.split(".")
    expected = _b64(hmac.digest(_purpose_key(secret, purpose), body.encode(), "sha256"))
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        raise InvalidSignedUrl()
    try:
        claims = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise InvalidSignedUrl() from None
    if not isinstance(claims, dict) or claims.get("p") != purpose:
        raise InvalidSignedUrl()
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= (time.time() if now is None else now):
        raise InvalidSignedUrl()
    return claims
