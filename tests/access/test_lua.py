"""The Lua scripts of app/access/lua: every file is used, every script compiles, and they ship."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
import redis as redis_lib

from app.access import fast_path, lua, progress, service, stats
from app.extensions import redis_script

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path(lua.__file__).parent
FILES = sorted(path.stem for path in FOLDER.glob("*.lua"))
SCRIPTS = {
    "progress.write": (progress._WRITE_LUA, ("apply", "write")),
    # (after the access entry's constants, which refresh.lua reads)
    "progress.checked_write": (
        progress._CHECKED_WRITE_LUA.removeprefix(service.ACCESS_LUA_CONSTANTS),
        ("apply", "refresh", "checked_write"),
    ),
    "progress.claim": (progress._CLAIM_LUA, ("fetch", "claim")),
    "progress.read": (progress._READ_LUA, ("fetch", "read")),
    "progress.forget": (progress._FORGET_LUA, ("forget",)),
    "progress.forget_user": (progress._FORGET_USER_LUA, ("forget_user",)),
    "stats.claim": (stats._CLAIM_LUA, ("stats_claim",)),
    "stats.merge_back": (stats._MERGE_BACK_LUA, ("stats_merge_back",)),
    "service.fill": (service._FILL_LUA, ("fill",)),
}


def test_every_file_is_part_of_a_script_and_every_script_is_made_of_files() -> None:
    used = {name for _, names in SCRIPTS.values() for name in names}
    assert used == set(FILES)
    for label, (source, names) in SCRIPTS.items():
        assert source == "".join((FOLDER / f"{name}.lua").read_text(encoding="utf-8") for name in names), label


# Every script as sent (constants and the rate limiter's guard included).
SENT = {
    **{label: source for label, (source, _) in SCRIPTS.items()},
    "progress.checked_write": progress._CHECKED_WRITE_LUA,
    "progress.limited_write": progress._LIMITED_WRITE_LUA,
    "fast_path.read_keys": fast_path._READ_KEYS_LUA,
}


def test_the_access_constants_come_first() -> None:
    assert progress._CHECKED_WRITE_LUA.startswith(service.ACCESS_LUA_CONSTANTS)


@pytest.mark.parametrize("label", list(SENT))
def test_every_script_compiles_in_redis(redis: redis_lib.Redis, label: str) -> None:
    source = SENT[label]
    script = redis_script(redis, source)
    assert redis.script_load(source) == script.sha  # SCRIPT LOAD compiles it (a syntax error is an error reply)
    assert redis.script_exists(script.sha) == [True]


def test_one_script_object_per_client_and_source(redis: redis_lib.Redis) -> None:
    assert redis_script(redis, progress._WRITE_LUA) is redis_script(redis, progress._WRITE_LUA)
    other = redis_lib.Redis(connection_pool=redis.connection_pool)
    assert redis_script(other, progress._WRITE_LUA) is not redis_script(redis, progress._WRITE_LUA)


def test_the_files_ship_as_package_data() -> None:
    """A non-editable install copies only what setuptools' package-data names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["app.access.lua"]
    shipped = {path.name for path in FOLDER.iterdir() if any(fnmatch.fnmatch(path.name, p) for p in patterns)}
    assert {f"{name}.lua" for name in FILES} <= shipped
