"""Migration 0015 on a database that already has viewers: the furthest position is backfilled from
the position (clamped), the retention rollup from the rows, the triggers take over from there, and
the downgrade goes back cleanly. Runs on a scratch database of its own (migrations cannot run inside
the suite's rolled-back transaction)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parents[2]
REVISION = "0015"

DIRECT = """
    SELECT content_id, LEAST(20, 20 * LEAST(max_position_seconds, duration_seconds) / duration_seconds),
           count(*), count(*) FILTER (WHERE completed),
           sum(1000000::bigint * LEAST(max_position_seconds, duration_seconds) / duration_seconds)
    FROM playback_progress GROUP BY 1, 2
"""
KEPT = """
    SELECT content_id, bucket, viewers, completions, fraction_micros FROM dashboard_content_retention
    WHERE viewers <> 0 OR completions <> 0 OR fraction_micros <> 0
"""


@pytest.fixture()
def scratch(database_url: str) -> Iterator[tuple[AlembicConfig, Engine]]:
    name = f"codex_test_m{REVISION}_{os.getpid()}"
    url = make_url(database_url).set(database=name)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = url.render_as_string(hide_password=False)
    cfg.attributes["skip_logging"] = True
    engine = create_engine(url)
    try:
        yield cfg, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _viewers(engine: Engine) -> tuple[uuid.UUID, list[tuple[int, int, bool]]]:
    """An org, a content item and four viewers, written as the flush wrote them before 0015."""
    owner, org, media, content = (uuid.uuid4() for _ in range(4))
    rows = [(0, 600, False), (150, 600, False), (600, 600, True), (700, 650, True)]  # the last: past its duration
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, email, name) VALUES (:id, 'o@example.com', 'Owner')"), {"id": owner})
        conn.execute(
            text("INSERT INTO organizations (id, name, slug, created_by) VALUES (:id, 'Org', 'org', :o)"),
            {"id": org, "o": owner},
        )
        conn.execute(
            text(
                "INSERT INTO media_items (id, organization_id, created_by, title, media_type, mime_type, "
                "file_size_bytes, status, original_key) VALUES (:id, :org, :o, 'M', 'video', 'video/mp4', 1, "
                "'uploaded', 'k')"
            ),
            {"id": media, "org": org, "o": owner},
        )
        conn.execute(
            text(
                "INSERT INTO content (id, organization_id, created_by, media_id, title, slug, content_type, "
                "visibility, currency) VALUES (:id, :org, :o, :m, 'Lesson', 'lesson', 'video', 'public', 'usd')"
            ),
            {"id": content, "org": org, "o": owner, "m": media},
        )
        for i, (position, duration, completed) in enumerate(rows):
            viewer = uuid.uuid4()
            conn.execute(
                text("INSERT INTO users (id, email, name) VALUES (:id, :e, 'Viewer')"),
                {"id": viewer, "e": f"v{i}@example.com"},
            )
            conn.execute(
                text(
                    "INSERT INTO playback_progress (user_id, content_id, position_seconds, duration_seconds, "
                    "completed, client_ts) VALUES (:u, :c, :p, :d, :done, now())"
                ),
                {"u": viewer, "c": content, "p": position, "d": duration, "done": completed},
            )
    return content, rows


def test_backfill_then_triggers_then_downgrade(scratch: tuple[AlembicConfig, Engine]) -> None:
    cfg, engine = scratch
    before = ScriptDirectory.from_config(cfg).get_revision(REVISION).down_revision
    assert isinstance(before, str)
    command.upgrade(cfg, before)
    content, rows = _viewers(engine)

    command.upgrade(cfg, REVISION)
    with engine.connect() as conn:
        furthest = sorted(conn.execute(text("SELECT max_position_seconds FROM playback_progress")).scalars())
        assert furthest == sorted(min(p, d) for p, d, _ in rows)
        kept = {tuple(r) for r in conn.execute(text(KEPT))}
        assert kept == {tuple(r) for r in conn.execute(text(DIRECT))}
        assert {(r[1], r[2]) for r in kept} == {(0, 1), (5, 1), (20, 2)}
    with engine.begin() as conn:  # the triggers keep it from here
        conn.execute(text("UPDATE playback_progress SET max_position_seconds = 330 WHERE max_position_seconds = 0"))
        kept = {tuple(r) for r in conn.execute(text(KEPT))}
        assert kept == {tuple(r) for r in conn.execute(text(DIRECT))}
        assert sum(r[2] for r in kept if r[0] == content) == len(rows)

    command.downgrade(cfg, before)
    with engine.connect() as conn:
        columns = conn.execute(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = 'playback_progress'")
        ).scalars()
        assert "max_position_seconds" not in set(columns)
        assert conn.scalar(text("SELECT to_regclass('dashboard_content_retention')")) is None
    command.upgrade(cfg, "head")  # and up again
