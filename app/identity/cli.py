"""Identity operator commands; ``app.cli`` adds them to the ``codex`` CLI group."""

from __future__ import annotations

import click
import marshmallow as ma
from flask.cli import with_appcontext

from app import db, errors
from app.identity import service
from app.identity.schemas import EmailField


def _email(value: str) -> str:
    try:
        email: str = EmailField().deserialize(value)
    except ma.ValidationError as exc:
        raise click.BadParameter("; ".join(exc.messages if isinstance(exc.messages, list) else [str(exc)])) from None
    return email


@click.command("create-owner")
@click.option("--email", required=True, help="The platform owner's email address.")
@click.option("--password", default=None, help="Password for a new account (prompted when omitted).")
@click.option("--name", default="Platform Owner", show_default=True, help="Display name for a new account.")
@with_appcontext
def create_owner(email: str, password: str | None, name: str) -> None:
    """Create the platform owner, or promote an existing user (idempotent).

    A new account is created verified with the given password. An existing account keeps its
    password; only one with a verified email is promoted (exit 1 otherwise), and promoting it
    revokes its sessions (they carry the old role).
    """
    address = _email(email)
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise click.BadParameter("must be 1..100 characters", param_hint="--name")
    session = db.session
    existing = service.get_user_by_email(session, address)
    if existing is not None and existing.role != "platform_owner" and not existing.email_verified:
        # Anyone can register any address; only a verified one proves the mailbox (security.md §1).
        raise click.ClickException(
            f"refusing to promote {address}: its email address is not verified; "
            "verify it first (or use another address), then run create-owner again"
        )
    if password is None and existing is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user, outcome = service.set_platform_owner(session, email=address, password=password, name=name)
        session.commit()
    except errors.AppError as exc:
        session.rollback()
        details = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.details.items())
        raise click.ClickException(f"{exc.message} {details}".strip()) from None
    if outcome == "created":
        click.echo(f"created platform owner {user.id}")
    elif outcome == "promoted":
        click.echo(f"promoted {user.id} to platform owner; its sessions were revoked")
    else:
        click.echo(f"{user.id} is already the platform owner; nothing changed")
    if outcome != "created" and password is not None:
        click.echo("the existing password was left unchanged")
