"""Dashboard operator commands; ``app.cli`` adds them to the ``codex`` CLI group."""

from __future__ import annotations

import uuid

import click
from flask.cli import with_appcontext

from app import db
from app.dashboard import rollups


@click.command("rebuild-rollups")
@click.option("--org", "org_id", type=click.UUID, default=None, help="Only this organization (default: all).")
@with_appcontext
def rebuild_rollups(org_id: uuid.UUID | None) -> None:
    """Recompute the dashboard rollup tables from purchases and grants (repair after manual SQL)."""
    session = db.session
    report = rollups.rebuild(session, org_id)
    session.commit()
    scope = f"organization {org_id}" if org_id else "every organization"
    click.echo(f"rebuilt the dashboard rollups of {scope}:")
    for table, count in report.rows.items():
        click.echo(f"  {table}: {count} rows")
