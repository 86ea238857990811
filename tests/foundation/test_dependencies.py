"""Declared dependencies: what the code imports is declared, what is declared is used, and the
lock files pin exactly what pyproject.toml asks for.

deptry reads ``[tool.deptry]`` in pyproject.toml. It runs twice: over the runtime code (app/,
tasks/, migrations/), where an undeclared (DEP001), transitive-only (DEP003), unused (DEP002) or
dev-only (DEP004) import fails; and over tests/ and bench/, which may import the dev extra and need
not use every runtime dependency, so only undeclared imports fail there. deptry does not look for
unused dev dependencies: ``test_every_dev_dependency_is_imported_or_a_tool`` does.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
RUNTIME = [Requirement(spec) for spec in PYPROJECT["project"]["dependencies"]]
DEV = [Requirement(spec) for spec in PYPROJECT["project"]["optional-dependencies"]["dev"]]

# Dev dependencies that are run, not imported by tests/ or bench/ (each says how it is used).
TOOLS = {
    "pytest-xdist": "pytest plugin (-n 2 in make test)",
    "ruff": "make lint",
    "mypy": "make lint",
    "celery-types": "stubs read by mypy",
    "boto3-stubs": "stubs read by mypy (app/storage/s3.py imports them under TYPE_CHECKING)",
    "honcho": "make run",
    "deptry": "run by this module as a command",
    "uv": "make lock",
}

LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def deptry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deptry", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_runtime_code_imports_exactly_the_declared_dependencies() -> None:
    result = deptry("app", "tasks", "migrations")
    assert result.returncode == 0, (
        "deptry over the runtime code (declare what is imported in pyproject.toml's dependencies,"
        f" remove what is not):\n{result.stdout}{result.stderr}"
    )


def test_tests_and_benchmarks_import_only_declared_dependencies() -> None:
    result = deptry("tests", "bench", "--ignore", "DEP002,DEP004")
    assert result.returncode == 0, (
        f"deptry over tests/ and bench/ (add the package to the dev extra):\n{result.stdout}{result.stderr}"
    )


def imported_distributions(*folders: str) -> set[str]:
    """The distributions (canonical names) providing the top-level modules imported under ``folders``."""
    modules: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module.split(".")[0])
    providers = importlib.metadata.packages_distributions()
    return {canonicalize_name(dist) for module in modules for dist in providers.get(module, [])}


def test_every_dev_dependency_is_imported_or_a_tool() -> None:
    used = imported_distributions("tests", "bench")
    unused = sorted(name for req in DEV if (name := canonicalize_name(req.name)) not in used and name not in TOOLS)
    assert not unused, f"dev dependencies nothing imports (remove them, or list the tool in TOOLS): {unused}"
    stale = sorted(set(TOOLS) - {canonicalize_name(req.name) for req in DEV})
    assert not stale, f"TOOLS lists packages that are no longer dev dependencies: {stale}"


def test_obsolete_stub_packages_are_not_declared() -> None:
    # redis-py ships its own type information since 4.x; the stub package shadows it with old types.
    assert "types-redis" not in {canonicalize_name(req.name) for req in DEV}


# ---- the lock files ------------------------------------------------------------------------------


def read_lock(name: str) -> dict[str, str]:
    """``requirements*.lock`` as {canonical name: version}; every pin must carry a sha256 hash."""
    text = (ROOT / name).read_text(encoding="utf-8")
    pins: dict[str, str] = {}
    for entry in re.split(r"\n(?=[^\s#])", text):
        line = entry.strip()
        if not line or line.startswith("#"):
            continue
        match = LOCK_LINE.match(line)
        assert match, f"{name}: not a name==version pin: {line.splitlines()[0]}"
        assert "--hash=sha256:" in entry, f"{name}: {match[1]} has no hash"
        assert "+" not in match[2], f"{name}: {match[1]}=={match[2]} is a local build, not a published release"
        pins[canonicalize_name(match[1])] = match[2]
    assert "file:" not in text and "--find-links" not in text and "--index-url" not in text, (
        f"{name} must name no index or local files"
    )
    return pins


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [("requirements.lock", RUNTIME), ("requirements-dev.lock", RUNTIME + DEV)],
)
def test_the_locks_pin_what_pyproject_asks_for(lock: str, requirements: list[Requirement]) -> None:
    pins = read_lock(lock)
    problems = []
    for req in requirements:
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is not pinned")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} does not satisfy {req}")
    assert not problems, f"{lock} is out of date with pyproject.toml (run `make lock`): {problems}"


def test_the_runtime_lock_is_the_dev_lock_without_the_dev_extra() -> None:
    runtime, dev = read_lock("requirements.lock"), read_lock("requirements-dev.lock")
    differ = {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version}
    assert not differ, f"requirements.lock and requirements-dev.lock pin different versions (run `make lock`): {differ}"
    tools = {name for name in TOOLS if name in runtime}
    assert not tools, f"requirements.lock pins dev tools (the runtime lock must not need the dev extra): {tools}"
