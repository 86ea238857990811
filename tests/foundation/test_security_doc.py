"""SECURITY.md names the tests that prove each defence; every name it gives must exist (a renamed or
deleted test would otherwise leave the page promising a proof that is gone)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_named_in_security_md_exists() -> None:
    doc = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    sources = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("test_*.py"))
    defined = set(re.findall(r"^def (test_\w+)", sources, flags=re.M))
    named = set(re.findall(r"\b(test_\w+)", doc)) - {path.stem for path in (ROOT / "tests").rglob("test_*.py")}
    assert named, "SECURITY.md names no test"
    assert sorted(named - defined) == []
    for path in set(re.findall(r"`(tests/[\w/]+\.py)", doc)):
        assert (ROOT / path).exists(), path
