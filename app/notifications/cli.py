"""Email operator commands; ``app.cli`` adds them to the ``codex`` CLI group."""

from __future__ import annotations

import uuid
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from app import db
from app.notifications.models import TEMPLATES


@click.command("email-preview")
@click.argument("name", type=click.Choice([*TEMPLATES, "all"]))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the files (default: MAIL_OUTBOX_DIR/preview).",
)
@click.option("--org", "org_id", type=click.UUID, default=None, help="Brand with this organization's settings.")
@click.option("--eml/--no-eml", default=False, help="Also write the whole message as an .eml file.")
@with_appcontext
def email_preview(name: str, out_dir: Path | None, org_id: uuid.UUID | None, eml: bool) -> None:
    """Render a template (or all) with sample data: writes <name>.html and <name>.txt, prints the text part."""
    from app.notifications.service import preview_email

    target = out_dir or Path(current_app.config["MAIL_OUTBOX_DIR"]) / "preview"
    target.mkdir(parents=True, exist_ok=True)
    for template in TEMPLATES if name == "all" else (name,):
        email = preview_email(db.session, template, org_id)
        html_path, text_path = target / f"{template}.html", target / f"{template}.txt"
        html_path.write_text(email.html, encoding="utf-8")
        text_path.write_text(email.text, encoding="utf-8")
        if eml:
            (target / f"{template}.eml").write_bytes(email.to_bytes())
        click.echo(f"== {template}")
        click.echo(f"Subject: {email.subject}")
        click.echo(f"HTML:    {html_path}")
        click.echo(f"Text:    {text_path}")
        click.echo("")
        click.echo(email.text)
