"""Mail backends: the MIME message, error classification, SMTP connection handling, selection."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from app.notifications.backends import (
    SMTP_TIMEOUT_SECONDS,
    FileBackend,
    MemoryBackend,
    OutgoingEmail,
    PermanentSendError,
    SmtpBackend,
    TransientSendError,
    classify,
    describe_error,
    get_backend,
    memory_outbox,
    sender_domain,
    sender_parts,
)
from tests.conftest import free_port
from tests.notifications.conftest import MailContext


def outgoing(n: int = 1, **overrides: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "outbox_id": f"00000000-0000-0000-0000-{n:012d}",
        "template": "welcome",
        "sender_name": "Bäckerei, Ltd",
        "sender_address": "no-reply@codex.example",
        "recipient": f"user{n}@example.com",
        "reply_to": "help@example.com",
        "subject": "Welcome to Bäckerei",
        "text": "Hello\n",
        "html": "<p>Hello</p>",
        "message_id": f"<00000000-0000-0000-0000-{n:012d}@codex.example>",
    }
    values.update(overrides)
    return OutgoingEmail(**values)


def test_mime_message_is_multipart_alternative_with_stable_headers() -> None:
    msg = outgoing().to_mime()
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Message-ID"] == "<00000000-0000-0000-0000-000000000001@codex.example>"
    assert msg["X-Codex-Template"] == "welcome"
    assert msg["From"].addresses[0].display_name == "Bäckerei, Ltd"  # quoted/encoded, not split
    assert msg["Reply-To"] == "help@example.com"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == "Welcome to Bäckerei"
    raw = outgoing().to_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only, as SMTP wants
    assert b"Bcc" not in raw and raw.isascii()  # non-ASCII only inside encoded words / base64


def test_mime_bodies_are_7bit_when_possible_and_base64_otherwise() -> None:
    plain = outgoing().to_bytes()
    assert plain.count(b"Content-Transfer-Encoding: 7bit") == 2
    long_line = outgoing(text="x" * 2000 + "\n", html="<p>Café</p>").to_bytes()
    assert long_line.count(b"Content-Transfer-Encoding: base64") == 2
    assert max(len(line) for line in long_line.split(b"\r\n")) <= 998
    parsed = outgoing(text="x" * 2000 + "\n", html="<p>Café</p>").to_mime()
    assert parsed.get_body(preferencelist=("html",)).get_content() == "<p>Café</p>"


def test_sender_parts() -> None:
    assert sender_parts("Codex <no-reply@localhost>") == ("Codex", "no-reply@localhost")
    assert sender_domain("no-reply@mail.codex.example") == "mail.codex.example"
    with pytest.raises(ValueError, match="MAIL_DEFAULT_SENDER"):
        sender_parts("Codex")


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), True),
        (smtplib.SMTPConnectError(421, b"busy"), True),
        (smtplib.SMTPDataError(451, b"try later"), True),
        (smtplib.SMTPDataError(554, b"rejected"), False),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no such user")}), False),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (450, b"greylisted")}), True),
        (smtplib.SMTPSenderRefused(553, b"sender not allowed", "no-reply@localhost"), True),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), True),
        (SoftTimeLimitExceeded(), True),
        (UnicodeEncodeError("ascii", "é", 0, 1, "nope"), False),
        (RuntimeError("unexpected"), True),
    ],
)
def test_error_classification(exc: BaseException, transient: bool) -> None:
    error = classify(exc)
    assert isinstance(error, TransientSendError if transient else PermanentSendError)
    assert str(error).startswith(type(exc).__name__)


def test_error_text_is_bounded_and_scrubbed() -> None:
    exc = smtplib.SMTPRecipientsRefused({"carol.secret@example.com": (550, b"user unknown " * 200)})
    text = describe_error(exc)
    assert len(text) <= 1000
    assert "carol.secret@example.com" not in text and "c***@example.com" in text
    assert "\n" not in describe_error(smtplib.SMTPDataError(550, b"line one\nline two"))
    assert describe_error(smtplib.SMTPServerDisconnected()) == "SMTPServerDisconnected"


def test_smtp_backend_keeps_one_connection_and_replaces_a_stale_one(
    make_mail_app: Callable[..., MailContext], smtp_server: Any
) -> None:
    ctx = make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER=smtp_server.hostname, MAIL_PORT=smtp_server.port)
    backend = get_backend()
    assert isinstance(backend, SmtpBackend)
    backend.send(outgoing(1))
    conn = backend._local.conn
    assert conn.host.timeout == SMTP_TIMEOUT_SECONDS
    backend.send(outgoing(2))
    assert backend._local.conn is conn  # reused
    conn.host.sock.shutdown(socket.SHUT_RDWR)  # the connection died while idle
    backend.send(outgoing(3))
    assert backend._local.conn is not conn
    assert [m["To"] for m in smtp_server.handler.messages] == [f"user{n}@example.com" for n in (1, 2, 3)]
    assert ctx.app.extensions["mail_backend"] is backend


def test_smtp_backend_reports_refusals_and_recovers(
    make_mail_app: Callable[..., MailContext], smtp_server: Any
) -> None:
    make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER=smtp_server.hostname, MAIL_PORT=smtp_server.port)
    backend = get_backend()
    smtp_server.handler.fail_with = "452 4.3.1 insufficient storage"
    with pytest.raises(TransientSendError, match="452"):
        backend.send(outgoing(1))
    smtp_server.handler.fail_with = "554 5.7.1 rejected"
    with pytest.raises(PermanentSendError, match="554"):
        backend.send(outgoing(1))
    smtp_server.handler.fail_with = None
    backend.send(outgoing(1))
    assert len(smtp_server.handler.messages) == 1


def test_smtp_backend_with_nobody_listening(make_mail_app: Callable[..., MailContext]) -> None:
    make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port())
    with pytest.raises(TransientSendError, match="ConnectionRefusedError"):
        get_backend().send(outgoing())


def test_smtp_backend_ignores_flask_mail_testing_suppression(
    make_mail_app: Callable[..., MailContext], smtp_server: Any
) -> None:
    ctx = make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER=smtp_server.hostname, MAIL_PORT=smtp_server.port)
    assert ctx.app.extensions["mail"].suppress is True  # TESTING turns flask-mail's switch on
    get_backend().send(outgoing())
    assert len(smtp_server.handler.messages) == 1  # MAIL_BACKEND decides, not TESTING


def test_backend_selection_follows_config(make_mail_app: Callable[..., MailContext], tmp_path: Any) -> None:
    file_ctx = make_mail_app(MAIL_BACKEND="file", MAIL_OUTBOX_DIR=str(tmp_path))
    assert isinstance(get_backend(file_ctx.app), FileBackend)
    delivery = get_backend(file_ctx.app).send(outgoing(7))
    assert (
        delivery.backend == "file"
        and delivery.location
        and delivery.location.endswith("-00000000-0000-0000-0000-000000000007.eml")
    )
    assert not list(tmp_path.glob("*.part"))
    memory_ctx = make_mail_app()
    backend = get_backend(memory_ctx.app)
    assert isinstance(backend, MemoryBackend)
    backend.send(outgoing(8))
    assert [m["To"] for m in memory_outbox(memory_ctx.app)] == ["user8@example.com"]
    assert get_backend(memory_ctx.app) is backend


def test_header_injection_is_refused_permanently(make_mail_app: Callable[..., MailContext], smtp_server: Any) -> None:
    with pytest.raises(ValueError, match="single-line"):
        outgoing(recipient="a@example.com\r\nBcc: victim@example.com").to_bytes()
    make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER=smtp_server.hostname, MAIL_PORT=smtp_server.port)
    with pytest.raises(PermanentSendError):
        get_backend().send(outgoing(reply_to="help@example.com\nBcc: victim@example.com"))
    assert smtp_server.handler.messages == []


def test_bodies_survive_smtp_unchanged(make_mail_app: Callable[..., MailContext], smtp_server: Any) -> None:
    make_mail_app(MAIL_BACKEND="smtp", MAIL_SERVER=smtp_server.hostname, MAIL_PORT=smtp_server.port)
    text = "first\n.\n..two dots\r\nlast line\n"
    html = "<p>Crème brûlée — 19,99 €</p>\n.\n"
    get_backend().send(outgoing(text=text, html=html, subject="Crème brûlée " + "é" * 150))
    [msg] = smtp_server.handler.messages
    assert msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n")
    assert msg.get_body(preferencelist=("html",)).get_content().replace("\r\n", "\n") == html
    assert msg["Subject"] == "Crème brûlée " + "é" * 150
    assert not msg.defects and not any(part.defects for part in msg.iter_parts())
