"""Stripe event operator commands; ``app.cli`` adds them to the ``codex`` CLI group."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app import db, errors
from app.commerce import processing


@click.command("stripe-replay")
@click.argument("event_id")
@with_appcontext
def stripe_replay(event_id: str) -> None:
    """Reset a stored Stripe event to received and enqueue it (like the admin replay endpoint)."""
    session = db.session
    try:
        event = processing.replay_event(session, event_id)
        session.commit()
    except errors.AppError as exc:
        session.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(f"{event.id} ({event.type}) queued for processing")
