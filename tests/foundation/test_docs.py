"""The documentation in docs/ stays true to the code: the committed OpenAPI document is the app's,
docs/configuration.md lists every setting of app/config.py with its default, and README.md links
only files of the repository."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from flask import Flask

from app.cli import openapi_document
from app.config import Config

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs/api/openapi.json"
CONFIGURATION = ROOT / "docs/configuration.md"


def test_the_committed_openapi_document_is_current(app: Flask) -> None:
    current = openapi_document(app)
    committed = OPENAPI.read_text(encoding="utf-8") if OPENAPI.exists() else ""
    assert committed == current, (
        "docs/api/openapi.json differs from the app's OpenAPI document: regenerate it with `make docs`"
        " (or `flask codex openapi --output docs/api/openapi.json`) and commit it"
    )


def test_the_document_does_not_depend_on_the_configuration(app_factory: Any) -> None:
    """What `make docs` writes from a developer's settings equals what the test above builds."""
    other = app_factory(
        SUPPORTED_CURRENCIES=["usd", "eur"], MAX_CONTENT_LENGTH=2048, PUBLIC_BASE_URL="https://api.example.com"
    )
    assert openapi_document(other) == OPENAPI.read_text(encoding="utf-8")


def documented_settings() -> dict[str, str]:
    """{variable: default cell} of every table row of docs/configuration.md."""
    rows: dict[str, str] = {}
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `?([A-Z][A-Z0-9_]+)`? \| ([^|]*) \|", line)
        if match:
            assert match[1] not in rows, f"{match[1]} is documented twice"
            rows[match[1]] = match[2].strip()
    return rows


def rendered_default(field: dataclasses.Field[Any]) -> str:
    """How docs/configuration.md writes a field's default: `value`, `a,b`, empty or unset."""
    if field.default_factory is not dataclasses.MISSING:
        value: Any = field.default_factory()
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{','.join(value)}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def test_configuration_doc_lists_every_setting_with_its_default() -> None:
    documented = documented_settings()
    fields = {field.name: field for field in dataclasses.fields(Config)}
    missing = sorted(set(fields) - set(documented))
    unknown = sorted(set(documented) - set(fields))
    assert not missing, f"settings of app/config.py missing from docs/configuration.md: {missing}"
    assert not unknown, f"docs/configuration.md documents settings app/config.py does not have: {unknown}"
    wrong = {
        name: (documented[name], rendered_default(field))
        for name, field in fields.items()
        if not documented[name].startswith(rendered_default(field))
    }
    assert not wrong, f"defaults in docs/configuration.md differ from app/config.py (doc, code): {wrong}"


def test_readme_and_docs_stand_alone() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "/work/" not in text, f"{path.name} points outside the repository"
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (path.parent / target).exists(), f"{path.name} links {target}, which does not exist"
    for doc in ("docs/configuration.md", "docs/operations.md", "docs/api/openapi.json", "docs/architecture.md"):
        assert f"]({doc})" in readme, f"README.md does not link {doc}"
