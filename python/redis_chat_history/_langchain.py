"""LangChain messages to and from the stored-message dicts of the wire layer.

``_protocol`` speaks only dicts and plain records; this module is the one place
that knows LangChain's message classes: it serializes messages with
``message_to_dict`` (without the fields that hold their class's default, see
:func:`compact_stored`), reads them back with ``messages_from_dict`` (tolerating types
other clients invent), gives messages the ids that make appends safe to retry, and
splits LangGraph-style ``RemoveMessage`` runs from messages to store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    RemoveMessage,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
    message_to_dict,
    messages_from_dict,
)

from ._errors import InvalidInputError
from ._protocol import (
    Reply,
    StoredRecord,
    decode_jsons,
    decode_records,
    encode_stored,
    entries_reply,
)

#: LangGraph's ``RemoveMessage`` id that stands for every message of the conversation.
REMOVE_ALL_MESSAGES = "__remove_all__"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as stored in a session: its server-assigned id and time, and the message."""

    id: str
    timestamp: datetime
    message: BaseMessage


#: The classes ``messages_from_dict`` builds, by stored type: their stored dicts leave out
#: the fields that hold the class's default, which reading fills in again.
_CLASSES: dict[str, type[BaseMessage]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        HumanMessage,
        AIMessage,
        SystemMessage,
        ChatMessage,
        FunctionMessage,
        ToolMessage,
        HumanMessageChunk,
        AIMessageChunk,
        SystemMessageChunk,
        ChatMessageChunk,
        FunctionMessageChunk,
        ToolMessageChunk,
    )
}
#: The fields left out when they hold their default: an empty one (None, false, {}, []),
#: which every reader fills in, or ``data.type`` (the stored ``type`` again). A default
#: with a value (a tool message's ``status``, "success" here) is kept: LangChain.js has
#: none for it.
_DEFAULTS: dict[str, dict[str, Any]] = {
    kind: {
        name: default
        for name, field in cls.model_fields.items()
        if not field.is_required()
        and name != "content"
        and (
            (default := field.get_default(call_default_factory=True)) in (None, False, {}, [])
            or name == "type"
        )
    }
    for kind, cls in _CLASSES.items()
}


def compact_stored(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored-message dict without the ``data`` fields that hold the empty default of the
    class ``messages_from_dict`` builds for its type (``"additional_kwargs": {}``,
    ``"name": null``, ``data.type``...): the same message when read, in Python and in
    LangChain.js, in about 100 to 200 fewer bytes each. A dict of another type, or already
    compact, comes back as it is."""
    defaults = _DEFAULTS.get(stored.get("type"))  # type: ignore[arg-type]
    data = stored.get("data")
    if defaults is None or not isinstance(data, dict):
        return stored
    kept = {
        name: value
        for name, value in data.items()
        if name not in defaults
        or type(value) is not type(defaults[name])
        or value != defaults[name]
    }
    return {**stored, "data": kept}


def stored_dict(message: BaseMessage) -> dict[str, Any]:
    """LangChain's stored-message dict of one message, in its compact form for LangChain's
    own classes (a subclass, whose defaults may differ, is written whole)."""
    stored = message_to_dict(message)
    if _CLASSES.get(message.type) is type(message):
        return compact_stored(stored)
    return stored


def canonical_json(stored: bytes) -> bytes:
    """The JSON :func:`encode_message` writes for a stored message's JSON (written by this
    version, or whole by ``message_to_dict`` before it): equal messages give equal bytes.
    A whole dict holds its type twice (``"type":"ai","name":``); other JSON is returned as
    it is, unread."""
    start = stored.find(b'"type":"')
    if start < 0:
        return stored
    kind = stored[start + 8 : stored.find(b'"', start + 8)]
    if b'"type":"' + kind + b'","name":' not in stored[start + 8 :]:
        return stored
    try:
        decoded = json.loads(stored)
    except ValueError:
        return stored
    return encode_stored(compact_stored(decoded)) if isinstance(decoded, dict) else stored


def to_stored(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The stored-message dicts of ``messages`` (what ``append_call`` sends)."""
    return [stored_dict(message) for message in messages]


def encode_message(message: BaseMessage, position: int = 1) -> bytes:
    """The stored-message JSON of one message, compact UTF-8 bytes."""
    return encode_stored(stored_dict(message), position)


def to_messages(stored: list[dict[str, Any]]) -> list[BaseMessage]:
    """LangChain messages from stored-message dicts, whatever client wrote them.

    A type LangChain Python does not know (LangChain.js's ``generic``, or a type another
    language invented) becomes a :class:`ChatMessage` whose role is that type, so
    reading a session never fails on one odd message and no text is lost.
    """
    try:
        return messages_from_dict(stored)
    except (ValueError, TypeError, KeyError):
        return [_to_message(item) for item in stored]


def _to_message(item: dict[str, Any]) -> BaseMessage:
    try:
        return messages_from_dict([item])[0]
    except (ValueError, TypeError, KeyError):
        data = dict(item.get("data") or {})
        role = str(data.pop("role", None) or item.get("type"))
        data.pop("type", None)
        try:
            return ChatMessage(role=role, **data)
        except (ValueError, TypeError):
            return ChatMessage(role=role, content=_plain_content(data.get("content", "")))


def _plain_content(content: Any) -> str | list[str | dict[str, Any]]:
    """Content LangChain accepts: a string, or a list of strings and objects; anything
    else another client stored (``{}``, a list of numbers) as its JSON text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, str | dict) for part in content):
        return content
    return json.dumps(content, ensure_ascii=False)


def from_records(records: Sequence[StoredRecord]) -> list[StoredMessage]:
    """Typed records (id, time, LangChain message) from the wire layer's plain ones."""
    messages = to_messages([record.stored for record in records])
    return [
        StoredMessage(id=record.id, timestamp=record.timestamp, message=message)
        for record, message in zip(records, messages, strict=True)
    ]


def decode_messages(reply: Reply) -> list[BaseMessage]:
    """LangChain messages from a range reply, oldest first."""
    return to_messages(decode_jsons(reply))


def decode_stored(reply: Reply) -> list[StoredMessage]:
    """Typed records (id, time, message) from a range or search reply."""
    return from_records(decode_records(reply))


def decode_entries(entries: Reply) -> list[StoredMessage]:
    """Typed records from raw stream entries ``[(id, {field: value}), ...]`` (XREAD, XRANGE)."""
    return decode_stored(entries_reply(entries))


def decode_search(reply: Reply) -> list[dict[str, Any]]:
    """Search hits as dicts: ``id``, ``timestamp``, ``type``, ``content`` and ``message``."""
    return [
        {
            "id": record.id,
            "timestamp": record.timestamp,
            "type": record.message.type,
            "content": record.message.content,
            "message": record.message,
        }
        for record in decode_stored(reply)
    ]


def split_removals(
    messages: Sequence[BaseMessage],
) -> list[tuple[bool, list[BaseMessage]]]:
    """``messages`` cut into runs, in order: ``(True, removals)`` for ``RemoveMessage`` runs,
    ``(False, messages)`` for runs of messages to store."""
    runs: list[tuple[bool, list[BaseMessage]]] = []
    for message in messages:
        removing = isinstance(message, RemoveMessage)
        if removing and not message.id:
            raise InvalidInputError("a RemoveMessage needs the id of the message to remove")
        if runs and runs[-1][0] == removing:
            runs[-1][1].append(message)
        else:
            runs.append((removing, [message]))
    return runs
