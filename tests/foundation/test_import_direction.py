"""Imports point down (issue 17): notifications is below every domain, media below content, app/ below
tasks/, and the CLI root is on top.

Read from the source (every ``import`` statement, including those inside functions), so a loop
cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
DOMAINS = ("identity", "orgs", "media", "content", "access", "commerce", "dashboard", "catalog")


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            if node.module == "app":  # ``from app import orgs`` names a package too
                modules.update(f"app.{alias.name}" for alias in node.names)
    return modules


def test_notifications_imports_no_domain() -> None:
    # Every domain queues email through notifications, so an import the other way is a loop.
    offending = {
        f"{path.relative_to(APP.parent)}: {module}"
        for path in sorted((APP / "notifications").rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[:2] in [["app", domain] for domain in DOMAINS]
    }
    assert offending == set()


def test_domain_cli_modules_do_not_import_the_cli_root() -> None:
    # app/cli.py mounts the domains' commands; a domain importing it back closes a circle.
    cli_modules = sorted(APP.glob("*/cli.py"))
    assert {path.parent.name for path in cli_modules} >= {"commerce", "dashboard", "identity", "notifications"}
    offending = {str(path.relative_to(APP.parent)) for path in cli_modules if {"app.cli"} & imported_modules(path)}
    assert offending == set()


def test_media_imports_no_content() -> None:
    # Content points at media (content.media_id); app.content.for_media hands media what it needs.
    offending = {
        f"{path.relative_to(APP.parent)}: {module}"
        for path in sorted((APP / "media").rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[:2] == ["app", "content"]
    }
    assert offending == set()


def test_app_imports_no_tasks() -> None:
    # Tasks are thin wrappers over app/ (the seed runs app.media.ingest.run_ingest, not the task).
    offending = {
        f"{path.relative_to(APP.parent)}: {module}"
        for path in sorted(APP.rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] == "tasks"
    }
    assert offending == set()
