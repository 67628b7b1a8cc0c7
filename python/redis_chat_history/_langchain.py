"""LangChain messages to and from the stored-message dicts of the wire layer.

``_protocol`` speaks only dicts and plain records; this module is the one place
that knows LangChain's message classes: it serializes messages with
``message_to_dict``, reads them back with ``messages_from_dict`` (tolerating types
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
    BaseMessage,
    ChatMessage,
    RemoveMessage,
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


def to_stored(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain's stored-message dicts of ``messages`` (what ``append_call`` sends)."""
    return [message_to_dict(message) for message in messages]


def encode_message(message: BaseMessage, position: int = 1) -> bytes:
    """LangChain's stored-message JSON of one message, compact UTF-8 bytes."""
    return encode_stored(message_to_dict(message), position)


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
