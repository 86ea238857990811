"""The import graph of ``app/`` and ``tasks/`` points down (issue 17, docs/architecture.md).

Every ``import`` statement counts, including those inside functions, so a loop cannot hide behind a
lazy import. Each module belongs to one layer (``LAYERS``, lowest first); an import may only name a
module of its own layer or a lower one. The few upward imports we keep are listed in ``ALLOWED_UP``
with their reason, and each must be named in docs/architecture.md. A new loop or a new upward
import fails here with the offending edge.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Lowest first. A module's layer is the first entry that is a prefix of its dotted name (longest
# prefix wins), so ``app.cli`` is a composition root while ``app.config`` is the bottom layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "bottom",
        (
            "app.api",
            "app.config",
            "app.db",
            "app.errors",
            "app.extensions",
            "app.gunicorn_conf",
            "app.http",
            "app.jobs",
            "app.keys",
            "app.audit",
            "app.logging",
            "app.metrics",
            "app.ratelimit",
            "app.speed",
            "app.schemas",
            "app.security",
        ),
    ),
    ("notifications", ("app.notifications",)),
    ("storage", ("app.storage",)),
    ("payments", ("app.payments",)),
    ("identity", ("app.identity",)),
    ("orgs", ("app.orgs",)),
    ("media", ("app.media",)),
    ("content", ("app.content",)),
    ("access", ("app.access",)),
    ("catalog", ("app.catalog",)),
    ("commerce", ("app.commerce",)),
    ("dashboard", ("app.dashboard",)),
    ("system", ("app.system",)),
    ("composition", ("app", "app.cli", "app.models", "app.seed", "app.upload_client")),
    ("tasks", ("tasks",)),
]

# (importing module, imported module): why it stays. Keep docs/architecture.md in step.
ALLOWED_UP: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for base in ("app", "tasks") for path in sorted((ROOT / base).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` names ``a.b`` when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            named = [f"{module}.{alias.name}" for alias in node.names]
            targets = [name if name in known else module for name in named]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import app.x.y`` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_len and not (prefix == "app" and module != "app"):
                best, best_len = index, len(prefix)
    return best


GRAPH = {name: imports_of(name, path, set(all_modules())) for name, path in all_modules().items()}


def test_every_module_has_a_layer() -> None:
    assert [module for module in GRAPH if layer_of(module) < 0] == []


def test_imports_point_down() -> None:
    upward = sorted(
        f"{source} ({LAYERS[layer_of(source)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
        for source, targets in GRAPH.items()
        for target in targets
        if layer_of(target) > layer_of(source) and (source, target) not in ALLOWED_UP
    )
    assert upward == []


def test_no_loop_between_packages() -> None:
    def package(module: str) -> str:
        return LAYERS[layer_of(module)][0] if layer_of(module) != 0 else "bottom"

    edges: dict[str, set[str]] = defaultdict(set)
    for source, targets in GRAPH.items():
        for target in targets:
            if package(source) != package(target):
                edges[package(source)].add(package(target))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, set()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    loops = sorted(f"{a} <-> {b}" for a in list(edges) for b in edges[a] if a < b and reaches(b, a, set()))
    assert loops == []


def test_every_allowed_upward_import_is_documented() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [f"{a} -> {b}" for a, b in ALLOWED_UP if f"`{a}` → `{b}`" not in doc]
    assert missing == []
    stale = [f"{a} -> {b}" for a, b in ALLOWED_UP if b not in GRAPH.get(a, set())]
    assert stale == []  # an exception that no longer exists is removed from the list and the doc


@pytest.mark.parametrize(
    ("source", "target", "up"),
    [
        ("app.dashboard.service", "app.orgs.access", False),
        ("app.orgs.service", "app.dashboard.service", True),
        # each of these edges existed once and closed a loop; the layers refuse them
        ("app.notifications.service", "app.identity.models", True),
        ("app.notifications.rendering", "app.orgs.branding", True),
        ("app.identity.service", "app.orgs.models", True),
        ("app.media.service", "app.content.models", True),
        ("app.access.service", "app.commerce.cache", True),
        ("app.payments.local_provider", "app.commerce.models", True),
        ("app.storage.routes", "app.media.models", True),
        ("app.commerce.cli", "app.cli", True),
        ("app.seed", "tasks.media", True),
    ],
)
def test_the_layer_order_reads_as_documented(source: str, target: str, up: bool) -> None:
    assert (layer_of(target) > layer_of(source)) is up


def test_a_lazy_import_inside_a_function_is_seen(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from app.commerce import service\n", encoding="utf-8")
    assert imports_of("app.mod", source, {"app.commerce", "app.commerce.service"}) == {"app.commerce.service"}
