"""HLS stream tokens (security.md §7): bound to content, media, user, scope and expiry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from app.errors import InvalidSignedUrl
from app.security import tokens
from app.security.hls_tokens import hls_master_url, mint_hls_token, verify_hls_token

SECRET = "s" * 40


def _soon(seconds: int = 300) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_full_token_round_trip() -> None:
    content_id, media_id, user_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    expires = _soon()
    token = mint_hls_token(
        content_id=content_id, media_id=media_id, user_id=user_id, scope="full", expires_at=expires, secret=SECRET
    )
    claims = verify_hls_token(token, secret=SECRET)
    assert (claims.content_id, claims.media_id, claims.user_id, claims.scope) == (content_id, media_id, user_id, "full")
    assert claims.expires_at == expires.replace(microsecond=0)
    raw = tokens.verify(SECRET, "stream", token)
    assert set(raw) == {"p", "c", "m", "u", "s", "exp"}


def test_preview_token_has_null_user() -> None:
    token = mint_hls_token(
        content_id=uuid.uuid4(), media_id=uuid.uuid4(), user_id=None, scope="preview", expires_at=_soon(), secret=SECRET
    )
    claims = verify_hls_token(token, secret=SECRET)
    assert claims.user_id is None and claims.scope == "preview"
    assert tokens.verify(SECRET, "stream", token)["u"] is None


def test_app_secret_and_url(app: Flask) -> None:
    with app.app_context():
        token = mint_hls_token(
            content_id=uuid.uuid4(), media_id=uuid.uuid4(), user_id=None, scope="preview", expires_at=_soon()
        )
        assert verify_hls_token(token).scope == "preview"
        base = app.config["PUBLIC_BASE_URL"].rstrip("/")
        assert hls_master_url(token) == f"{base}/api/v1/stream/{token}/master.m3u8"
        with pytest.raises(InvalidSignedUrl):
            verify_hls_token(token, secret=SECRET)


@pytest.mark.parametrize("defect", ["tamper", "expired", "other_purpose", "bad_scope", "preview_with_user", "bad_uuid"])
def test_defects_are_403(defect: str) -> None:
    ids = {"c": str(uuid.uuid4()), "m": str(uuid.uuid4())}
    exp = _soon().timestamp()
    if defect == "tamper":
        good = mint_hls_token(
            content_id=uuid.uuid4(),
            media_id=uuid.uuid4(),
            user_id=uuid.uuid4(),
            scope="full",
            expires_at=_soon(),
            secret=SECRET,
        )
        _body, sig = good.split(".")
        other = tokens.sign(SECRET, "stream", {**ids, "u": str(uuid.uuid4()), "s": "full"}, exp).split(".")[0]
        token = f"{other}.{sig}"
    elif defect == "expired":
        token = tokens.sign(SECRET, "stream", {**ids, "u": None, "s": "preview"}, datetime.now(UTC).timestamp() - 1)
    elif defect == "other_purpose":
        token = tokens.sign(SECRET, "download", {**ids, "u": None, "s": "preview"}, exp)
    elif defect == "bad_scope":
        token = tokens.sign(SECRET, "stream", {**ids, "u": None, "s": "everything"}, exp)
    elif defect == "preview_with_user":
        token = tokens.sign(SECRET, "stream", {**ids, "u": str(uuid.uuid4()), "s": "preview"}, exp)
    else:
        token = tokens.sign(SECRET, "stream", {"c": "x", "m": ids["m"], "u": None, "s": "preview"}, exp)
    with pytest.raises(InvalidSignedUrl) as info:
        verify_hls_token(token, secret=SECRET)
    assert info.value.status == 403 and info.value.code == "INVALID_SIGNED_URL"


def test_mint_refuses_inconsistent_claims() -> None:
    with pytest.raises(ValueError):
        mint_hls_token(
            content_id=uuid.uuid4(),
            media_id=uuid.uuid4(),
            user_id=uuid.uuid4(),
            scope="preview",
            expires_at=_soon(),
            secret=SECRET,
        )
    with pytest.raises(ValueError):
        mint_hls_token(
            content_id=uuid.uuid4(),
            media_id=uuid.uuid4(),
            user_id=None,
            scope="full",
            expires_at=_soon(),
            secret=SECRET,
        )


def test_a_token_is_exactly_what_it_always_was() -> None:
    """Tokens issued before a change of the signing code stay valid and identical: the payload is
    compact sorted JSON (non-ASCII escaped), both parts unpadded base64url, HMAC-SHA256 over the
    first with the purpose key (this value was made by the former json.dumps / hmac.new code)."""
    claims = {"c": "efdc12d6-8adc-4749-8ab3-c4d7c660758b", "u": None, "s": "full", "x": "é/?+"}
    token = tokens.sign("golden-secret", "stream", claims, 1800000000.7)
    assert token == (
        "eyJjIjoiZWZkYzEyZDYtOGFkYy00NzQ5LThhYjMtYzRkN2M2NjA3NThiIiwiZXhwIjoxODAwMDAwMDAwLCJwIjoic3RyZWFtIiwicyI6"
        "ImZ1bGwiLCJ1IjpudWxsLCJ4IjoiXHUwMGU5Lz8rIn0.nk8C96GlhCINr-1VAQX0HBMD5KOI3CedlWGgvdC0uhE"
    )
    assert tokens.verify("golden-secret", "stream", token, now=1799999999) == {
        **claims,
        "p": "stream",
        "exp": 1800000000,
    }
