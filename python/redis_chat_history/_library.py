"""The Lua library's source, shipped in the wheel, and the rules for loading it."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

LUA_FILE = "chat_history.lua"


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
