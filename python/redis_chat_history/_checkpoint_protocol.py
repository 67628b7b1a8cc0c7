"""The chathist_cp_* calls of a LangGraph thread, without I/O (library 1.4).

A thread is a chat session (``:m`` ``:x`` ``:i``) plus three keys of the same hash
tag: ``:c`` (checkpoint records and channel values), ``:w`` (pending writes, one field
per checkpoint) and ``:k`` (the checkpoints in id order). Records, writes and runs of
messages are encoded and decoded here; docs/PROTOCOL.md ("Checkpoints") is the
written form of the same contract.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import InvalidInputError
from ._protocol import KEY_SUFFIXES, Call, as_text, session_keys

CP_PUT = "chathist_cp_put"
CP_WRITES = "chathist_cp_writes"
CP_GET = "chathist_cp_get"
CP_LIST = "chathist_cp_list"
CP_DROP = "chathist_cp_drop"
CP_DUMP = "chathist_cp_dump"
CP_LOAD = "chathist_cp_load"
CP_DELETE = "chathist_cp_delete"
CP_TOUCH = "chathist_cp_touch"

THREAD_SUFFIXES = (*KEY_SUFFIXES, ":c", ":w", ":k")
#: Checkpoints one list call returns at most (the library's page).
LIST_PAGE = 64
#: Fields one drop or load call carries at most.
MAX_FIELDS = 1000
#: A write value that holds runs of the session's messages, not serialized bytes.
REFS_MARK = b"\x01M"

Keys = tuple[str, ...]


def thread_keys(key_prefix: str, thread_id: str) -> Keys:
    """The six keys of a thread: its chat session's three, then ``:c``, ``:w``, ``:k``."""
    session = session_keys(key_prefix, thread_id)
    base = session[0][: -len(KEY_SUFFIXES[0])]
    return (*session, base + ":c", base + ":w", base + ":k")


def member(checkpoint_ns: str, checkpoint_id: str) -> bytes:
    """A checkpoint's name in a thread: ``<ns> NUL <id>``."""
    if "\0" in checkpoint_ns or not checkpoint_id or "\0" in checkpoint_id:
        raise InvalidInputError("checkpoint_ns and checkpoint_id must not hold NUL bytes")
    return checkpoint_ns.encode() + b"\0" + checkpoint_id.encode()


def split_member(value: bytes | str) -> tuple[str, str]:
    """``(checkpoint_ns, checkpoint_id)`` of a member."""
    raw = value.encode() if isinstance(value, str) else value
    ns, _, checkpoint_id = raw.partition(b"\0")
    return ns.decode(), checkpoint_id.decode()


def blob_field(checkpoint_ns: str, channel: str, version: str | int | float) -> bytes:
    """The ``:c`` field of one version of a channel's value."""
    return b"b" + checkpoint_ns.encode() + b"\0" + channel.encode() + b"\0" + str(version).encode()


def digest(json_bytes: bytes) -> bytes:
    """What identifies a stored message's exact JSON in a list (a SHA-1)."""
    return hashlib.sha1(json_bytes).digest()


# -- records ------------------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    """A checkpoint record: its header (message runs and blob versions) and payload."""

    runs: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, str] = field(default_factory=dict)
    payload: bytes = b""

    def encode(self) -> bytes:
        """``<header bytes>\\n<header><payload>``, the form the library stores."""
        for name in [*self.runs, *self.blobs]:
            if not name or "\t" in name or "\n" in name:
                raise InvalidInputError(f"channel name {name!r} holds a tab or newline")
        lines = [f"M{name}\t{runs}\n" for name, runs in self.runs.items()]
        lines += [f"B{name}\t{version}\n" for name, version in self.blobs.items()]
        header = "".join(lines).encode()
        return str(len(header)).encode() + b"\n" + header + self.payload

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        """A stored record."""
        size, _, rest = raw.partition(b"\n")
        header, payload = rest[: int(size)], rest[int(size) :]
        record = cls(payload=payload)
        for line in header.decode().split("\n")[:-1]:
            name, _, value = line[1:].partition("\t")
            (record.runs if line[0] == "M" else record.blobs)[name] = value
        return record


def split_runs(runs: str) -> list[str]:
    """The runs ``a..b`` of a runs text."""
    return runs.split(" ") if runs else []


@dataclass(slots=True)
class ListPlan:
    """How a message list is sent: its runs text (with ``#k`` for new messages) and the
    JSON of the messages the call stores."""

    runs: str
    new: list[bytes]
    digests: list[bytes]
    ids: list[str]


def plan_list(
    jsons: Sequence[bytes], known: dict[bytes, list[tuple[str, int, int]]], first_new: int
) -> ListPlan:
    """Runs for a list of message JSONs, given what the parent's lists hold.

    ``known`` maps a message digest to where the parent holds it: (stream id, run
    number, position) entries. A message found there is referenced; consecutive ones
    stay one run when they were consecutive in the same run of the parent. Others
    are new, numbered from ``first_new`` (``#k`` in the runs), and stored by the call.
    """
    runs: list[list[str]] = []
    new: list[bytes] = []
    digests: list[bytes] = []
    ids: list[str] = []
    used: set[tuple[int, int]] = set()
    previous: tuple[int, int] | None = None  # (run, position) of the previous item
    for json_bytes in jsons:
        key = digest(json_bytes)
        digests.append(key)
        place = next(
            (
                item
                for item in known.get(key, ())
                if (item[1], item[2]) not in used
                and (previous is None or (item[1], item[2]) == (previous[0], previous[1] + 1))
            ),
            None,
        ) or next((item for item in known.get(key, ()) if (item[1], item[2]) not in used), None)
        if place is not None:
            stream_id, run, position = place
            used.add((run, position))
            ids.append(stream_id)
            if runs and previous is not None and (run, position) == (previous[0], previous[1] + 1):
                runs[-1][1] = stream_id
            else:
                runs.append([stream_id, stream_id])
            previous = (run, position)
        else:
            number = f"#{first_new + len(new)}"
            ids.append(number)
            new.append(json_bytes)
            if runs and runs[-1][1].startswith("#") and previous is None:
                runs[-1][1] = number
            else:
                runs.append([number, number])
            previous = None
    return ListPlan(" ".join(f"{a}..{b}" for a, b in runs), new, digests, ids)


def numbered(ids: Sequence[str], runs: str) -> list[int]:
    """The run number of each item of a list, given every item's stream id and the
    list's runs as stored (a run ends at the item holding its end id)."""
    numbers: list[int] = []
    ends = [run.partition("..")[2] for run in split_runs(runs)]
    run = 0
    for stream_id in ids:
        numbers.append(run)
        if run < len(ends) and stream_id == ends[run]:
            run += 1
    return numbers


def view_of(runs: str, entries: dict[str, list[tuple[str, bytes]]]) -> list[tuple[str, bytes, int]]:
    """A list's items as (stream id, JSON, run number), from its runs and their entries."""
    items = []
    for number, run in enumerate(split_runs(runs)):
        for stream_id, json_bytes in entries.get(run, ()):
            items.append((stream_id, json_bytes, number))
    return items


# -- writes -------------------------------------------------------------------------------


def netstrings(raw: bytes) -> list[bytes]:
    """The netstrings ``<length>:<bytes>`` of a stored writes field."""
    out, at = [], 0
    while at < len(raw):
        colon = raw.index(b":", at)
        size = int(raw[at:colon])
        out.append(raw[colon + 1 : colon + 1 + size])
        at = colon + 1 + size
    return out


@dataclass(frozen=True, slots=True)
class StoredWrite:
    """One pending write as stored: task, index, path, channel and value (bytes or runs)."""

    task_id: str
    index: int
    task_path: str
    channel: str
    value: bytes

    @property
    def runs(self) -> str | None:
        """The runs of a write whose value is a message list kept in the session."""
        return self.value[2:].decode() if self.value.startswith(REFS_MARK) else None


def decode_writes(raw: bytes) -> list[StoredWrite]:
    """A checkpoint's pending writes, in the order they were stored."""
    items = netstrings(raw)
    return [
        StoredWrite(
            items[i].decode(),
            int(items[i + 1]),
            items[i + 2].decode(),
            items[i + 3].decode(),
            items[i + 4],
        )
        for i in range(0, len(items), 5)
    ]


# -- calls --------------------------------------------------------------------------------


def _ttl_args(ttl: int | None) -> list[Any]:
    return ["TTL", ttl] if ttl else []


def put_call(
    keys: Keys,
    name: bytes,
    record: bytes,
    blobs: Sequence[tuple[bytes, bytes]],
    messages: Sequence[bytes],
    ttl: int | None,
) -> Call:
    """Store a checkpoint, its new channel values and its new messages (one FCALL)."""
    args: list[Any] = [*_ttl_args(ttl), "CHECKPOINT", name, record]
    for blob, value in blobs:
        args += ["BLOB", blob, value]
    if messages:
        args += ["MESSAGES", *messages]
    return Call(CP_PUT, keys, tuple(args), read_only=False)


def writes_call(
    keys: Keys,
    name: bytes,
    writes: Sequence[tuple[str, int, str, str, bytes]],
    messages: Sequence[bytes],
    ttl: int | None,
) -> Call:
    """Store a task's writes ``(task id, index, task path, channel, value)`` (one FCALL)."""
    args: list[Any] = [*_ttl_args(ttl), "WRITES", name, len(writes)]
    for task_id, index, task_path, channel, value in writes:
        args += [task_id, index, task_path, channel, value]
    if messages:
        args += ["MESSAGES", *messages]
    return Call(CP_WRITES, keys, tuple(args), read_only=False)


def get_call(keys: Keys, checkpoint_ns: str, checkpoint_id: str | None) -> Call:
    """One checkpoint (the latest of the namespace without an id), all a reader needs."""
    if checkpoint_id is None:
        if "\0" in checkpoint_ns:
            raise InvalidInputError("checkpoint_ns must not hold NUL bytes")
        return Call(CP_GET, keys, ("LATEST", checkpoint_ns), read_only=True)
    return Call(CP_GET, keys, (member(checkpoint_ns, checkpoint_id),), read_only=True)


def list_call(keys: Keys, checkpoint_ns: str | None, before: bytes | None, count: int) -> Call:
    """A page of checkpoints, newest first (``checkpoint_ns`` None: every namespace)."""
    ns: Any = "ALL" if checkpoint_ns is None else checkpoint_ns
    return Call(CP_LIST, keys, (ns, before or b"", max(1, min(count, LIST_PAGE))), read_only=True)


def drop_call(keys: Keys, members: Sequence[bytes], blobs: Sequence[bytes] = ()) -> Call:
    """Delete checkpoints (records, writes, order entries) and channel values."""
    args: list[Any] = list(members)
    if blobs:
        args += ["BLOBS", *blobs]
    return Call(CP_DROP, keys, tuple(args), read_only=False)


def dump_call(keys: Keys, which: str, cursor: bytes | str) -> Call:
    """A page of raw ``:c`` (``C``) or ``:w`` (``W``) fields, by HSCAN cursor."""
    return Call(CP_DUMP, keys, (which, cursor), read_only=True)


def load_call(
    keys: Keys,
    fields: Sequence[tuple[str, bytes, bytes]],
    entries: Sequence[tuple[str, bytes]],
    ttl: int | None,
) -> Call:
    """Store raw fields (``C``/``W``, field, value) and session entries (id, JSON)."""
    args: list[Any] = list(_ttl_args(ttl))
    for which, name, value in fields:
        args += [which, name, value]
    if entries:
        args.append("ENTRIES")
        for stream_id, json_bytes in entries:
            args += [stream_id, json_bytes]
    return Call(CP_LOAD, keys, tuple(args), read_only=False)


def delete_call(keys: Keys, keep_messages: bool = False) -> Call:
    """Delete a thread: every key, or (``keep_messages``) its checkpoints only."""
    return Call(CP_DELETE, keys, ("CHECKPOINTS" if keep_messages else "ALL",), read_only=False)


def touch_call(keys: Keys, seconds: int) -> Call:
    """Renew the TTL of every key of a thread."""
    return Call(CP_TOUCH, keys, (seconds,), read_only=False)


# -- replies ------------------------------------------------------------------------------


@dataclass(slots=True)
class RawCheckpoint:
    """A checkpoint as the library replies it, before the saver's serde reads it."""

    checkpoint_ns: str
    checkpoint_id: str
    record: Record
    writes: list[StoredWrite]
    blobs: dict[str, bytes]
    entries: dict[str, list[tuple[str, bytes]]]


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def decode_checkpoint(reply: Any) -> RawCheckpoint | None:
    """A chathist_cp_get reply (or one item of a list reply); None for no checkpoint."""
    if not reply:
        return None
    name, record, writes, blobs, messages = reply
    ns, checkpoint_id = split_member(_raw(name))
    entries: dict[str, list[tuple[str, bytes]]] = {}
    for i in range(0, len(messages), 2):
        flat = messages[i + 1]
        entries[as_text(messages[i])] = [
            (as_text(flat[j]), _raw(flat[j + 1])) for j in range(0, len(flat), 2)
        ]
    return RawCheckpoint(
        ns,
        checkpoint_id,
        Record.decode(_raw(record)),
        decode_writes(_raw(writes)),
        {as_text(blobs[i]): _raw(blobs[i + 1]) for i in range(0, len(blobs), 2)},
        entries,
    )


def decode_page(
    reply: Any, shared: dict[str, list[tuple[str, bytes]]]
) -> tuple[bytes | None, list[RawCheckpoint]]:
    """A chathist_cp_list reply: where to go on (None at the end) and its checkpoints.

    A run's entries come once per page; ``shared`` collects them so every checkpoint of
    the page sees them all.
    """
    following = _raw(reply[0]) or None
    items = [decode_checkpoint(item) for item in reply[1:]]
    found = [item for item in items if item is not None]
    for item in found:
        shared.update(item.entries)
    for item in found:
        item.entries = shared
    return following, found
