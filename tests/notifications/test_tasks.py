"""Sending through a real SMTP server (aiosmtpd): delivery, dedupe, retries, crashes, redaction."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from app import db
from app.notifications import service
from app.notifications.backends import memory_outbox
from app.notifications.models import EmailOutbox
from app.notifications.rendering import Money
from tasks.email import send_outbox_email
from tests.conftest import free_port
from tests.factories import OrganizationFactory, UserFactory
from tests.notifications.conftest import MailContext, close_mail_connections

FRONTEND = "http://localhost:3000"
TOKEN_URL = f"{FRONTEND}/verify-email?token=secret-token-123"


def queue_verification(ctx: MailContext, recipient: str = "ana.customer@example.com", **kw: Any) -> uuid.UUID:
    outbox_id = service.queue_email(
        ctx.session,
        "email-verification",
        recipient,
        kw.get("user_id"),
        kw.get("organization_id"),
        {"verification_url": TOKEN_URL, "expires_in_hours": 24},
        kw.get("dedupe_key", f"email-verification:{uuid.uuid4()}"),
    )
    assert outbox_id is not None
    ctx.session.commit()
    return outbox_id


def load(session: Session, outbox_id: uuid.UUID) -> EmailOutbox:
    session.expire_all()
    row = session.get(EmailOutbox, outbox_id)
    assert row is not None
    return row


def run_sends(ctx: MailContext) -> list[str]:
    """Run every ``email.send`` published so far, as a worker would; returns the outcomes."""
    return [send_outbox_email(ctx.session, uuid.UUID(outbox_id)) for outbox_id in ctx.send_ids()]


def make_due(session: Session, outbox_id: uuid.UUID) -> None:
    """Let the backoff pass (the test transaction's ``now()`` does not move)."""
    session.execute(
        update(EmailOutbox).where(EmailOutbox.id == outbox_id).values(next_attempt_at=text("now()")),
        execution_options={"synchronize_session": False},
    )


# ---- delivery ----------------------------------------------------------------------------------------


def test_one_row_is_one_delivered_message_with_both_parts_and_the_right_headers(
    smtp_app: MailContext, smtp_server: Any, db_session: Session
) -> None:
    org = OrganizationFactory(settings__platform_name="Bakery Academy", settings__support_email="help@bakery.example")
    user = UserFactory(name="Ana Customer", email="ana.customer@example.com")
    outbox_id = queue_verification(smtp_app, user_id=user.id, organization_id=org.id)

    assert run_sends(smtp_app) == ["sent"]

    messages = smtp_server.handler.messages
    assert len(messages) == 1
    msg = messages[0]
    assert msg.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text_part = msg.get_body(preferencelist=("plain",)).get_content()
    html_part = msg.get_body(preferencelist=("html",)).get_content()
    assert TOKEN_URL in text_part and "Hi Ana Customer," in text_part
    assert f'href="{TOKEN_URL}"' in html_part and "Bakery Academy" in html_part
    assert msg["Subject"] == "Confirm your email address for Bakery Academy"
    assert msg["From"].addresses[0].display_name == "Bakery Academy"
    assert msg["From"].addresses[0].addr_spec == "no-reply@localhost"
    assert msg["Reply-To"] == "help@bakery.example"
    assert msg["To"] == "ana.customer@example.com"
    assert msg["Message-ID"] == f"<{outbox_id}@localhost>"
    assert msg["X-Codex-Template"] == "email-verification"
    assert msg["Date"]

    row = load(db_session, outbox_id)
    assert row.status == "sent" and row.attempts == 1 and row.claimed_at is None and row.sent_at is not None
    assert row.subject == "Confirm your email address for Bakery Academy"
    assert row.provider_message_id == f"<{outbox_id}@localhost>"
    assert "verification_url" not in row.context and row.context == {"expires_in_hours": 24}
    assert smtp_app.sent == []  # no follow-up message


def test_the_same_dedupe_key_queued_twice_is_one_message(
    smtp_app: MailContext, smtp_server: Any, db_session: Session
) -> None:
    queue_verification(smtp_app, dedupe_key="email-verification:tok-1")
    again = service.queue_email(
        db_session, "email-verification", "ana.customer@example.com", None, None,
        {"verification_url": TOKEN_URL, "expires_in_hours": 24}, "email-verification:tok-1",
    )  # fmt: skip
    db_session.commit()
    assert again is None
    assert run_sends(smtp_app) == ["sent"]
    assert len(smtp_server.handler.messages) == 1


def test_a_duplicate_task_delivery_sends_once(smtp_app: MailContext, smtp_server: Any, db_session: Session) -> None:
    outbox_id = queue_verification(smtp_app)
    assert send_outbox_email(db_session, outbox_id) == "sent"
    assert send_outbox_email(db_session, outbox_id) == "skipped"
    assert len(smtp_server.handler.messages) == 1


def test_branding_dates_and_money_reach_the_customer(
    smtp_app: MailContext, smtp_server: Any, db_session: Session
) -> None:
    from datetime import UTC, datetime

    org = OrganizationFactory(slug="bakery", settings__timezone="Europe/Paris", settings__platform_name="Bakery")
    customer = UserFactory(name="Grace")
    purchase_id = uuid.uuid4()
    service.queue_email(
        db_session, "purchase-receipt", customer.email, customer.id, org.id,
        {
            "content_title": "Sourdough <101>", "content_url": service.content_url("bakery", "sourdough"),
            "amount": Money(1999, "usd"), "purchase_id": str(purchase_id),
            "purchased_at": datetime(2025, 3, 2, 13, 5, tzinfo=UTC), "library_url": service.library_url(),
        },
        f"purchase-receipt:{purchase_id}",
    )  # fmt: skip
    db_session.commit()
    assert run_sends(smtp_app) == ["sent"]
    msg = smtp_server.handler.messages[0]
    text_part = msg.get_body(preferencelist=("plain",)).get_content()
    html_part = msg.get_body(preferencelist=("html",)).get_content()
    assert "March 2, 2025 14:05 (Europe/Paris)" in text_part and "$19.99" in text_part
    assert "Sourdough &lt;101&gt;" in html_part and "<101>" not in html_part
    assert msg["Subject"] == "Your receipt for Sourdough <101>"


# ---- failures ----------------------------------------------------------------------------------------


def test_smtp_down_retries_with_growing_delays_then_dead_and_nothing_is_lost(
    make_mail_app: Callable[..., MailContext], db_session: Session
) -> None:
    ctx = make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port())  # nobody listens
    outbox_id = queue_verification(ctx)
    ctx.send_ids()
    delays = []
    for attempt in range(1, 5):
        assert send_outbox_email(db_session, outbox_id) == "failed"
        row = load(db_session, outbox_id)
        assert (row.status, row.attempts, row.claimed_at) == ("failed", attempt, None)
        assert row.last_error and row.last_error.startswith("ConnectionRefusedError")
        waited = db_session.scalar(
            select(EmailOutbox.next_attempt_at - text("now()")).where(EmailOutbox.id == outbox_id)
        )
        assert waited is not None
        [(name, args, countdown)] = ctx.sent
        ctx.sent.clear()
        assert (name, args) == ("email.send", (str(outbox_id),))
        assert countdown == waited.total_seconds()
        delays.append(countdown)
        # Not due yet: an early duplicate wake-up does nothing.
        assert send_outbox_email(db_session, outbox_id) == "skipped"
        make_due(db_session, outbox_id)
    assert delays == [30, 60, 120, 240]

    assert send_outbox_email(db_session, outbox_id) == "dead"  # EMAIL_MAX_ATTEMPTS = 5
    row = load(db_session, outbox_id)
    assert (row.status, row.attempts, row.claimed_at) == ("dead", 5, None)
    assert row.last_error and "ConnectionRefusedError" in row.last_error
    assert "verification_url" not in row.context  # the secret link goes with a final state
    assert ctx.sent == []  # no further retry
    assert service.due_outbox_ids(db_session) == []


def test_a_server_that_comes_back_gets_the_message(
    make_mail_app: Callable[..., MailContext], smtp_server: Any, db_session: Session
) -> None:
    ctx = make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER=smtp_server.hostname, MAIL_PORT=smtp_server.port)
    smtp_server.handler.fail_with = "451 4.3.0 try again later"
    outbox_id = queue_verification(ctx)
    assert run_sends(ctx) == ["failed"]
    row = load(db_session, outbox_id)
    assert row.status == "failed" and row.last_error and "451" in row.last_error
    smtp_server.handler.fail_with = None
    make_due(db_session, outbox_id)
    assert run_sends(ctx) == ["sent"]  # the retry message published with the failure
    assert len(smtp_server.handler.messages) == 1
    assert load(db_session, outbox_id).attempts == 2


def test_a_5xx_refusal_is_permanent(smtp_app: MailContext, smtp_server: Any, db_session: Session) -> None:
    smtp_server.handler.fail_with = "550 5.1.1 <ana.customer@example.com>: mailbox unavailable"
    outbox_id = queue_verification(smtp_app)
    assert run_sends(smtp_app) == ["dead"]
    row = load(db_session, outbox_id)
    assert row.status == "dead" and row.attempts == 1
    assert row.last_error and row.last_error.startswith("SMTPDataError") and "550" in row.last_error
    assert "ana.customer@example.com" not in row.last_error  # scrubbed like a log line
    assert smtp_app.sent == []


def test_a_render_error_is_permanent(smtp_app: MailContext, smtp_server: Any, db_session: Session) -> None:
    outbox_id = queue_verification(smtp_app)
    # A row whose context no longer fits its template (e.g. written by an older release).
    db_session.execute(
        update(EmailOutbox).where(EmailOutbox.id == outbox_id).values(context={"expires_in_hours": 24}),
        execution_options={"synchronize_session": False},
    )
    assert run_sends(smtp_app) == ["dead"]
    row = load(db_session, outbox_id)
    assert row.status == "dead" and row.last_error and row.last_error.startswith("UndefinedError")
    assert smtp_server.handler.messages == []


# ---- crashes and lost wake-ups -----------------------------------------------------------------------


def test_a_worker_killed_after_claiming_is_resent_exactly_once_by_the_sweeper(
    smtp_app: MailContext, smtp_server: Any, db_session: Session
) -> None:
    outbox_id = queue_verification(smtp_app)
    smtp_app.send_ids()  # the wake-up was consumed by the worker that died
    # The dead worker's claim: committed, attempt counted, lease (5 min) expired.
    db_session.execute(
        update(EmailOutbox)
        .where(EmailOutbox.id == outbox_id)
        .values(
            attempts=1,
            claimed_at=text("now() - interval '6 minutes'"),
            created_at=text("now() - interval '10 minutes'"),
            next_attempt_at=text("now() - interval '10 minutes'"),
        ),
        execution_options={"synchronize_session": False},
    )
    db_session.commit()

    assert service.sweep_outbox(db_session) == 1
    db_session.commit()
    assert run_sends(smtp_app) == ["sent"]
    # A second sweep (and a stray duplicate) change nothing.
    assert service.sweep_outbox(db_session) == 0
    assert send_outbox_email(db_session, outbox_id) == "skipped"
    assert len(smtp_server.handler.messages) == 1
    row = load(db_session, outbox_id)
    assert row.status == "sent" and row.attempts == 2


def test_a_row_that_keeps_killing_its_worker_ends_dead_instead_of_looping(
    smtp_app: MailContext, smtp_server: Any, db_session: Session
) -> None:
    outbox_id = queue_verification(smtp_app)
    smtp_app.send_ids()
    # Five claims, each by a worker that died before recording anything (hard time limit, OOM...).
    db_session.execute(
        update(EmailOutbox)
        .where(EmailOutbox.id == outbox_id)
        .values(attempts=5, claimed_at=text("now() - interval '6 minutes'")),
        execution_options={"synchronize_session": False},
    )
    assert send_outbox_email(db_session, outbox_id) == "dead"
    row = load(db_session, outbox_id)
    assert (row.status, row.attempts) == ("dead", 6)
    assert row.last_error == "gave up after 5 attempts without an outcome"
    assert "verification_url" not in row.context
    assert smtp_server.handler.messages == []


def test_a_lost_wake_up_is_swept_after_a_minute(smtp_app: MailContext, smtp_server: Any, db_session: Session) -> None:
    outbox_id = queue_verification(smtp_app)
    smtp_app.send_ids()  # e.g. Redis was flushed
    assert service.sweep_outbox(db_session) == 0  # too young: the normal wake-up may still come
    db_session.execute(
        update(EmailOutbox)
        .where(EmailOutbox.id == outbox_id)
        .values(
            created_at=text("now() - interval '61 seconds'"),
            next_attempt_at=text("now() - interval '61 seconds'"),
        ),
        execution_options={"synchronize_session": False},
    )
    assert service.sweep_outbox(db_session) == 1
    db_session.commit()
    assert run_sends(smtp_app) == ["sent"]
    assert len(smtp_server.handler.messages) == 1


# ---- logs ----------------------------------------------------------------------------------------------


def test_recipients_never_appear_unredacted_in_logs(
    make_mail_app: Callable[..., MailContext], smtp_server: Any, db_session: Session, capture_logs: Any
) -> None:
    ok = make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER=smtp_server.hostname, MAIL_PORT=smtp_server.port)
    down = make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), EMAIL_MAX_ATTEMPTS=2)
    with capture_logs() as logs:
        with ok.app.app_context():
            sent_id = queue_verification(ok, recipient="ana.customer@example.com")
            assert run_sends(ok) == ["sent"]
        with down.app.app_context():
            failing_id = queue_verification(down, recipient="bob.buyer@example.com")
            assert run_sends(down) == ["failed"]
            make_due(db_session, failing_id)
            assert run_sends(down) == ["dead"]
    output = logs.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    events = {line["event"]: line for line in lines}
    assert events["email.sent"]["recipient"] == "a***@example.com"
    assert events["email.sent"]["outbox_id"] == str(sent_id)
    assert events["email.retry"]["recipient"] == "b***@example.com"
    assert events["email.dead"]["recipient"] == "b***@example.com" and events["email.dead"]["level"] == "error"
    for secret in ("ana.customer@example.com", "bob.buyer@example.com", "secret-token-123"):
        assert secret not in output


def test_file_backend_writes_an_eml_and_logs_a_redacted_summary(
    make_mail_app: Callable[..., MailContext], db_session: Session, tmp_path: Path, capture_logs: Any
) -> None:
    ctx = make_mail_app(MAIL_BACKEND="file", MAIL_OUTBOX_DIR=str(tmp_path / "mail"))
    with capture_logs() as logs:
        outbox_id = queue_verification(ctx)
        assert run_sends(ctx) == ["sent"]
    [eml] = list((tmp_path / "mail").iterdir())
    assert eml.name.endswith(f"-{outbox_id}.eml")
    assert len(eml.name.split("-", 1)[0]) == len("20250302T130500Z")
    content = eml.read_bytes()
    assert b"ana.customer@example.com" in content and b"X-Codex-Template: email-verification" in content
    [line] = [json.loads(x) for x in logs.getvalue().splitlines() if '"email.sent"' in x]
    assert line["recipient"] == "a***@example.com" and line["backend"] == "file" and line["file"] == str(eml)
    assert "ana.customer@example.com" not in logs.getvalue()


# ---- end to end with a real worker -------------------------------------------------------------------


def wait_for_status(flask_app: Flask, outbox_id: uuid.UUID, status: str, timeout: float = 20) -> EmailOutbox:
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        with flask_app.app_context():
            row = db.session.get(EmailOutbox, outbox_id)
            if row is not None and row.status == status:
                return row
        time.sleep(0.05)
    raise AssertionError(f"row is {row.status if row else None}, expected {status}")


def test_end_to_end_through_a_real_worker(committed_db: Flask, celery_worker: Any) -> None:
    memory_outbox(committed_db).clear()
    with committed_db.app_context():
        outbox_id = service.queue_email(
            db.session, "welcome", "new.user@example.com", None, None,
            {"login_url": f"{FRONTEND}/login"}, f"welcome:{uuid.uuid4()}",
        )  # fmt: skip
        db.session.commit()
    assert outbox_id is not None
    row = wait_for_status(committed_db, outbox_id, "sent")
    assert row.attempts == 1 and row.provider_message_id == f"<{outbox_id}@localhost>"
    [msg] = memory_outbox(committed_db)
    assert msg["To"] == "new.user@example.com" and msg["X-Codex-Template"] == "welcome"


def test_end_to_end_real_worker_and_real_smtp(committed_db: Flask, app_factory: Any, smtp_server: Any) -> None:
    from celery.contrib.testing.worker import start_worker

    import tasks.worker  # noqa: F401 - registers the task modules

    smtp_flask = app_factory(MAIL_BACKEND="smtp", MAIL_SERVER=smtp_server.hostname, MAIL_PORT=smtp_server.port)
    with start_worker(
        smtp_flask.extensions["celery"], pool="threads", concurrency=2, perform_ping_check=False,
        queues=["email", "default"], shutdown_timeout=10, loglevel="WARNING",
    ):  # fmt: skip
        with smtp_flask.app_context():
            ids = [
                service.queue_email(
                    db.session,
                    "welcome",
                    f"user{i}@example.com",
                    None,
                    None,
                    {"login_url": f"{FRONTEND}/login"},
                    f"welcome:e2e:{i}",
                )
                for i in range(5)
            ]
            db.session.commit()
        for outbox_id in ids:
            assert outbox_id is not None
            wait_for_status(smtp_flask, outbox_id, "sent")
    close_mail_connections(smtp_flask)
    assert sorted(m["To"] for m in smtp_server.handler.messages) == [f"user{i}@example.com" for i in range(5)]
