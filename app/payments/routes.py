"""The local provider's test checkout page (api.md §9 "Local payment provider").

Answers only when ``PAYMENT_PROVIDER`` resolves to ``local`` (404 otherwise; production refuses
``local`` at start-up). The unguessable session id in the path is the credential; the buttons
are same-origin form posts. Pay produces a correctly signed ``checkout.session.completed`` that
goes through the same ingest function as a real webhook.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, make_response, redirect, render_template
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from app import db, errors
from app.commerce.models import CheckoutSession
from app.content.models import Content
from app.notifications.rendering import format_money
from app.payments import get_provider
from app.payments.local_provider import LocalProvider

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


def _session(session_id: str, *, lock: bool = False) -> CheckoutSession:
    if not _LOCAL_SESSION.match(session_id):
        raise errors.NotFound()
    stmt = select(CheckoutSession).where(CheckoutSession.id == session_id, CheckoutSession.provider == "local")
    if lock:
        stmt = stmt.with_for_update()
    row = db.session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
    if row is None:
        raise errors.NotFound()
    return row


@bp.get("/checkout/<session_id>")
def checkout_page(session_id: str) -> Response:
    row = _session(session_id)
    if row.status != "open" or row.expires_at <= datetime.now(UTC):
        raise errors.NotFound()
    content = db.session.get(Content, row.content_id)
    html = render_template(
        "payments/checkout.html",
        title=content.title if content is not None else "",
        price=format_money(row.amount_cents, row.currency),
        session_id=row.id,
        expires_at=row.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
    )
    response = make_response(html)
    response.mimetype = "text/html"
    return response


@bp.post("/checkout/<session_id>/pay")
def pay(session_id: str) -> BaseResponse:
    provider = _provider()
    row = _session(session_id, lock=True)  # one Pay at a time per session
    target = provider.pay(row)
    db.session.commit()
    return redirect(target, code=303)


@bp.post("/checkout/<session_id>/cancel")
def cancel(session_id: str) -> BaseResponse:
    row = _session(session_id)
    return redirect(row.cancel_url, code=303)
