"""The command line from a checkout: ``flask codex …`` needs no ``--app`` (.flaskenv), ``alembic``
reads ``.env`` like the app does, and ``make seed`` shows a broken configuration's own error."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.exc import OperationalError

from app.config import load_dotenv

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql+psycopg://codex@127.0.0.1:1/codex_dotenv_probe"  # port 1: refused at once


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the variables the tests below are about."""
    env = {key: value for key, value in os.environ.items() if key not in {"FLASK_APP", "APP_ENV", "SECRET_KEY"}}
    return {**env, **extra}


def run(*command: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=120, check=False
    )


def test_flask_reads_the_app_from_flaskenv() -> None:
    # The loader the flask command runs first (python-dotenv), from the root and from a subdirectory.
    probe = "import os; from flask.cli import load_dotenv; load_dotenv(); print(os.environ.get('FLASK_APP'))"
    assert run(sys.executable, "-c", probe).stdout.strip() == "app"
    assert run(sys.executable, "-c", probe, cwd=ROOT / "docs").stdout.strip() == "app"

    result = run(sys.executable, "-m", "flask", "codex", "--help")
    assert result.returncode == 0, result.stderr
    for name in ("seed", "rebuild-rollups", "stripe-replay", "openapi"):
        assert name in result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_seed_shows_the_configuration_error() -> None:
    # -o: take the install stamp as up to date (the interpreter running the tests has everything);
    # BIN: that interpreter's bin directory, for flask.
    result = run(
        "make",
        "--no-print-directory",
        "-o",
        ".venv/.installed",
        "seed",
        f"BIN={Path(sys.executable).parent}",
        APP_ENV="production",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "SECRET_KEY must be set to at least 32 characters in production" in output
    assert "ensure-services" not in output  # stopped before services and ffmpeg
    assert "no 'flask --app app codex seed' command" not in output


# ---- .env ------------------------------------------------------------------------------------------


def forget_afterwards(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Unset ``name`` now and again after the test, whatever a loaded .env set meanwhile
    (``monkeypatch.delenv`` of an absent variable records nothing to restore)."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


def alembic_current() -> str:
    """``alembic current`` as the command line runs it (no URL handed over), in this directory."""
    out = io.StringIO()
    cfg = AlembicConfig(str(ROOT / "alembic.ini"), stdout=out)
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["skip_logging"] = True
    command.current(cfg)
    return out.getvalue()


def test_alembic_reads_database_url_from_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_ENV", raising=False)
    forget_afterwards(monkeypatch, "DATABASE_URL")
    (tmp_path / ".env").write_text(f"DATABASE_URL={UNREACHABLE}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OperationalError, match="port 1 failed"):
        alembic_current()


def test_alembic_prefers_the_real_environment_over_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.delenv("APP_ENV", raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)  # the migrated test database
    (tmp_path / ".env").write_text(f"DATABASE_URL={UNREACHABLE}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert "(head)" in alembic_current()


def test_dotenv_is_read_in_development_only_and_never_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("CODEX_DOTENV_PROBE=from-file\nCODEX_DOTENV_SET=from-file\n", encoding="utf-8")
    monkeypatch.setenv("CODEX_DOTENV_SET", "from-environment")
    forget_afterwards(monkeypatch, "CODEX_DOTENV_PROBE")

    monkeypatch.setenv("APP_ENV", "production")
    assert not load_dotenv(tmp_path)
    assert "CODEX_DOTENV_PROBE" not in os.environ

    monkeypatch.delenv("APP_ENV")
    assert load_dotenv(tmp_path)
    assert os.environ["CODEX_DOTENV_PROBE"] == "from-file"
    assert os.environ["CODEX_DOTENV_SET"] == "from-environment"
