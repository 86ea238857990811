"""``flask codex …`` commands for operators (``.flaskenv`` names the app).

The CLI's composition root: it holds the ``codex`` group and the app-wide commands, and mounts
the domains' commands at the bottom. Each domain's ``cli.py`` defines plain click commands and
never imports this module, so imports point down (a domain does not know the group it joins).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from app import db
from app.commerce.cli import stripe_replay
from app.dashboard.cli import rebuild_rollups
from app.identity.cli import create_owner
from app.notifications.cli import email_preview


@click.group("codex")
def codex_cli() -> None:
    """Codex operator commands."""


@codex_cli.command("create-db")
@with_appcontext
def create_db() -> None:
    """Create the database named in DATABASE_URL when it does not exist."""
    created = db.ensure_database(current_app.config["DATABASE_URL"])
    click.echo("database created" if created else "database exists")


@codex_cli.command("ping")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the worker.")
@with_appcontext
def ping(timeout: float) -> None:
    """Send a ping through the broker and wait until a worker has stamped it in Postgres."""
    from app.system.models import WorkerPing
    from app.system.service import create_ping

    session = db.session
    ping_row = create_ping(session)
    session.commit()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.expire_all()
        row = session.get(WorkerPing, ping_row.id)
        if row is not None and row.processed_at is not None:
            latency = (row.processed_at - row.created_at).total_seconds()
            click.echo(f"pong from {row.worker} after {latency:.3f}s")
            return
        time.sleep(0.2)
    raise click.ClickException(f"no worker answered within {timeout:.0f}s")


def openapi_document(app: Flask) -> str:
    """The app's OpenAPI document as committed in docs/api/openapi.json (sorted keys, 2-space indent)."""
    spec: dict[str, Any] = app.extensions["api"].spec.to_dict()
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@codex_cli.command("openapi")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the document to this file (default: print it).",
)
@with_appcontext
def openapi(output: Path | None) -> None:
    """Print or write the OpenAPI document (``make docs`` writes docs/api/openapi.json)."""
    document = openapi_document(current_app)
    if output is None:
        click.echo(document, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(document, encoding="utf-8")
    click.echo(f"wrote {output}")


@codex_cli.command("seed")
@with_appcontext
def seed() -> None:
    """Create the demo org, accounts, media (ingested now) and content; idempotent.

    The accounts' password is CODEX_SEED_PASSWORD when set, else the printed default.
    """
    from app.seed import SeedError, describe, run_seed

    click.echo("Seeding the Codex demo data")
    try:
        report = run_seed(db.session, progress=click.echo)  # a line per step, as it goes
    except SeedError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    click.echo("")
    for line in describe(report):
        click.echo(line)


codex_cli.add_command(create_owner)
codex_cli.add_command(email_preview)
codex_cli.add_command(rebuild_rollups)
codex_cli.add_command(stripe_replay)


@codex_cli.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "org_id", required=True, help="Organization id to upload into.")
@click.option("--title", default=None, help="Media title (default: the file name without extension).")
@click.option("--description", default=None)
@click.option("--mime-type", default=None, help="Declared type (default: from the file extension).")
@click.option("--api-url", envvar="CODEX_API_URL", default=None, help="API base URL (default: PUBLIC_BASE_URL).")
@click.option("--token", envvar="CODEX_TOKEN", default=None, help="Session token (or --email and --password).")
@click.option("--email", envvar="CODEX_EMAIL", default=None, help="Log in with this account instead of a token.")
@click.option("--password", envvar="CODEX_PASSWORD", default=None, help="Password for --email (prompted if absent).")
@click.option("--parallel", default=4, show_default=True, help="Parts uploaded at once.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/uploads"),
    show_default=True,
    help="Where an interrupted upload's media id is kept (resume by running the command again).",
)
@click.option("--stop-after", type=int, default=None, help="Stop after this many parts (to try a resume).")
@with_appcontext
def upload(
    file: Path,
    org_id: str,
    title: str | None,
    description: str | None,
    mime_type: str | None,
    api_url: str | None,
    token: str | None,
    email: str | None,
    password: str | None,
    parallel: int,
    state_dir: Path,
    stop_after: int | None,
) -> None:
    """Upload FILE as a media item through the HTTP API, in parallel parts; resumable.

    Shows a progress bar on stderr and prints the media id. An interrupted run (Ctrl-C, a crash, a
    lost network) resumes where it stopped when the same command runs again.
    """
    from app.upload_client import Api, Interrupted, Upload, UploadError

    api = Api(api_url or current_app.config["PUBLIC_BASE_URL"], token)
    try:
        if not token:
            if not email:
                raise click.UsageError("pass --token (or CODEX_TOKEN), or --email and --password")
            api.login(email, password or click.prompt("Password", hide_input=True))
        media_id = Upload(
            api,
            file,
            org_id,
            title or file.stem,
            description=description,
            mime_type=mime_type,
            parallel=parallel,
            state_dir=state_dir,
            stop_after=stop_after,
        ).run()
    except Interrupted as exc:
        raise click.ClickException(str(exc)) from None
    except UploadError as exc:
        raise click.ClickException(f"upload failed: {exc}") from None
    click.echo(media_id)
