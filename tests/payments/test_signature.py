"""Stripe-Signature signing/verification, checked against the official SDK's implementation."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from app.payments.signature import SignatureError, compute, sign, verify

SECRET = "whsec_test_secret"
BODY = json.dumps({"id": "evt_1", "object": "event", "type": "charge.refunded"}, indent=2).encode()


def test_our_signature_passes_the_official_sdk() -> None:
    header = sign(BODY, SECRET)
    event = stripe.Webhook.construct_event(BODY.decode(), header, SECRET, tolerance=300)
    assert event["id"] == "evt_1"


def test_sdk_computed_signature_passes_ours() -> None:
    ts = int(time.time())
    v1 = stripe.WebhookSignature._compute_signature(f"{ts}.{BODY.decode()}", SECRET)
    assert verify(BODY, f"t={ts},v1={v1}", [SECRET]) == ts
    assert v1 == compute(BODY, SECRET, ts)


def test_header_with_several_v1_and_v0_and_spaces() -> None:
    ts = int(time.time())
    good = compute(BODY, SECRET, ts)
    header = f"t={ts}, v1={'0' * 64}, v1={good}, v0={'f' * 64}"
    assert verify(BODY, header, [SECRET]) == ts


def test_every_secret_is_tried_for_rotation() -> None:
    header = sign(BODY, "whsec_new")
    assert verify(BODY, header, ["whsec_old", "whsec_new"])
    with pytest.raises(SignatureError):
        verify(BODY, header, ["whsec_old"])


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", "t=abc,v1=00", "v1=" + "0" * 64, "t=123", "t=" + "9" * 20 + ",v1=00", "x" * 5000],
)
def test_malformed_headers_fail(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify(BODY, header, [SECRET])


def test_tampered_body_fails() -> None:
    header = sign(BODY, SECRET)
    with pytest.raises(SignatureError):
        verify(BODY.replace(b"charge.refunded", b"charge.refundeX"), header, [SECRET])


def test_tolerance_both_directions() -> None:
    now = float(int(time.time()))
    assert verify(BODY, sign(BODY, SECRET, int(now) - 300), [SECRET], now=now)
    assert verify(BODY, sign(BODY, SECRET, int(now) + 300), [SECRET], now=now)
    with pytest.raises(SignatureError):
        verify(BODY, sign(BODY, SECRET, int(now) - 301), [SECRET], now=now)
    with pytest.raises(SignatureError):
        verify(BODY, sign(BODY, SECRET, int(now) + 301), [SECRET], now=now)
