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
    """Recompute the dashboard rollup tables from purchases, grants and progress (repair after manual SQL)."""
    session = db.session
    scope = f"organization {org_id}" if org_id else "every organization"
    click.echo(f"rebuilding the dashboard rollups of {scope}")
    report = rollups.rebuild(session, org_id, progress=click.echo)  # a line per step, as it goes
    session.commit()
    click.echo(f"rebuilt the dashboard rollups of {scope}: {sum(report.rows.values())} rows, committed")
