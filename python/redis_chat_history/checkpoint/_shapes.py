"""Shaped values: a channel value or pending write whose long texts are messages' texts.

LangGraph keeps what the caller sent: ``{"messages": [{"role": "user", "content": "..."}]}``
is the ``__start__`` channel's value and the ``__start__`` task's write, while the message it
becomes is stored in the session. A shaped value keeps such a value once: its template (the
value with each long text replaced by a placeholder) and runs naming the stream entries whose
``content`` the texts are. The library stores it (``SHAPE``, ``SHAPEBLOB``) when the put that
stores those messages names the value, if the value is still the one the saver sent.

A value is shaped only if filling its template in gives back exactly what its bytes read as
(checked when it is made), so a reader never sees another value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

#: Texts shorter than this stay in the value: a reference costs about 50 bytes.
SHAPE_MIN_BYTES = 128
#: A placeholder: a text no value sent holds (a value holding one is not shaped).
_PLACEHOLDER = "\x00\x01chathist-text:"
_PLACEHOLDER_FORM = re.compile("\x00\x01chathist-text:([0-9]+)")


def long_text(text: str) -> bool:
    """True for a text of at least SHAPE_MIN_BYTES UTF-8 bytes (1 to 4 per character)."""
    if len(text) >= SHAPE_MIN_BYTES:
        return True
    return 4 * len(text) >= SHAPE_MIN_BYTES and len(text.encode("utf-8", "surrogatepass")) >= (
        SHAPE_MIN_BYTES
    )


def text_digest(text: str) -> bytes:
    """The digest a long text is matched by (the messages' contents and the value's)."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Shape:
    """A value that can be shaped: its template (serialized) and the digest of each text a
    placeholder stands for, in placeholder order; ``value_sha1`` names the stored value."""

    template: bytes
    digests: list[bytes]
    value_sha1: str


def _walk(value: Any, visit: Callable[[str], str]) -> Any:
    """A copy of ``value`` with ``visit`` applied to each text it holds: in dicts, lists and
    a message's string content. Other objects are kept as they are."""
    if isinstance(value, str):
        return visit(value)
    if type(value) is dict:
        return {key: _walk(item, visit) for key, item in value.items()}
    if type(value) is list:
        return [_walk(item, visit) for item in value]
    if isinstance(value, BaseMessage) and isinstance(value.content, str):
        return value.model_copy(update={"content": visit(value.content)})
    return value


def make_shape(
    value: Any,
    typed: bytes,
    dumps: Callable[[Any], bytes],
    loads: Callable[[bytes], Any],
) -> Shape | None:
    """The shape of a value serialized as ``typed`` (``dumps``/``loads``: the saver's typed
    serialization), or None if it holds no long text or would not read back the same."""
    numbers: dict[str, int] = {}  # one placeholder (one run) per distinct text
    clash = False

    def replace(text: str) -> str:
        nonlocal clash
        clash = clash or text.startswith(_PLACEHOLDER)
        if not long_text(text):
            return text
        return f"{_PLACEHOLDER}{numbers.setdefault(text, len(numbers))}"

    template = _walk(value, replace)
    texts = list(numbers)
    if clash or not texts:
        return None
    stored = dumps(template)
    try:
        same = fill(loads(stored), texts) == loads(typed)
    except Exception:  # a value its serializer reads otherwise: kept as it is
        return None
    if not same:
        return None
    return Shape(stored, [text_digest(text) for text in texts], hashlib.sha1(typed).hexdigest())


def fill(template: Any, texts: Sequence[str | None]) -> Any:
    """A shaped value's template with its placeholders' texts (the k-th text for placeholder
    k; None, a message the session no longer holds, reads as an empty text)."""

    def put_back(text: str) -> str:
        match = _PLACEHOLDER_FORM.fullmatch(text)
        if match is None:
            return text
        number = int(match.group(1))
        found = texts[number] if number < len(texts) else None
        return "" if found is None else found

    return _walk(template, put_back)


def refs_for(shape: Shape, known: Mapping[bytes, str]) -> str | None:
    """The runs a shape's placeholders name, one entry each (``known``: text digest -> the
    ``#k`` or stream id of a message holding that text), or None if one is not known."""
    ids = [known.get(key) for key in shape.digests]
    if any(ident is None for ident in ids):
        return None
    return " ".join(f"{ident}..{ident}" for ident in ids)
