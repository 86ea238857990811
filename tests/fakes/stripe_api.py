"""A small fake of the Stripe API: real HTTP on a local port (threads), Stripe's wire format.

Supports what Codex calls: ``POST /v1/checkout/sessions``, ``GET /v1/checkout/sessions/{id}``,
``GET /v1/checkout/sessions`` (``created[gte]``, ``status``, ``payment_intent``, ``limit``,
``starting_after``; newest first), ``POST /v1/refunds`` and ``GET /v1/charges/{id}``.
Requests are form-encoded with Stripe's bracket notation; answers are Stripe JSON objects and
Stripe error bodies. ``Idempotency-Key`` behaves like Stripe's: the same key with the same
parameters replays the first answer, with other parameters it is a 400 ``idempotency_error``.

Test controls: ``complete_session`` (the customer paid), ``add_session``, ``fail_next`` (inject
an error answer), and ``requests`` (everything received, to assert on keys and metadata).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.stripe_objects import charge as charge_object
from tests.fakes.stripe_objects import checkout_session, stripe_id

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``a[b][0][c]=v`` -> ``{"a": {"b": [{"c": "v"}]}}`` (Stripe's encoding, as stripe-python sends it)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            root[key] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _lists(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class Injected:
    method: str
    path_prefix: str
    status: int
    code: str
    message: str
    retryable: bool


@dataclass
class FakeStripeState:
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)  # by payment intent
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    idempotency: dict[str, tuple[str, dict[str, Any], int, dict[str, Any]]] = field(default_factory=dict)
    injected: list[Injected] = field(default_factory=list)


class FakeStripe:
    PAGE_CAP = 10  # smaller than Stripe's 100 so auto-pagination is exercised with few sessions

    def __init__(self) -> None:
        self.state = FakeStripeState()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeStripe:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.state = FakeStripeState()

    # ---- test controls -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self.state.requests)

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.state.requests if r.method == method and r.path.startswith(path_prefix)]

    def add_session(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.state.sessions[obj["id"]] = obj
            if obj.get("payment_intent") and obj.get("payment_status") == "paid":
                self._charge_for(obj)
        return obj

    def complete_session(self, session_id: str, *, payment_intent: str | None = None) -> dict[str, Any]:
        """The customer paid at Stripe: status complete, paid, with a payment intent and a charge."""
        with self.lock:
            obj = self.state.sessions[session_id]
            obj.update(
                status="complete",
                payment_status="paid",
                payment_intent=payment_intent or stripe_id("pi_3Q"),
                url=None,
            )
            self._charge_for(obj)
            return dict(obj)

    def fail_next(
        self, method: str, path_prefix: str, status: int = 500, *, code: str = "api_error", retryable: bool = False
    ) -> None:
        """The next matching request gets this error (``retryable``: let the SDK retry it)."""
        message = "An unknown error occurred" if status >= 500 else f"Injected {code}"
        with self.lock:
            self.state.injected.append(Injected(method, path_prefix, status, code, message, retryable))

    def charge_for(self, payment_intent: str) -> dict[str, Any] | None:
        return self.state.charges.get(payment_intent)

    def _charge_for(self, obj: dict[str, Any]) -> None:
        intent = obj["payment_intent"]
        if intent not in self.state.charges:
            self.state.charges[intent] = charge_object(
                payment_intent=intent, amount=obj["amount_total"], currency=obj["currency"]
            )

    # ---- HTTP ------------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8") if length else ""
        pairs = parse_qsl(parts.query, keep_blank_values=True) + parse_qsl(raw, keep_blank_values=True)
        params = decode_form(pairs)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            self.state.requests.append(RecordedRequest(method, parts.path, params, headers))
            status, body, extra = self._answer(method, parts.path, params, headers)
        payload = json.dumps(body).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Request-Id", stripe_id("req_", 14))
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not headers.get("authorization", "").startswith("Bearer sk_"):
            return self._error(401, "invalid_api_key", "Invalid API Key provided.", "invalid_request_error")
        for injected in self.state.injected:
            if injected.method == method and path.startswith(injected.path_prefix):
                self.state.injected.remove(injected)
                error_type = "api_error" if injected.status >= 500 else "invalid_request_error"
                status, body, extra = self._error(injected.status, injected.code, injected.message, error_type)
                extra["Stripe-Should-Retry"] = "true" if injected.retryable else "false"
                return status, body, extra
        key = headers.get("idempotency-key")
        if method == "POST" and key:
            cached = self.state.idempotency.get(key)
            if cached is not None:
                cached_path, cached_params, cached_status, cached_body = cached
                if cached_path != path or cached_params != params:
                    return self._error(
                        400,
                        "idempotency_key_reused",  # Stripe's type is idempotency_error
                        "Keys for idempotent requests can only be used with the same parameters.",
                        "idempotency_error",
                    )
                return cached_status, cached_body, {"Idempotent-Replayed": "true"}
        status, body, extra = self._route(method, path, params)
        if method == "POST" and key and status < 500:
            self.state.idempotency[key] = (path, params, status, body)
        return status, body, extra

    def _route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path == "/v1/checkout/sessions":
            return self._create_session(params) if method == "POST" else self._list_sessions(params)
        if method == "GET" and path.startswith("/v1/checkout/sessions/"):
            return self._retrieve_session(path.removeprefix("/v1/checkout/sessions/"))
        if method == "POST" and path == "/v1/refunds":
            return self._create_refund(params)
        if method == "GET" and path.startswith("/v1/charges/"):
            charge_id = path.rsplit("/", 1)[-1]
            for charge in self.state.charges.values():
                if charge["id"] == charge_id:
                    return 200, charge, {}
            return self._missing("charge", charge_id)
        return self._error(
            404, "resource_missing", f"Unrecognized request URL ({method}: {path}).", "invalid_request_error"
        )

    def _create_session(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        item = (params.get("line_items") or [{}])[0]
        price = item.get("price_data") or {}
        try:
            amount = int(price["unit_amount"]) * int(item.get("quantity", 1))
            currency = price["currency"]
        except (KeyError, ValueError):
            return self._error(400, "parameter_missing", "Missing required param: line_items.", "invalid_request_error")
        obj = checkout_session(
            metadata=dict(params.get("metadata") or {}),
            amount_total=amount,
            currency=currency,
            payment_intent=None,
            payment_status="unpaid",
            status="open",
            customer_email=params.get("customer_email") or "",
            created=int(time.time()),
        )
        obj.update(
            client_reference_id=params.get("client_reference_id"),
            success_url=params.get("success_url"),
            cancel_url=params.get("cancel_url"),
            expires_at=int(params.get("expires_at") or time.time() + 86400),
        )
        obj["_payment_intent_metadata"] = dict((params.get("payment_intent_data") or {}).get("metadata") or {})
        self.state.sessions[obj["id"]] = obj
        return 200, self._public(obj), {}

    def _retrieve_session(self, session_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """``GET /v1/checkout/sessions/{id}``: only a session this account holds (created through
        the API, or put there with ``add_session``), as it is now; anything else is Stripe's 404."""
        obj = self.state.sessions.get(session_id) if "/" not in session_id else None
        if obj is None:
            return self._missing("checkout.session", session_id)
        return 200, self._public(obj), {}

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _list_sessions(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        items = sorted(self.state.sessions.values(), key=lambda s: (s["created"], s["id"]), reverse=True)
        created = params.get("created")
        if isinstance(created, dict) and "gte" in created:
            items = [s for s in items if s["created"] >= int(created["gte"])]
        if params.get("status"):
            items = [s for s in items if s["status"] == params["status"]]
        if params.get("payment_intent"):
            items = [s for s in items if s.get("payment_intent") == params["payment_intent"]]
        after = params.get("starting_after")
        if after:
            ids = [s["id"] for s in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        limit = min(int(params.get("limit") or 10), self.PAGE_CAP)
        page = items[:limit]
        body = {
            "object": "list",
            "data": [self._public(s) for s in page],
            "has_more": len(items) > limit,
            "url": "/v1/checkout/sessions",
        }
        return 200, body, {}

    def _create_refund(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        intent = params.get("payment_intent")
        charge = self.state.charges.get(intent or "")
        if charge is None:
            return self._missing("payment_intent", intent or "")
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            return self._error(
                400,
                "charge_already_refunded",
                f"Charge {charge['id']} has already been refunded.",
                "invalid_request_error",
            )
        amount = int(params.get("amount") or remaining)
        if amount > remaining:
            return self._error(
                400,
                "amount_too_large",
                "Refund amount is greater than unrefunded amount on charge.",
                "invalid_request_error",
            )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        refund = {
            "id": stripe_id("re_3Q"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": stripe_id("txn_3Q"),
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "destination_details": {
                "card": {
                    "reference_status": "pending",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            "metadata": dict(params.get("metadata") or {}),
            "payment_intent": intent,
            "reason": None,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self.state.refunds[refund["id"]] = refund
        return 200, refund, {}

    @staticmethod
    def _error(status: int, code: str, message: str, error_type: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        return status, {"error": {"code": code, "message": message, "type": error_type}}, {}

    def _missing(self, kind: str, object_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        return self._error(404, "resource_missing", f"No such {kind}: '{object_id}'", "invalid_request_error")
