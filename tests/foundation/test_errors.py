"""Every error path answers in the spec's shape (README §3.2, §3.3)."""

from __future__ import annotations

from typing import Any


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def test_unknown_route_is_json_404(probe: Any) -> None:
    assert_error(probe.get("/api/v1/nope"), 404, "NOT_FOUND")
    assert_error(probe.get("/nope"), 404, "NOT_FOUND")


def test_wrong_method_is_405_with_allow_header(probe: Any) -> None:
    response = probe.delete("/api/v1/probe")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed


def test_validation_error_is_400_with_field_details(probe: Any) -> None:
    error = assert_error(probe.post("/api/v1/probe", json={"name": "toolong", "count": "3"}), 400, "VALIDATION_ERROR")
    assert set(error["details"]) == {"name", "count"}
    assert all(isinstance(m, list) and m for m in error["details"].values())


def test_nested_field_errors_are_dotted(probe: Any) -> None:
    response = probe.post("/api/v1/probe", json={"name": "ok", "tags": ["a", "abcd"]})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "tags.1" in error["details"]


def test_unknown_body_field_is_rejected(probe: Any) -> None:
    error = assert_error(probe.post("/api/v1/probe", json={"name": "ok", "status": "ready"}), 400, "VALIDATION_ERROR")
    assert "status" in error["details"]


def test_strings_are_trimmed_and_control_characters_rejected(probe: Any) -> None:
    ok = probe.post("/api/v1/probe", json={"name": "  abc  ", "note": "   "})
    assert ok.status_code == 201
    assert ok.get_json()["name"] == "abc"
    assert ok.get_json()["note"] is None
    error = assert_error(probe.post("/api/v1/probe", json={"name": "a\x00b"}), 400, "VALIDATION_ERROR")
    assert "name" in error["details"]
    multiline = probe.post("/api/v1/probe", json={"name": "abc", "note": "line\nnext\tcol"})
    assert multiline.status_code == 201


def test_booleans_and_integers_are_strict(probe: Any) -> None:
    assert_error(probe.post("/api/v1/probe", json={"name": "ab", "count": True}), 400, "VALIDATION_ERROR")
    assert_error(probe.post("/api/v1/probe", json={"name": "ab", "count": 1.5}), 400, "VALIDATION_ERROR")
    assert_error(probe.get("/api/v1/probe?flag=yes"), 400, "VALIDATION_ERROR")
    assert probe.get("/api/v1/probe?flag=true").get_json()["flag"] is True


def test_malformed_json_is_invalid_json(probe: Any) -> None:
    for body in ('{"name": "x"', "[1, 2]", '"text"'):
        response = probe.post("/api/v1/probe", data=body, content_type="application/json")
        assert_error(response, 400, "INVALID_JSON")


def test_json_sent_as_text_plain_or_without_content_type_is_415(probe: Any) -> None:
    plain = probe.post("/api/v1/probe", data='{"name": "x"}', content_type="text/plain")
    assert_error(plain, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_error(probe.post("/api/v1/probe", data='{"name": "x"}'), 415, "UNSUPPORTED_MEDIA_TYPE")
    charset = probe.post("/api/v1/probe", data='{"name": "x"}', content_type="application/json; charset=utf-8")
    assert charset.status_code == 201


def test_body_over_the_limit_is_413(probe: Any) -> None:
    big = '{"name": "' + "x" * (1024 * 1024 + 10) + '"}'
    assert_error(probe.post("/api/v1/probe", data=big, content_type="application/json"), 413, "PAYLOAD_TOO_LARGE")


def test_query_parameters_unknown_repeated_or_out_of_range(probe: Any) -> None:
    assert_error(probe.get("/api/v1/probe?bogus=1"), 400, "VALIDATION_ERROR")
    assert_error(probe.get("/api/v1/probe?page=1&page=2"), 400, "VALIDATION_ERROR")
    assert_error(probe.get("/api/v1/probe?per_page=0"), 400, "VALIDATION_ERROR")
    assert_error(probe.get("/api/v1/probe?per_page=101"), 400, "VALIDATION_ERROR")
    assert_error(probe.get("/api/v1/probe?page=-1"), 400, "VALIDATION_ERROR")
    ok = probe.get("/api/v1/probe?page=2&per_page=100").get_json()
    assert ok == {"items": [], "page": 2, "per_page": 100, "total": 0, "pages": 0, "flag": False}


def test_unexpected_exception_is_generic_500_with_request_id(probe: Any) -> None:
    response = probe.get("/api/v1/probe/boom", headers={"X-Request-ID": "req-123"})
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert error["message"] == "An internal error occurred."
    assert error["details"] == {"request_id": "req-123"}
    assert "secret detail" not in response.get_data(as_text=True)


def test_rate_limit_answers_429_with_retry_after(probe: Any) -> None:
    assert probe.get("/api/v1/probe/limited").status_code == 200
    second = probe.get("/api/v1/probe/limited")
    assert second.status_code == 200
    assert second.headers["X-RateLimit-Limit"] == "2"
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert int(second.headers["X-RateLimit-Reset"]) > 0
    third = probe.get("/api/v1/probe/limited")
    error = assert_error(third, 429, "RATE_LIMITED")
    retry_after = int(third.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert error["details"] == {"retry_after": retry_after}


def test_shared_api_budget_is_300_per_minute_and_can_be_switched_off(probe: Any, app: Any, redis: Any) -> None:
    statuses = [probe.get("/api/v1/probe").status_code for _ in range(301)]
    assert statuses[:300] == [200] * 300
    assert statuses[300] == 429
    assert probe.get("/health").status_code == 200  # health is never limited
    disabled = app.test_client()  # the default test app runs with RATELIMIT_ENABLED=false
    assert {disabled.get("/api/v1/openapi.json").status_code for _ in range(305)} == {200}


def test_an_unexpected_exception_on_a_token_path_logs_the_path_masked(app: Any) -> None:
    import io
    import logging

    from app import errors

    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    original = handler.setStream(buffer)
    token = "tok3n-that-signs-an-upload-part"
    try:
        with app.test_request_context(f"/storage/upload-part/{token}"):
            response = errors.handle_unexpected(RuntimeError("disk on fire"))
    finally:
        handler.setStream(original)
    assert response.status_code == 500
    logged = buffer.getvalue()
    assert "request.unhandled_exception" in logged and "/storage/upload-part/[token]" in logged
    assert token not in logged
