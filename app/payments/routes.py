"""The local provider's test checkout page (api.md §9 "Local payment provider").

Answers only when ``PAYMENT_PROVIDER`` resolves to ``local`` (404 otherwise; production refuses
``local`` at start-up). The unguessable session id in the path is the credential; the buttons
are same-origin form posts. Pay produces a correctly signed ``checkout.session.completed`` that
goes through the same ingest function as a real webhook. The stored session and the page's
labels come from the domain's ``LocalStore`` (the adapter reads none of our tables).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, make_response, redirect, render_template
from werkzeug.wrappers import Response as BaseResponse

from app import db, errors
from app.payments import get_provider
from app.payments.local_provider import LocalProvider, StoredSession, local_store

bp = Blueprint("local_payments", __name__, url_prefix="/payments/local")

_LOCAL_SESSION = re.compile(r"^cs_local_[0-9a-f]{32}$")


def page_csp() -> str:
    config = current_app.config
    targets = " ".join(dict.fromkeys([*config["CORS_ORIGINS"], config["FRONTEND_URL"]]))
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        f"form-action 'self' {targets}; frame-ancestors 'none'; base-uri 'none'"
    )


def _provider() -> LocalProvider:
    provider = get_provider()
    if not isinstance(provider, LocalProvider):
        raise errors.NotFound()
    return provider


@bp.before_request
def _local_only() -> None:
    _provider()


@bp.after_request
def _headers(response: Response) -> Response:
    if response.mimetype == "text/html" or 300 <= response.status_code < 400:
        # The page's own policy: inline styles, forms to this origin, redirects to the web app.
        response.headers["Content-Security-Policy"] = page_csp()
        response.headers["Cache-Control"] = "no-store"
    return response


def _session(provider: LocalProvider, session_id: str) -> StoredSession:
    if not _LOCAL_SESSION.match(session_id):
        raise errors.NotFound()
    stored = provider.stored_session(session_id, reread=True)
    if stored is None:
        raise errors.NotFound()
    return stored


@bp.get("/checkout/<session_id>")
def checkout_page(session_id: str) -> Response:
    stored = _session(_provider(), session_id)
    if stored.status != "open" or stored.expires_at <= datetime.now(UTC):
        raise errors.NotFound()
    labels = local_store().page_labels(stored)
    html = render_template(
        "payments/checkout.html",
        title=labels.title,
        price=labels.price,
        session_id=stored.id,
        expires_at=stored.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
    )
    response = make_response(html)
    response.mimetype = "text/html"
    return response


@bp.post("/checkout/<session_id>/pay")
def pay(session_id: str) -> BaseResponse:
    provider = _provider()
    if not _LOCAL_SESSION.match(session_id):
        raise errors.NotFound()
    target = provider.pay(session_id)  # locks the stored session: one Pay at a time per session
    db.session.commit()
    return redirect(target, code=303)


@bp.post("/checkout/<session_id>/cancel")
def cancel(session_id: str) -> BaseResponse:
    stored = _session(_provider(), session_id)
    return redirect(stored.cancel_url, code=303)
