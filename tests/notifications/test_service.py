"""The outbox service: queueing in the caller's transaction, claims, sweeps, the org email list."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import marshmallow as ma
import pytest
from flask import Flask
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from app import db
from app.notifications import service
from app.notifications.models import EmailOutbox
from app.notifications.rendering import Money, TemplateContextError
from app.notifications.schemas import EmailListArgsSchema, OutboxEmailSchema
from tests.factories import OrganizationFactory, OutboxFactory, UserFactory
from tests.notifications.conftest import MailContext

FRONTEND = "http://localhost:3000"


def verification(session: Session, key: str = "email-verification:t1", **overrides: Any) -> uuid.UUID | None:
    args: dict[str, Any] = {
        "template": "email-verification",
        "recipient": "ana@example.com",
        "user_id": None,
        "organization_id": None,
        "context": {"verification_url": f"{FRONTEND}/verify-email?token=secret-token", "expires_in_hours": 24},
        "dedupe_key": key,
    }
    args.update(overrides)
    return service.queue_email(session, **args)


def outbox_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(EmailOutbox)) or 0


# ---- queue_email -----------------------------------------------------------------------------------


def test_queue_inserts_in_the_callers_transaction_and_wakes_the_sender_after_commit(
    mail_app: MailContext, db_session: Session
) -> None:
    user = UserFactory()
    outbox_id = verification(db_session, user_id=user.id)
    assert outbox_id is not None
    assert mail_app.sent == []  # nothing is published before the commit
    db_session.commit()
    assert mail_app.sent == [("email.send", (str(outbox_id),), None)]
    row = db_session.get(EmailOutbox, outbox_id)
    assert row is not None
    assert (row.status, row.attempts, row.template) == ("queued", 0, "email-verification")
    assert row.recipient == "ana@example.com"
    assert row.user_id == user.id and row.claimed_at is None
    assert row.context == {"verification_url": f"{FRONTEND}/verify-email?token=secret-token", "expires_in_hours": 24}


def test_the_same_dedupe_key_twice_is_one_email(mail_app: MailContext, db_session: Session) -> None:
    first = verification(db_session)
    second = verification(db_session, recipient="other@example.com")
    db_session.commit()
    third = verification(db_session)
    db_session.commit()
    assert first is not None and second is None and third is None
    assert outbox_count(db_session) == 1
    assert mail_app.send_ids() == [str(first)]


def test_rollback_of_the_business_transaction_leaves_no_row_and_no_message(
    mail_app: MailContext, db_session: Session
) -> None:
    verification(db_session)
    db_session.rollback()
    db_session.commit()  # a later commit must not resurrect the dropped message
    assert outbox_count(db_session) == 0
    assert mail_app.sent == []


def test_rollback_with_real_commits_leaves_no_row(committed_db: Flask) -> None:
    sent: list[Any] = []
    original = committed_db.extensions["task_sender"]
    committed_db.extensions["task_sender"] = lambda *message: sent.append(message)
    try:
        with committed_db.app_context():
            session = db.session
            user = UserFactory.build()
            session.add(user)
            verification(session, user_id=user.id)
            session.flush()
            session.rollback()
            assert session.scalar(select(func.count()).select_from(EmailOutbox)) == 0
            # And the committed case, for contrast: one row, one message.
            user = UserFactory.build()
            session.add(user)
            outbox_id = verification(session, user_id=user.id)
            session.commit()
            assert session.scalar(select(func.count()).select_from(EmailOutbox)) == 1
    finally:
        committed_db.extensions["task_sender"] = original
    assert sent == [("email.send", (str(outbox_id),), None)]


def test_a_missing_variable_fails_at_queue_time_and_inserts_nothing(mail_app: MailContext, db_session: Session) -> None:
    with pytest.raises(TemplateContextError, match="expires_in_hours"):
        verification(db_session, context={"verification_url": f"{FRONTEND}/verify-email?token=t"})
    with pytest.raises(ValueError, match="unknown email template"):
        verification(db_session, template="newsletter")
    assert outbox_count(db_session) == 0
    db_session.commit()
    assert mail_app.sent == []


@pytest.mark.parametrize(
    "recipient", ["", "Ana <ana@example.com>", "ana@example.com\r\nBcc: x@example.com", "no-at-sign", "a b@example.com"]
)
def test_recipient_must_be_a_bare_address(mail_app: MailContext, db_session: Session, recipient: str) -> None:
    with pytest.raises(TemplateContextError, match="recipient"):
        verification(db_session, recipient=recipient)


def test_dedupe_key_is_required(mail_app: MailContext, db_session: Session) -> None:
    with pytest.raises(TemplateContextError, match="dedupe_key"):
        verification(db_session, key="")
    with pytest.raises(TemplateContextError, match="dedupe_key"):
        verification(db_session, key="k" * 201)


def _verification_email(key: str, recipient: str = "ana@example.com", **context: Any) -> service.QueuedEmail:
    values = {"verification_url": f"{FRONTEND}/verify-email?token=t", "expires_in_hours": 24, **context}
    return service.QueuedEmail("email-verification", recipient, None, None, values, key)


def test_queue_emails_inserts_several_in_one_statement(mail_app: MailContext, db_session: Session) -> None:
    existing = verification(db_session, key="batch:b")
    statements: list[str] = []
    from sqlalchemy import event

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = db_session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        ids = service.queue_emails(
            db_session, [_verification_email("batch:a"), _verification_email("batch:b"), _verification_email("batch:c")]
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert ids[0] is not None and ids[1] is None and ids[2] is not None  # batch:b was queued before
    db_session.commit()
    assert mail_app.send_ids() == [str(existing), str(ids[0]), str(ids[2])]
    rows = {row.dedupe_key: row for row in db_session.scalars(select(EmailOutbox))}
    assert rows["batch:a"].id == ids[0] and rows["batch:c"].id == ids[2]
    assert rows["batch:a"].context == {"verification_url": f"{FRONTEND}/verify-email?token=t", "expires_in_hours": 24}


def test_queue_emails_checks_every_email_before_inserting_any(mail_app: MailContext, db_session: Session) -> None:
    with pytest.raises(TemplateContextError, match="recipient"):
        service.queue_emails(db_session, [_verification_email("ok:1"), _verification_email("bad:2", recipient="x")])
    assert outbox_count(db_session) == 0
    assert service.queue_emails(db_session, []) == []


def test_money_and_dates_are_stored_unformatted(mail_app: MailContext, db_session: Session) -> None:
    org = OrganizationFactory()
    customer = UserFactory()
    outbox_id = service.queue_email(
        db_session,
        "new-sale",
        "owner@example.com",
        customer.id,
        org.id,
        {
            "content_title": "Bread",
            "amount": Money(1999, "usd"),
            "customer_name": customer.name,
            "dashboard_url": service.dashboard_url(org.id),
        },
        f"new-sale:{uuid.uuid4()}",
    )
    row = db_session.get(EmailOutbox, outbox_id)
    assert row is not None and row.organization_id == org.id
    assert row.context["amount"] == {"cents": 1999, "currency": "usd"}


# ---- links -----------------------------------------------------------------------------------------


def test_frontend_links(mail_app: MailContext) -> None:
    org_id, media_id = uuid.uuid4(), uuid.uuid4()
    assert service.verify_email_url("a b+c") == f"{FRONTEND}/verify-email?token=a+b%2Bc"
    assert service.reset_password_url("tok") == f"{FRONTEND}/reset-password?token=tok"
    assert service.login_url() == f"{FRONTEND}/login"
    assert service.library_url() == f"{FRONTEND}/library"
    assert service.content_url("bakery", "sourdough-101") == f"{FRONTEND}/bakery/content/sourdough-101"
    assert service.media_url(org_id, media_id) == f"{FRONTEND}/studio/{org_id}/media/{media_id}"
    assert service.dashboard_url(org_id) == f"{FRONTEND}/studio/{org_id}/dashboard"
    assert service.frontend_url() == FRONTEND


# ---- claims ----------------------------------------------------------------------------------------


def test_claim_counts_the_attempt_and_excludes_a_second_worker(mail_app: MailContext, db_session: Session) -> None:
    row = OutboxFactory()
    claimed = service.claim_email(db_session, row.id)
    assert claimed is not None and claimed.attempts == 1 and claimed.claimed_at is not None
    assert service.claim_email(db_session, row.id) is None  # live claim (< 5 minutes)
    set_row(db_session, row.id, claimed_at=text("now() - interval '6 minutes'"))
    again = service.claim_email(db_session, row.id)
    assert again is not None and again.attempts == 2  # the first worker is presumed dead


def test_claim_skips_rows_that_are_not_due_or_final(mail_app: MailContext, db_session: Session) -> None:
    not_due = OutboxFactory(status="failed", next_attempt_at=datetime.now(UTC) + timedelta(minutes=5))
    sent = OutboxFactory(status="sent")
    dead = OutboxFactory(status="dead")
    for row in (not_due, sent, dead):
        assert service.claim_email(db_session, row.id) is None
    assert service.claim_email(db_session, uuid.uuid4()) is None


def test_backoff() -> None:
    assert [service.backoff_seconds(n) for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


# ---- sweeper ---------------------------------------------------------------------------------------


def set_row(session: Session, outbox_id: uuid.UUID, **values: Any) -> None:
    session.execute(
        update(EmailOutbox).where(EmailOutbox.id == outbox_id).values(**values),
        execution_options={"synchronize_session": False},
    )


def test_sweeper_finds_exactly_the_rows_whose_wake_up_was_lost(mail_app: MailContext, db_session: Session) -> None:
    old = text("now() - interval '10 minutes'")
    rows = {name: OutboxFactory() for name in (
        "queued_old", "queued_fresh", "queued_live_claim", "queued_dead_claim",
        "failed_due", "failed_later", "failed_live_claim", "sent", "dead",
    )}  # fmt: skip
    for row in rows.values():
        set_row(db_session, row.id, created_at=old, next_attempt_at=old)
    set_row(
        db_session,
        rows["queued_fresh"].id,
        created_at=text("now() - interval '30 seconds'"),
        next_attempt_at=text("now() - interval '30 seconds'"),
    )
    set_row(db_session, rows["queued_live_claim"].id, claimed_at=text("now() - interval '1 minute'"), attempts=1)
    set_row(db_session, rows["queued_dead_claim"].id, claimed_at=text("now() - interval '6 minutes'"), attempts=1)
    set_row(db_session, rows["failed_due"].id, status="failed", attempts=1)
    set_row(
        db_session,
        rows["failed_later"].id,
        status="failed",
        attempts=1,
        next_attempt_at=text("now() + interval '1 minute'"),
    )
    set_row(
        db_session,
        rows["failed_live_claim"].id,
        status="failed",
        attempts=2,
        claimed_at=text("now() - interval '1 minute'"),
    )
    set_row(db_session, rows["sent"].id, status="sent", attempts=1)
    set_row(db_session, rows["dead"].id, status="dead", attempts=5)

    count = service.sweep_outbox(db_session)
    db_session.commit()
    expected = {"queued_old", "queued_dead_claim", "failed_due"}
    assert count == len(expected)
    assert set(mail_app.send_ids()) == {str(rows[name].id) for name in expected}


def test_sweeper_batch_is_bounded(mail_app: MailContext, db_session: Session) -> None:
    old = text("now() - interval '10 minutes'")
    for _ in range(5):
        row = OutboxFactory()
        set_row(db_session, row.id, created_at=old, next_attempt_at=old)
    assert len(service.due_outbox_ids(db_session, limit=3)) == 3


# ---- the org email list ----------------------------------------------------------------------------


def test_list_org_emails_newest_first_with_filters_and_paging(mail_app: MailContext, db_session: Session) -> None:
    org, other = OrganizationFactory(), OrganizationFactory()
    rows = []
    for minutes, template, status in [(30, "welcome", "sent"), (20, "new-sale", "queued"), (10, "welcome", "dead")]:
        row = OutboxFactory(organization_id=org.id, template=template, status=status)
        set_row(db_session, row.id, created_at=text(f"now() - interval '{minutes} minutes'"))
        rows.append(row)
    OutboxFactory(organization_id=other.id)
    db_session.expire_all()

    page = service.list_org_emails(db_session, org.id)
    assert [item.id for item in page["items"]] == [rows[2].id, rows[1].id, rows[0].id]
    assert (page["total"], page["page"], page["per_page"], page["pages"]) == (3, 1, 20, 1)

    assert [i.id for i in service.list_org_emails(db_session, org.id, template="welcome")["items"]] == [
        rows[2].id, rows[0].id,
    ]  # fmt: skip
    assert [i.id for i in service.list_org_emails(db_session, org.id, status="queued")["items"]] == [rows[1].id]
    second = service.list_org_emails(db_session, org.id, page=2, per_page=2)
    assert [i.id for i in second["items"]] == [rows[0].id] and second["pages"] == 2


def test_outbox_email_schema_dump(mail_app: MailContext, db_session: Session) -> None:
    user = UserFactory()
    row = OutboxFactory(user_id=user.id, context={"login_url": f"{FRONTEND}/login"})
    db_session.refresh(row)
    dumped = OutboxEmailSchema().dump(row)
    assert set(dumped) == {
        "id", "template", "recipient", "user_id", "status", "attempts", "last_error", "subject",
        "created_at", "sent_at",
    }  # fmt: skip
    assert dumped["id"] == str(row.id) and dumped["user_id"] == str(user.id)
    assert dumped["created_at"].endswith("Z") and dumped["sent_at"] is None
    assert "context" not in dumped


def test_email_list_args_schema() -> None:
    schema = EmailListArgsSchema()
    assert schema.load({}) == {"page": 1, "per_page": 20, "status": None, "template": None}
    assert schema.load({"status": "dead", "template": "welcome", "page": "2"})["page"] == 2
    for bad in ({"status": "lost"}, {"template": "newsletter"}, {"per_page": "101"}, {"bogus": "1"}):
        with pytest.raises(ma.ValidationError):
            schema.load(bad)
