"""The Lua scripts of playback progress and watch statistics, one ``.lua`` file each (read at import).

A file whose header says "a fragment" defines a function for the scripts that follow it
(``source("apply", "write")``). Scripts get their keys through ``KEYS``; where one must build a key
from a member it only learns inside Redis, the key family's prefix comes from app/keys.py as an
``ARGV`` (each file's header says which). The files ship as package data (pyproject.toml).
"""

from __future__ import annotations

from importlib.resources import files


def source(*names: str) -> str:
    """The script made of the files ``<name>.lua``, in this order."""
    folder = files(__name__)
    return "".join(folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in names)
