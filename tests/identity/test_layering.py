"""Identity sits at the bottom of the domain stack: identity -> orgs -> media -> content ->
catalog/access -> commerce -> dashboard, imports pointing down. No module of app/identity imports
a package above it (at module level or inside a function); what identity needs of organizations
reaches it from app/orgs/for_identity.py at start-up."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABOVE = ("orgs", "media", "content", "catalog", "access", "commerce", "dashboard")


def imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in ``source``, ``from x import y`` as ``x.y``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def reaches_above(name: str) -> bool:
    parts = name.split(".")
    return len(parts) > 1 and parts[0] == "app" and parts[1] in ABOVE


def test_identity_imports_no_package_above_it() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "app" / "identity").rglob("*.py"))
        for line, name in imported_modules(path.read_text(encoding="utf-8"))
        if reaches_above(name)
    ]
    assert offenders == [], "identity must not import these:\n" + "\n".join(offenders)


def test_the_scan_sees_every_spelling_of_an_import() -> None:
    source = (
        "from app.orgs.models import Membership\n"
        "from app import orgs\n"
        "import app.media.service\n"
        "def later():\n    from app.access import cache\n"
    )
    assert [name for _line, name in imported_modules(source) if reaches_above(name)] == [
        "app.orgs.models.Membership",
        "app.orgs",
        "app.media.service",
        "app.access.cache",
    ]
    below = imported_modules("from app.identity import sessions\nfrom app import db\nimport app.http\n")
    assert not [name for _line, name in below if reaches_above(name)]
