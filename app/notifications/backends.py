"""Mail backends chosen by ``MAIL_BACKEND``: ``smtp`` (flask-mail), ``file`` (.eml files), ``memory`` (tests).

A backend takes a finished MIME message and either accepts it or raises ``TransientSendError``
(try again later: connection problems, SMTP 4xx) or ``PermanentSendError`` (this message will
never go through: the server refused the recipient or the content with a 5xx). The sender code
(``app.notifications.service``) turns those into outbox states; business code never sees them.
"""

from __future__ import annotations

import base64
import os
import re
import smtplib
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import Header
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any, Protocol

import flask_mail
from celery.exceptions import SoftTimeLimitExceeded
from flask import Flask, current_app

from app.logging import scrub

SMTP_TIMEOUT_SECONDS = 30  # security.md §14
STALE_CONNECTION_SECONDS = 5
LAST_ERROR_MAX = 1000


class SendError(Exception):
    """A backend could not hand the message over; ``transient`` says whether to try again."""

    transient: bool = True

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class TransientSendError(SendError):
    transient = True


class PermanentSendError(SendError):
    transient = False


@dataclass(frozen=True)
class OutgoingEmail:
    """Everything a backend needs; ``message_id`` is stable across retries (``<{outbox id}@{domain}>``)."""

    outbox_id: str
    template: str
    sender_name: str
    sender_address: str
    recipient: str
    reply_to: str | None
    subject: str
    text: str
    html: str
    message_id: str

    def to_bytes(self) -> bytes:
        """The message as sent: multipart/alternative, text part first, then HTML (RFC 2046 order).

        Serialised directly rather than through ``email.generator``: the message always has this
        one shape, and the generic generator was the largest CPU cost of a send (it matters at
        hundreds of emails per second). ``to_mime`` parses the result back with the standard
        parser, which is how the tests check it.
        """
        boundary = f"=_codex_{uuid.uuid4().hex}"  # "=_" never occurs in base64 or in our 7bit parts
        headers = [
            ("From", formataddr((self.sender_name, self.sender_address), charset="utf-8")),
            ("To", _plain_header(self.recipient)),
            *([("Reply-To", _plain_header(self.reply_to))] if self.reply_to else []),
            ("Subject", _encoded_header(self.subject)),
            ("Date", formatdate(usegmt=True)),
            ("Message-ID", _plain_header(self.message_id)),
            ("X-Codex-Template", _plain_header(self.template)),
            # Transactional mail: auto-responders must not answer it (RFC 3834).
            ("Auto-Submitted", "auto-generated"),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
        ]
        head = "".join(f"{name}: {value.replace(chr(10), CRLF)}{CRLF}" for name, value in headers)
        message = (
            f"{head}{CRLF}"
            f"--{boundary}{CRLF}{_text_part(self.text, 'plain')}{CRLF}"
            f"--{boundary}{CRLF}{_text_part(self.html, 'html')}{CRLF}"
            f"--{boundary}--{CRLF}"
        )
        return message.encode("ascii")

    def to_mime(self) -> EmailMessage:
        """The message parsed back (memory backend, tests, previews): what a receiving server sees."""
        parsed: EmailMessage = message_from_bytes(self.to_bytes(), policy=default_policy)
        return parsed


CRLF = "\r\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
SMTP_LINE_MAX = 998


def _text_part(body: str, subtype: str) -> str:
    """A text/<subtype> part: 7bit when ASCII with short lines, else UTF-8 in base64 (76-char lines)."""
    lines = _LINE_BREAK.split(body)
    if body.isascii() and "\0" not in body and all(len(line) <= SMTP_LINE_MAX for line in lines):
        return f'Content-Type: text/{subtype}; charset="us-ascii"{CRLF}Content-Transfer-Encoding: 7bit{CRLF}{CRLF}' + (
            CRLF.join(lines)
        )
    encoded = base64.encodebytes(body.encode("utf-8")).decode("ascii").rstrip("\n").replace("\n", CRLF)
    return f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}Content-Transfer-Encoding: base64{CRLF}{CRLF}{encoded}'


def _plain_header(value: str) -> str:
    """An address or token header: ASCII on one line, or the message is refused (header injection)."""
    if not value.isascii() or "\r" in value or "\n" in value:
        raise ValueError("header values must be single-line ASCII")
    return value


def _encoded_header(value: str) -> str:
    """ASCII as is; anything else as RFC 2047 encoded words (folded lines, never raw CR/LF)."""
    value = " ".join(value.split())
    if value.isascii():
        return value
    return Header(value, "utf-8").encode()


@dataclass(frozen=True)
class Delivery:
    """What a backend reports back; ``location`` is the .eml path of the file backend."""

    backend: str
    location: str | None = None


class MailBackend(Protocol):
    name: str

    def send(self, email: OutgoingEmail) -> Delivery: ...

    def close_all(self) -> None: ...


def sender_parts(default_sender: str) -> tuple[str, str]:
    """``("Codex", "no-reply@localhost")`` from ``MAIL_DEFAULT_SENDER``; the name is replaced by branding."""
    name, address = parseaddr(default_sender)
    if not address or "@" not in address:
        raise ValueError("MAIL_DEFAULT_SENDER must contain an email address")
    return name, address


def sender_domain(default_sender: str) -> str:
    return sender_parts(default_sender)[1].rsplit("@", 1)[1]


def describe_error(exc: BaseException) -> str:
    """``Class: message`` with secrets and addresses scrubbed, at most 1000 characters (security.md §11)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return scrub(" ".join(text.split()))[:LAST_ERROR_MAX]


# ---- smtp ----------------------------------------------------------------------------------------


class _Connection(flask_mail.Connection):
    """flask-mail's connection with the 30 s timeout it lacks.

    ``MAIL_BACKEND`` decides whether mail goes out, so flask-mail's ``MAIL_SUPPRESS_SEND``
    (on whenever ``TESTING`` is) is not consulted: the memory backend is the test switch.
    """

    def __enter__(self) -> _Connection:
        self.host = self.configure_host()
        self.num_emails = 0
        return self

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        state = self.mail
        host: smtplib.SMTP
        if state.use_ssl:
            host = smtplib.SMTP_SSL(
                state.server, state.port, timeout=SMTP_TIMEOUT_SECONDS, context=ssl.create_default_context()
            )
        else:
            host = smtplib.SMTP(state.server, state.port, timeout=SMTP_TIMEOUT_SECONDS)
        try:
            if state.use_tls:
                host.starttls(context=ssl.create_default_context())
            if state.username and state.password:
                host.login(state.username, state.password)
        except BaseException:
            host.close()
            raise
        return host


class SmtpBackend:
    """SMTP through flask-mail's settings (``MAIL_SERVER``, ``MAIL_PORT``, TLS/SSL, credentials).

    Each worker thread keeps one open connection and reuses it for the next message (a new TCP +
    EHLO (+ STARTTLS + AUTH) per email would dominate the send time); a connection the server has
    dropped is replaced once before the error counts.
    """

    name = "smtp"

    def __init__(self, app: Flask) -> None:
        self.state = app.extensions["mail"]
        self._local = threading.local()
        self._open: set[_Connection] = set()  # every thread's connection, for close_all()
        self._open_lock = threading.Lock()

    def send(self, email: OutgoingEmail) -> Delivery:
        conn: _Connection | None = getattr(self._local, "conn", None)
        try:
            message = email.to_bytes()
            if conn is not None:
                started = time.monotonic()
                try:
                    self._send_on(conn, message, email)
                    return Delivery(self.name)
                except smtplib.SMTPServerDisconnected:
                    self.close()
                    # A kept connection the server closed while idle fails at once: one fresh try.
                    # One that timed out says the server is unwell: no second 30 s wait.
                    if time.monotonic() - started > STALE_CONNECTION_SECONDS:
                        raise
            conn = _Connection(self.state).__enter__()
            self._local.conn = conn
            with self._open_lock:
                self._open.add(conn)
            self._send_on(conn, message, email)
        except Exception as exc:
            self.close()
            raise classify(exc) from exc
        return Delivery(self.name)

    @staticmethod
    def _send_on(conn: _Connection, message: bytes, email: OutgoingEmail) -> None:
        assert conn.host is not None
        conn.host.sendmail(email.sender_address, [email.recipient], message)

    def close(self) -> None:
        """Drop this thread's connection without a QUIT (it may be the thing that hangs)."""
        conn: _Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            self._discard(conn)

    def close_all(self) -> None:
        """Close every thread's connection (shutdown, tests)."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        with self._open_lock:
            self._open.discard(conn)
        if conn.host is not None:
            conn.host.close()


def classify(exc: BaseException) -> SendError:
    """Transient: connection/network errors and SMTP 4xx. Permanent: 5xx refusing this recipient or message.

    A 5xx on ``MAIL FROM`` or ``AUTH`` is a problem with our own account or configuration, not with
    this message, so it stays transient: the row is retried (and ends ``dead`` only after
    ``EMAIL_MAX_ATTEMPTS``) instead of every email failing at once for good.
    """
    text = describe_error(exc)
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(500 <= code < 600 for code in codes):
            return PermanentSendError(text, cause=exc)
        return TransientSendError(text, cause=exc)
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPAuthenticationError):
        return TransientSendError(text, cause=exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        if 500 <= exc.smtp_code < 600:
            return PermanentSendError(text, cause=exc)
        return TransientSendError(text, cause=exc)
    if isinstance(exc, UnicodeError | ValueError | flask_mail.BadHeaderError):
        # An address or header that cannot be encoded will never go through.
        return PermanentSendError(text, cause=exc)
    # Connection refused/reset, timeouts, TLS failures, SMTPServerDisconnected, the task's soft
    # time limit, anything unexpected: try again later, bounded by EMAIL_MAX_ATTEMPTS.
    if isinstance(exc, OSError | smtplib.SMTPException | SoftTimeLimitExceeded):
        return TransientSendError(text, cause=exc)
    return TransientSendError(text, cause=exc)


# ---- file -----------------------------------------------------------------------------------------


class FileBackend:
    """Writes ``MAIL_OUTBOX_DIR/<yyyymmddTHHMMSSZ>-<outbox id>.eml`` (the embedded default)."""

    name = "file"

    def __init__(self, app: Flask) -> None:
        self.directory = Path(app.config["MAIL_OUTBOX_DIR"])

    def send(self, email: OutgoingEmail) -> Delivery:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = self.directory / f"{stamp}-{email.outbox_id}.eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Written aside then renamed, so a reader never sees half a message.
            partial = path.with_suffix(".eml.part")
            partial.write_bytes(email.to_bytes())
            os.replace(partial, path)
        except OSError as exc:
            raise TransientSendError(describe_error(exc), cause=exc) from exc
        return Delivery(self.name, str(path))

    def close_all(self) -> None:
        pass


# ---- memory ---------------------------------------------------------------------------------------


class MemoryBackend:
    """Keeps the messages in ``app.extensions["mail_memory"]`` (a list of ``EmailMessage``) for tests."""

    name = "memory"

    def __init__(self, app: Flask) -> None:
        self.app = app

    def send(self, email: OutgoingEmail) -> Delivery:
        # Looked up on every send: tests may replace or clear the list between sends.
        memory_outbox(self.app).append(email.to_mime())
        return Delivery(self.name)

    def close_all(self) -> None:
        pass


_BACKENDS: dict[str, Any] = {"smtp": SmtpBackend, "file": FileBackend, "memory": MemoryBackend}
_lock = threading.Lock()


def get_backend(app: Flask | None = None) -> MailBackend:
    """The app's backend for ``MAIL_BACKEND`` (one instance per app, created on first use)."""
    flask_app: Flask = app or current_app._get_current_object()  # type: ignore[attr-defined]
    name = flask_app.config["MAIL_BACKEND"]
    cached: MailBackend | None = flask_app.extensions.get("mail_backend")
    if cached is not None and cached.name == name:
        return cached
    with _lock:
        cached = flask_app.extensions.get("mail_backend")
        if cached is None or cached.name != name:
            try:
                factory = _BACKENDS[name]
            except KeyError:
                raise ValueError(f"unknown MAIL_BACKEND {name!r}") from None
            if cached is not None:
                cached.close_all()
            cached = factory(flask_app)
            flask_app.extensions["mail_backend"] = cached
    assert cached is not None
    return cached


def memory_outbox(app: Flask | None = None) -> list[EmailMessage]:
    """The memory backend's messages (tests)."""
    flask_app: Flask = app or current_app._get_current_object()  # type: ignore[attr-defined]
    messages: list[EmailMessage] = flask_app.extensions.setdefault("mail_memory", [])
    return messages
