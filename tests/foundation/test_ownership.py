"""Redis key names are built in app/keys.py only (issue 17).

An AST scan of every module under app/ and tasks/: a string constant, or the head of an f-string,
that starts with one of ``app.keys.PREFIXES`` spells a key name; so does a quoted prefix inside a
string (a Lua script building a key) or in a ``.lua`` file. Only app/keys.py may do either.
Dotted names (log events such as ``access.denied``) and members such as ``{user}:{content}`` are
not keys and are not flagged.
"""

from __future__ import annotations

import ast
import re
import uuid
from pathlib import Path

import pytest

from app import extensions, keys

ROOT = Path(__file__).resolve().parents[2]
OWNER = ROOT / "app" / "keys.py"
_QUOTED = re.compile("['\"](?:" + "|".join(re.escape(prefix) for prefix in keys.PREFIXES) + ")")


def key_spellings(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every place ``source`` (Python) spells a Redis key name."""
    found: list[tuple[int, str]] = []
    tree = ast.parse(source)
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inside_fstrings.update(id(part) for part in node.values)
            head = node.values[0] if node.values else None
            if isinstance(head, ast.Constant) and isinstance(head.value, str) and head.value.startswith(keys.PREFIXES):
                found.append((node.lineno, head.value))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str | bytes):
            continue
        text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
        if id(node) not in inside_fstrings and text.startswith(keys.PREFIXES):
            found.append((node.lineno, text))
        elif _QUOTED.search(text):  # e.g. a Lua script: redis.call('GET', 'pb:p:' .. m)
            found.append((node.lineno, _QUOTED.search(text).group(0)))  # type: ignore[union-attr]
    return found


def lua_spellings(source: str) -> list[tuple[int, str]]:
    return [(n, m.group(0)) for n, line in enumerate(source.splitlines(), 1) if (m := _QUOTED.search(line))]


def _modules() -> list[Path]:
    return sorted(p for d in ("app", "tasks") for p in (ROOT / d).rglob("*.py") if p != OWNER)


def test_only_app_keys_spells_a_redis_key_name() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for path in _modules()
        for line, text in key_spellings(path.read_text(encoding="utf-8"))
    ]
    offenders += [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in sorted((ROOT / "app").rglob("*.lua"))
        for line, text in lua_spellings(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "build Redis key names in app/keys.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "source",
    [
        'KEY = "pb:dirty"',
        'def k(u):\n    return f"sess:{u}"',
        'def k(u, c):\n    return f"access:{u}:{c}"',
        'def k(t):\n    return "lock:beat:" + t',
        "PREFIX = b'me:gen:'",
        "LUA = \"local v = redis.call('HMGET', 'pb:p:' .. m, 'pos')\"",
        'LUA = """\nredis.call(\'SREM\', "pb:dirty:u:" .. user, c)\n"""',
    ],
)
def test_the_scan_finds_a_key_spelled_outside_app_keys(source: str) -> None:
    assert key_spellings(source)


@pytest.mark.parametrize(
    "source",
    [
        'log.warning("access.denied", reason="none")',
        'MEMBER = "{user}:{content}"',
        'def m(u, c):\n    return f"{u}:{c}"',
        'def stats_member(day, c):\n    return f"{day}:{c}"',
        'def k(u):\n    return f"user:{u}"',  # a key's client part, not a key name
        '"""Parse ``pb:p:…`` entries (a docstring that mentions a key)."""',
        'MESSAGE = "The session (sess: entries) expired"',
        'def k(prefix, m):\n    return f"{prefix}{m}"',
    ],
)
def test_the_scan_leaves_other_strings_alone(source: str) -> None:
    assert key_spellings(source) == []


def test_a_lua_file_that_builds_a_key_is_found() -> None:
    assert lua_spellings("local h = 'pb:p:' .. ARGV[1]\n") == [(1, "'pb:")]
    assert lua_spellings("-- KEYS[1] = pb:dirty (a comment names it)\nlocal h = ARGV[1] .. m\n") == []


# ---- app/keys.py itself ----------------------------------------------------------------------------

SAMPLES = {
    "session": ("ab" * 32,),
    "session_index": (uuid.uuid4(),),
    "me_body": (uuid.uuid4(),),
    "me_generation": (uuid.uuid4(),),
    "access_entry": (uuid.uuid4(), uuid.uuid4()),
    "access_index": (uuid.uuid4(),),
    "access_blocked": (uuid.uuid4(),),
    "content_generation": (uuid.uuid4(),),
    "org_settings": (uuid.uuid4(),),
    "catalog_generation": (uuid.uuid4(),),
    "catalog_page": ("bakery", "0123abcd"),
    "catalog_item": (uuid.uuid4(),),
    "progress": (uuid.uuid4(), uuid.uuid4()),
    "user_dirty": (uuid.uuid4(),),
    "progress_seen": ("20250101", uuid.uuid4(), uuid.uuid4()),
    "daily_stats": ("20250101", uuid.uuid4()),
    "stats_inflight": ("run", "20250101:" + str(uuid.uuid4())),
    "beat_lock": ("playback.flush_progress",),
    "local_payment_session": ("cs_local_abc",),
    "rate_limit": ("api", "ip:127.0.0.1"),
}


def test_every_key_function_is_sampled_and_names_a_key_under_a_declared_prefix() -> None:
    functions = {
        name
        for name, value in vars(keys).items()
        if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == keys.__name__
    }
    assert functions == set(SAMPLES)
    for name, args in SAMPLES.items():
        assert getattr(keys, name)(*args).startswith(keys.PREFIXES), name
    constants = [value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)]
    assert constants and all(value.startswith(keys.PREFIXES) for value in constants)


def test_the_prefix_constants_match_the_functions() -> None:
    user, content = uuid.uuid4(), uuid.uuid4()
    assert keys.progress(user, content) == f"{keys.PROGRESS_PREFIX}{user}:{content}"
    assert keys.user_dirty(user) == f"{keys.USER_DIRTY_PREFIX}{user}"
    assert keys.daily_stats("20250101", content) == f"{keys.DAILY_STATS_PREFIX}20250101:{content}"
    assert keys.stats_inflight("run", "m").startswith(keys.STATS_INFLIGHT_PREFIX)
    assert keys.content_generation(content).startswith(keys.CONTENT_GENERATION_PREFIX)


def test_the_near_cache_tracks_the_prefixes_app_keys_declares() -> None:
    assert extensions.NEAR_CACHE_PREFIXES == keys.NEAR_CACHE_PREFIXES
    assert set(keys.NEAR_CACHE_PREFIXES) <= set(keys.PREFIXES)
    user, content = uuid.uuid4(), uuid.uuid4()
    read_with_the_session = [
        keys.session("ab" * 32),
        keys.session_index(user),
        keys.me_body(user),
        keys.me_generation(user),
        keys.access_entry(user, content),
        keys.content_generation(content),
    ]
    assert all(key.startswith(keys.NEAR_CACHE_PREFIXES) for key in read_with_the_session)


def test_app_keys_imports_no_application_package() -> None:
    tree = ast.parse(OWNER.read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name == "app" or name.startswith(("app.", "tasks"))}
