"""Compact forms of the names a pending write carries: its task id and task path.

LangGraph names every pending write by a task id (a UUID: 36 characters) and a task path
(``~__pregel_pull, model``, ``~__pregel_push, 0000000000, 0000000000``). A checkpoint of an
agent keeps a write or two, so these names are a large part of what a thread stores besides
its messages. The library treats them as opaque bytes (a task id only may not hold NUL), so
their form is the client's business, as a record's payload is: the Python saver stores

- a UUID task id in canonical form (lower-case hex, dashes) as ``\\x02\\x02`` and its 128
  bits in 17 base-255 digits, each digit + 1 (never NUL): 19 bytes;
- a name that starts with one of :data:`WORDS` as ``\\x02``, the word's code and the rest of
  the name (the longest word that fits);
- a name that starts with ``\\x02`` (none of LangGraph's) as ``\\x02\\x01`` and the name;
- any other name as it is.

A write's channel stays as it is: ``chathist_cp_chain`` picks writes by their channel. The
table is part of the stored format: codes are never reused or reordered, only added.
"""

from __future__ import annotations

import re

from ._errors import ChatHistoryError

#: Starts a compact name: LangGraph's names are text, never starting with this byte.
MARK = 0x02
_ESCAPED = 0x01  # the name follows as it is
_UUID = 0x02  # a UUID's 128 bits follow as 17 base-255 digits, each + 1

#: Words LangGraph starts task paths and channels with, coded 0x03, 0x04, ... in order.
WORDS: tuple[str, ...] = (
    "messages",
    "branch:to:",
    "__pregel_tasks",
    "__start__",
    "__interrupt__",
    "__resume__",
    "__error__",
    "__scheduled__",
    "__no_writes__",
    "__return__",
    "~__pregel_pull, ",
    "~__pregel_push, ",
    "~__pregel_push, 0000000000, 0000000000",
    "~__pregel_push, 0000000000, ",
    "~__pregel_pull, __start__",
    "~__pregel_pull, model",
    "~__pregel_pull, tools",
    "branch:to:model",
    "branch:to:tools",
)
_FIRST_CODE = 0x03
_CODED = {word.encode(): _FIRST_CODE + code for code, word in enumerate(WORDS)}
_BY_LENGTH = sorted(_CODED, key=len, reverse=True)
#: A UUID in canonical form (lower-case hex and dashes), as LangGraph makes them.
CANONICAL_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DIGITS = 17  # 255**17 > 2**128


def encode_name(name: str) -> bytes:
    """The stored form of a task id, task path or channel (see the module)."""
    raw = name.encode()
    if CANONICAL_UUID.fullmatch(raw):
        value = int(raw.replace(b"-", b""), 16)
        digits = bytearray()
        for _ in range(_DIGITS):
            value, digit = divmod(value, 255)
            digits.append(digit + 1)
        return bytes((MARK, _UUID)) + bytes(digits)
    if raw[:1] == bytes((MARK,)):
        return bytes((MARK, _ESCAPED)) + raw
    for word in _BY_LENGTH:
        if raw.startswith(word):
            return bytes((MARK, _CODED[word])) + raw[len(word) :]
    return raw


def decode_name(stored: bytes) -> str:
    """The name a stored task id, task path or channel stands for (either form)."""
    if stored[:1] != bytes((MARK,)) or len(stored) < 2:
        return stored.decode()
    code, rest = stored[1], stored[2:]
    if code == _ESCAPED:
        return rest.decode()
    if code == _UUID:
        value = 0
        for digit in reversed(rest):
            value = value * 255 + digit - 1
        if len(rest) != _DIGITS or 0 in rest or value >> 128:
            raise ChatHistoryError(f"a stored task id is malformed: {stored!r}")
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    if not _FIRST_CODE <= code < _FIRST_CODE + len(WORDS):
        raise ChatHistoryError(f"a stored name has an unknown word code {code}: {stored!r}")
    return WORDS[code - _FIRST_CODE] + rest.decode()
