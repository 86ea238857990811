"""The Lua scripts of app/access/lua: every file is used, every script compiles, and they ship."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
import redis as redis_lib

from app.access import lua, progress, stats
from app.extensions import redis_script

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path(lua.__file__).parent
FILES = sorted(path.stem for path in FOLDER.glob("*.lua"))
SCRIPTS = {
    "progress.write": (progress._WRITE_LUA, ("apply", "write")),
    "progress.checked_write": (progress._CHECKED_WRITE_LUA, ("apply", "checked_write")),
    "progress.claim": (progress._CLAIM_LUA, ("fetch", "claim")),
    "progress.read": (progress._READ_LUA, ("fetch", "read")),
    "progress.forget": (progress._FORGET_LUA, ("forget",)),
    "progress.forget_user": (progress._FORGET_USER_LUA, ("forget_user",)),
    "stats.claim": (stats._CLAIM_LUA, ("stats_claim",)),
    "stats.merge_back": (stats._MERGE_BACK_LUA, ("stats_merge_back",)),
}


def test_every_file_is_part_of_a_script_and_every_script_is_made_of_files() -> None:
    used = {name for _, names in SCRIPTS.values() for name in names}
    assert used == set(FILES)
    for label, (source, names) in SCRIPTS.items():
        assert source == "".join((FOLDER / f"{name}.lua").read_text(encoding="utf-8") for name in names), label


@pytest.mark.parametrize("label", list(SCRIPTS))
def test_every_script_compiles_in_redis(redis: redis_lib.Redis, label: str) -> None:
    source = SCRIPTS[label][0]
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
