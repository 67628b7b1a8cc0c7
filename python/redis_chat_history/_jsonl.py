"""The JSON Lines format of exported sessions, without I/O.

One line per message, in stream order, sessions one after another::

    {"session": "user_123", "id": "1700000000000-0", "timestamp": "2023-11-14T22:13:20.000+00:00",
     "message": {"type": "human", "data": {"content": "Hi", ...}}}

``message`` is LangChain's stored-message dict exactly as the session holds it (every
field, unknown ones included); ``id`` is the message's stream id, which carries the
time of the append, so an import under the same ids restores order and timestamps.
``timestamp`` repeats that time in ISO 8601 (UTC, milliseconds) for people and tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidInputError
from ._protocol import id_time, stream_id_key


@dataclass(frozen=True, slots=True)
class ExportedMessage:
    """One line of an export: the session it belongs to, its stream id and stored JSON."""

    session: str
    id: str
    message: bytes


def encode_json(value: Any) -> str:
    """Compact JSON that keeps non-ASCII text as is (the way messages are stored)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def timestamp_text(stream_id: str) -> str:
    """The ISO 8601 time (UTC, milliseconds) of a stream id."""
    return id_time(stream_id).isoformat(timespec="milliseconds")


def export_line(session: str, stream_id: str, stored: dict[str, Any]) -> str:
    """One message as an export line (no newline)."""
    return encode_json(
        {
            "session": session,
            "id": stream_id,
            "timestamp": timestamp_text(stream_id),
            "message": stored,
        }
    )


def parse_line(text: str, line_number: int) -> ExportedMessage:
    """One export line as an :class:`ExportedMessage`; errors name the line and the field."""

    def bad(what: str) -> InvalidInputError:
        return InvalidInputError(f"line {line_number}: {what}")

    try:
        record = json.loads(text)
    except ValueError:
        raise bad("not JSON") from None
    if not isinstance(record, dict):
        raise bad("not a JSON object")
    session, stream_id, message = record.get("session"), record.get("id"), record.get("message")
    if not isinstance(session, str) or not session:
        raise bad('"session" must be a non-empty string')
    if not isinstance(stream_id, str) or "-" not in stream_id:
        raise bad('"id" must be a stream id "ms-seq"')
    try:
        stream_id_key(stream_id, 0)
        expected = timestamp_text(stream_id)
    except (InvalidInputError, ValueError, OverflowError):
        raise bad(
            f'"id" {stream_id!r} is not a stream id "ms-seq" of a representable time'
        ) from None
    if not isinstance(message, dict):
        raise bad('"message" must be a stored-message object')
    timestamp = record.get("timestamp")
    if timestamp is not None and timestamp != expected:
        raise bad(
            f'"timestamp" {timestamp!r} is not the time of id {stream_id} ({expected}); '
            "the id carries the time"
        )
    try:
        stored = encode_json(message).encode("utf-8")
    except UnicodeEncodeError:
        raise bad('"message" holds text that is not valid Unicode') from None
    return ExportedMessage(session, stream_id, stored)
