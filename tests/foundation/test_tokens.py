"""Purpose-bound HMAC tokens (security.md §7)."""

from __future__ import annotations

import time

import pytest

from app.errors import InvalidSignedUrl
from app.security import tokens

SECRET = "k" * 40


def test_round_trip() -> None:
    token = tokens.sign(SECRET, "download", {"k": "a/b.jpg"}, time.time() + 60)
    claims = tokens.verify(SECRET, "download", token)
    assert claims["k"] == "a/b.jpg" and claims["p"] == "download"


@pytest.mark.parametrize("mutate", ["tamper", "purpose", "secret", "expired", "long", "garbage"])
def test_any_defect_is_403(mutate: str) -> None:
    token = tokens.sign(SECRET, "download", {"k": "a"}, time.time() + 60)
    purpose, secret = "download", SECRET
    if mutate == "tamper":
        body, sig = token.split(".")
        token = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + sig
    elif mutate == "purpose":
        purpose = "upload"
    elif mutate == "secret":
        secret = "other" * 10
    elif mutate == "expired":
        token = tokens.sign(SECRET, "download", {"k": "a"}, time.time() - 1)
    elif mutate == "long":
        token = "a" * 2049
    else:
        token = "not-a-token"
    with pytest.raises(InvalidSignedUrl):
        tokens.verify(secret, purpose, token)
