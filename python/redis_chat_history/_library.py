"""The Lua library's source, shipped in the wheel, and the rules for loading it."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

from ._protocol import LIBRARY_VERSION

LUA_FILE = "chat_history.lua"
_VERSION_LINE = re.compile(r"^local LIBRARY_VERSION = '([0-9.]+)'$", re.MULTILINE)


@cache
def library_source() -> str:
    """The text of lua/chat_history.lua: from the installed wheel, else from the source tree.

    An editable install imports the package from python/, where the wheel's copy
    does not exist, so the repository's lua/ is the fallback.
    """
    packaged = resources.files(__package__) / "lua" / LUA_FILE
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "lua" / LUA_FILE).read_text(encoding="utf-8")


def source_version(source: str) -> str:
    """The LIBRARY_VERSION declared in a library source text."""
    match = _VERSION_LINE.search(source)
    if not match:
        raise ValueError("the library source declares no LIBRARY_VERSION")
    return match.group(1)


def shipped_version() -> str:
    """The version of the library this package ships (equal to LIBRARY_VERSION)."""
    return LIBRARY_VERSION
