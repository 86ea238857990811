"""One writer per table (issue 17), for the money path.

AST scans of app/: ``content_access`` is written only by ``app/access/grants.py``; a purchase or a
checkout session row is built only in ``app/commerce/records.py``. Import direction is
tests/foundation/test_import_graph.py's.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
WRITES = frozenset({"insert", "pg_insert", "update", "delete"})
WRITE_VERBS = r"INSERT\s+INTO|UPDATE|DELETE\s+FROM"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _docstrings(tree: ast.AST) -> set[int]:
    """``id()`` of the docstring constants (prose may name a statement without running it)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            found.add(id(first.value))
    return found


def _sql_constants(tree: ast.AST, pattern: re.Pattern[str]) -> list[int]:
    prose = _docstrings(tree)
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in prose
        and pattern.search(node.value)
    ]


def table_writes(
    tree: ast.AST, model: str, table: str, *, builders: frozenset[str] = WRITES, verbs: str = WRITE_VERBS
) -> list[int]:
    """Lines that write ``table``: ``Model(...)``, a statement builder on it (``insert(Model)``,
    ``pg_insert``, ``update``, ``delete``), or SQL text (``INSERT INTO table``, ``UPDATE``, ``DELETE FROM``)."""
    lines = _sql_constants(tree, re.compile(rf"\b({verbs})\s+{table}\b", re.IGNORECASE))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            target = node.args[0] if node.args else None
            if name == model or (name in builders and isinstance(target, ast.Name) and target.id == model):
                lines.append(node.lineno)
    return lines


def _sources() -> list[tuple[Path, ast.AST]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(APP.rglob("*.py"))]


def test_only_app_access_grants_writes_content_access() -> None:
    owner = APP / "access" / "grants.py"
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path, tree in _sources()
        if path != owner
        for line in table_writes(tree, "ContentAccess", "content_access")
    ]
    assert offenders == [], "change grants through app.access.grants:\n" + "\n".join(offenders)


@pytest.mark.parametrize(("model", "table"), [("Purchase", "purchases"), ("CheckoutSession", "checkout_sessions")])
def test_purchase_and_checkout_session_rows_are_built_in_records_only(model: str, table: str) -> None:
    """Updates of their state are the pipeline's; a new row is built in one place."""
    owner = APP / "commerce" / "records.py"
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path, tree in _sources()
        if path != owner
        for line in table_writes(
            tree, model, table, builders=frozenset({"insert", "pg_insert"}), verbs=r"INSERT\s+INTO"
        )
    ]
    assert offenders == [], f"build {table} rows in app/commerce/records.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "source",
    [
        "session.add(ContentAccess(user_id=u))",
        "stmt = pg_insert(ContentAccess).values(user_id=u)",
        "session.execute(update(ContentAccess).values(revoked_at=None))",
        'SQL = """\n    INSERT INTO content_access AS a (id) VALUES (1)\n"""',
        'SQL = "update content_access set revoked_at = now()"',
    ],
)
def test_the_scan_finds_a_content_access_write(source: str) -> None:
    assert table_writes(ast.parse(source), "ContentAccess", "content_access")


@pytest.mark.parametrize(
    "source",
    [
        "session.scalar(select(ContentAccess.id).where(ContentAccess.user_id == u))",
        '"""Reads ``content_access`` rows (a docstring)."""',
        'SQL = "SELECT 1 FROM content_access WHERE user_id = %(u)s"',
    ],
)
def test_the_scan_leaves_reads_alone(source: str) -> None:
    assert table_writes(ast.parse(source), "ContentAccess", "content_access") == []
