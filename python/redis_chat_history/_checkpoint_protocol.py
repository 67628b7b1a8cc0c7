"""The chathist_cp_* calls of a LangGraph thread, without I/O (library 1.5).

A thread is a chat session (``:m`` ``:x`` ``:i``) plus three keys of the same hash
tag: ``:c`` (checkpoint records and channel values), ``:w`` (pending writes, a field per
task and call: a group) and ``:k`` (the checkpoints in id order). Records, writes and runs of
messages are encoded and decoded here; docs/PROTOCOL.md ("Checkpoints") is the
written form of the same contract.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._checkpoint_words import CANONICAL_UUID, decode_name, encode_name
from ._errors import ChatHistoryError, InvalidInputError
from ._protocol import KEY_SUFFIXES, Call, as_text, session_keys

CP_PUT = "chathist_cp_put"
CP_WRITES = "chathist_cp_writes"
CP_GET = "chathist_cp_get"
CP_LIST = "chathist_cp_list"
CP_MORE = "chathist_cp_more"
CP_DROP = "chathist_cp_drop"
CP_DUMP = "chathist_cp_dump"
CP_LOAD = "chathist_cp_load"
CP_DELETE = "chathist_cp_delete"
CP_TOUCH = "chathist_cp_touch"
CP_CHAIN = "chathist_cp_chain"

THREAD_SUFFIXES = (*KEY_SUFFIXES, ":c", ":w", ":k")
#: Checkpoints one list call returns at most (the library's page).
LIST_PAGE = 64
#: Channels one chain call walks for at most.
CHAIN_CHANNELS = 64
#: Fields one drop or load call carries at most.
MAX_FIELDS = 1000
#: A write value that holds runs of the session's messages, not serialized bytes.
REFS_MARK = b"\x01M"
#: A shaped value (library 1.6): ``\x01T <runs> \n <template>``, a value or write whose
#: long texts are the contents of the runs' messages, one run per text.
SHAPE_MARK = b"\x01T"

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


def record_field(name: bytes) -> bytes:
    """The ``:c`` field the library (1.8) stores a checkpoint's record in, by its member."""
    ns, _, checkpoint_id = name.partition(b"\0")
    if not CANONICAL_UUID.fullmatch(checkpoint_id):
        return b"c" + name
    return b"c" + ns + b"\0\xff" + uuid.UUID(checkpoint_id.decode()).bytes


def record_member(field: bytes) -> bytes | None:
    """The member a ``:c`` record field names, ``c<ns>\\0<id>`` or (library 1.8, an id in
    canonical UUID form) ``c<ns>\\0\\xff`` and the id's 16 bytes; None for another field."""
    if not field.startswith(b"c") or b"\0" not in field:
        return None
    ns, _, rest = field[1:].partition(b"\0")
    if not rest.startswith(b"\xff"):
        return field[1:]
    if len(rest) != 17:
        return None
    return ns + b"\0" + str(uuid.UUID(bytes=rest[1:])).encode()


def blob_field(checkpoint_ns: str, channel: str, version: str | int | float) -> bytes:
    """The ``:c`` field of one version of a channel's value."""
    return b"b" + checkpoint_ns.encode() + b"\0" + channel.encode() + b"\0" + str(version).encode()


def digest(json_bytes: bytes) -> bytes:
    """What identifies a stored message's exact JSON in a list (a SHA-1)."""
    return hashlib.sha1(json_bytes).digest()


# -- records ------------------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    """A checkpoint record: its header (message runs, blob versions, the channels whose
    values the payload holds, the parent's id) and payload."""

    runs: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, str] = field(default_factory=dict)
    payload: bytes = b""
    held: list[str] = field(default_factory=list)  # "V" lines (1.5)
    parent: str | None = None  # the "P" line (1.5)
    count: bytes | None = None  # a stored record's count of writes: "W" (1.7), never sent

    def encode(self) -> bytes:
        """``<header bytes>\\n<header><payload>``, the form the library stores."""
        for name in [*self.runs, *self.blobs, *self.held]:
            if not name or "\t" in name or "\n" in name:
                raise InvalidInputError(f"channel name {name!r} holds a tab or newline")
        lines = [f"M{name}\t{runs}\n" for name, runs in self.runs.items()]
        lines += [f"B{name}\t{version}\n" for name, version in self.blobs.items()]
        lines += [f"V{name}\n" for name in self.held]
        if self.parent is not None:
            lines.append(f"P{self.parent}\n")
        if self.count is not None:
            lines.append(f"W{len(self.count)}\n")
        header = "".join(lines).encode()
        return str(len(header)).encode() + b"\n" + header + self.payload + (self.count or b"")

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        """A stored record."""
        size, _, rest = raw.partition(b"\n")
        header, payload = rest[: int(size)], rest[int(size) :]
        record = cls(payload=payload)
        count = held_count(raw)
        if count is not None:
            record.payload, record.count = payload[: -len(count)], count
        for line in header.decode().split("\n")[:-1]:
            kind, name, value = line[0], *line[1:].partition("\t")[::2]
            if kind == "M":
                record.runs[name] = value
            elif kind == "B":
                record.blobs[name] = value
            elif kind == "V":
                record.held.append(name)
            elif kind == "P":
                record.parent = name
        return record


def split_runs(runs: str) -> list[str]:
    """The runs ``a..b`` (or ``a``, library 1.8: a run of one entry) of a runs text."""
    return runs.split(" ") if runs else []


def run_ends(run: str) -> tuple[str, str]:
    """The first and last ends of a run: ``a..b``, or ``a`` alone for ``a..a``."""
    first, dots, last = run.partition("..")
    return (first, last) if dots else (first, first)


@dataclass(slots=True)
class ListPlan:
    """How a message list is sent: its runs text (with ``#k`` for new messages) and the
    JSON of the messages the call stores."""

    runs: str
    new: list[bytes]
    digests: list[bytes]
    ids: list[str]


def plan_list(
    jsons: Sequence[bytes],
    known: dict[bytes, list[tuple[str, int, int]]],
    first_new: int,
    keys: Sequence[bytes] | None = None,
) -> ListPlan:
    """Runs for a list of message JSONs, given what the parent's lists hold.

    ``known`` maps a message digest to where the parent holds it: (stream id, run
    number, position) entries. A message found there is referenced; consecutive ones
    stay one run when they were consecutive in the same run of the parent. Others
    are new, numbered from ``first_new`` (``#k`` in the runs), and stored by the call.
    ``keys``: each message's digest, if not that of its JSON.
    """
    runs: list[list[str]] = []
    new: list[bytes] = []
    digests: list[bytes] = []
    ids: list[str] = []
    used: set[tuple[int, int]] = set()
    previous: tuple[int, int] | None = None  # (run, position) of the previous item
    for number_in_list, json_bytes in enumerate(jsons):
        key = digest(json_bytes) if keys is None else keys[number_in_list]
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


#: Run segments one write call may resolve: SEGMENTS and two per message it carries
#: (the library's CP.SEGMENTS; more is refused with TOOBIG).
SEGMENTS = 4096


def segments_allowed(messages: int) -> int:
    """The most run segments a call carrying ``messages`` messages may resolve."""
    return SEGMENTS + 2 * messages


def segments(texts: Iterable[str]) -> int:
    """The segments runs texts resolve through: a run 1, ``#i..#j`` j - i + 1."""
    total = 0
    for text in texts:
        for run in split_runs(text):
            first, last = run_ends(run)
            if first.startswith("#"):
                total += int(last[1:]) - int(first[1:]) + 1
            else:
                total += 1
    return total


def numbered(ids: Sequence[str], runs: str) -> list[int]:
    """The run number of each item of a list, given every item's stream id and the
    list's runs as stored (a run ends at the item holding its end id)."""
    numbers: list[int] = []
    ends = [run_ends(run)[1] for run in split_runs(runs)]
    run = 0
    for stream_id in ids:
        numbers.append(run)
        if run < len(ends) and stream_id == ends[run]:
            run += 1
    return numbers


def stream_key(stream_id: str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as numbers, for ordering."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


class Entries:
    """Stream entries read for a reply (and its continuations), by id.

    Every entry of the stream from ``a`` to ``b`` belongs to the run ``a..b``; a reply
    and its continuations read each run completely, so a run's entries are the
    entries held here with ids from ``a`` to ``b``.
    """

    def __init__(self) -> None:
        self._json: dict[str, bytes] = {}
        self._order: list[tuple[int, int]] | None = []
        self._ids: list[str] = []

    def add(self, stream_id: str, json_bytes: bytes) -> None:
        if stream_id not in self._json:
            self._json[stream_id] = json_bytes
            self._order = None

    def __len__(self) -> int:
        return len(self._json)

    def run(self, run: str) -> Iterator[tuple[str, bytes]]:
        """The entries of a run ``a..b`` (or ``a``), in stream order."""
        if self._order is None:
            self._ids = sorted(self._json, key=stream_key)
            self._order = [stream_key(item) for item in self._ids]
        first, last = run_ends(run)
        start = bisect.bisect_left(self._order, stream_key(first))
        stop = bisect.bisect_right(self._order, stream_key(last))
        for stream_id in self._ids[start:stop]:
            yield stream_id, self._json[stream_id]


def view_of(runs: str, entries: Entries) -> list[tuple[str, bytes, int]]:
    """A list's items as (stream id, JSON, run number), from its runs and their entries."""
    items = []
    for number, run in enumerate(split_runs(runs)):
        for stream_id, json_bytes in entries.run(run):
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
        """The runs of a write whose value is a message list kept in the session, or a
        shaped value."""
        return value_runs(self.value)


def value_runs(value: bytes) -> str | None:
    """The runs a stored write holds (a message list's, a shaped value's), else None."""
    if value.startswith(REFS_MARK):
        return value[2:].decode()
    found = shaped(value)
    return " ".join(found[0]) if found else None


_RUN = re.compile(r"[0-9]+-[0-9]+(\.\.[0-9]+-[0-9]+)?")


def shaped(value: bytes) -> tuple[list[str], bytes] | None:
    """A shaped value's runs (one per text) and template, or None for another value.
    A malformed one (the library makes none; a forged copy could) is refused."""
    if not value.startswith(SHAPE_MARK):
        return None
    runs, newline, template = value[2:].partition(b"\n")
    items = split_runs(runs.decode("ascii", "replace"))
    if not newline or not template or not all(_RUN.fullmatch(item) for item in items):
        raise ChatHistoryError(f"a stored shaped value is malformed: {value[:80]!r}")
    return items, template


def decode_write(raw: bytes) -> StoredWrite:
    """One pending write as the library replies it: five netstrings."""
    items = netstrings(raw)
    return StoredWrite(
        decode_name(items[0]), int(items[1]), decode_name(items[2]), decode_name(items[3]), items[4]
    )


def decode_group(name: bytes, value: bytes) -> list[StoredWrite]:
    """The writes of a stored group: its ``:w`` field ``<ns>\\0<id>\\0=<name>``, where the
    name is ``<task id>\\0<first index>[\\0<k>]`` and the value netstrings of the task path,
    the first write's channel and value, then index, channel and value of each other write."""
    task, first = name.split(b"\0")[:2]
    path, *items = netstrings(value)
    indexes = [first, *items[2::3]]
    return [
        StoredWrite(decode_name(task), int(index), decode_name(path), decode_name(channel), data)
        for index, channel, data in zip(indexes, items[0::3], items[1::3], strict=True)
    ]


def decode_write_fields(fields: Iterable[tuple[bytes, bytes]]) -> list[StoredWrite]:
    """The writes stored in raw ``:w`` fields (an ``HSCAN`` of a thread's ``:w``, or a dump):
    the groups in fields of their own, and the first groups folded into their checkpoint's
    count (``<n>\0<name>\0=<group>``, 1.6)."""
    writes: list[StoredWrite] = []
    for name, value in fields:
        if b"\0=" in name:
            writes += decode_group(name.partition(b"\0=")[2], value)
        elif name.count(b"\0") == 1 and b"\0=" in value:
            name, _, group = value.partition(b"\0")[2].partition(b"\0=")
            writes += decode_group(name, group)
    return writes


def held_count(record: bytes) -> bytes | None:
    """The count of writes a stored record holds (library 1.7, ``INRECORD``): its header's
    last line ``W<bytes>`` says that its last ``<bytes>`` bytes are the count. The library
    replies records without it."""
    size, newline, rest = record.partition(b"\n")
    if not newline or not size.isdigit():
        return None
    lines = rest[: int(size)].split(b"\n")[:-1]
    last = lines[-1] if lines else b""
    if not last.startswith(b"W") or not last[1:].isdigit():
        return None
    return record[-int(last[1:]) :] if int(last[1:]) else None


def decode_record_fields(fields: Iterable[tuple[bytes, bytes]]) -> list[StoredWrite]:
    """The writes that checkpoint records hold (an ``HSCAN`` of a thread's ``:c``, or a
    dump), each the count of its checkpoint's only group (1.7)."""
    counts = (held_count(value) for name, value in fields if name.startswith(b"c"))
    return decode_write_fields((b"\0", count) for count in counts if count)


def resolve_writes(writes: Iterable[StoredWrite]) -> list[StoredWrite]:
    """A checkpoint's writes as LangGraph keeps them: one per (task id, index), the first
    stored, or the last for a negative index (a special channel that replaces). The library
    keeps them so within a group; two groups of a task that no call read together (a group
    too long to merge into) may both hold one."""
    kept: dict[tuple[str, int], StoredWrite] = {}
    for write in writes:
        key = (write.task_id, write.index)
        if key not in kept or write.index < 0:
            kept[key] = write
    return list(kept.values())


# -- calls --------------------------------------------------------------------------------


def _ttl_args(ttl: int | None) -> list[Any]:
    return ["TTL", ttl] if ttl else []


def _noindex_args(noindex: bool) -> list[Any]:
    return ["NOINDEX"] if noindex else []


@dataclass(frozen=True, slots=True)
class Settle:
    """A pending write of the parent checkpoint whose value is a list of messages that the
    put stores: the library replaces its value by runs of their stream entries, if the value
    stored is still the one whose SHA-1 is ``value_sha1``."""

    parent: bytes
    task_id: str
    index: int
    value_sha1: str
    runs: str  # "#k..#k" items naming messages of the put
    first: int | None = None  # the index of the first write of its group, if another
    #: A shaped value's template (SHAPE, library 1.6): the runs then name one message per
    #: placeholder, whose content the placeholder's text is.
    template: bytes | None = None


@dataclass(frozen=True, slots=True)
class BlobShape:
    """A channel value stored before (SHAPEBLOB, library 1.6): if its SHA-1 is still
    ``value_sha1``, the library stores it shaped (``template``, one run per text)."""

    field: bytes
    value_sha1: str
    runs: str
    template: bytes


def put_call(
    keys: Keys,
    name: bytes,
    record: bytes,
    blobs: Sequence[tuple[bytes, bytes]],
    messages: Sequence[bytes],
    ttl: int | None,
    settles: Sequence[Settle] = (),
    noindex: bool = False,
    shapes: Sequence[BlobShape] = (),
    in_record: bool = False,
) -> Call:
    """Store a checkpoint, its new channel values and its new messages (one FCALL).
    ``noindex``: a session the call creates keeps no search index (library 1.5).
    ``settles`` and ``shapes``: a parent's writes and values that name messages of this
    call (SETTLE, SHAPE, SHAPEBLOB). ``in_record`` (library 1.7): writes stored before the
    record, one short group, go into the record (see :func:`writes_call`)."""
    args: list[Any] = [*_ttl_args(ttl), *_noindex_args(noindex)]
    args += ["INRECORD"] if in_record else []
    args += ["CHECKPOINT", name, record]
    for blob, value in blobs:
        args += ["BLOB", blob, value]
    for settle in settles:
        write = encode_name(settle.task_id) + b"\0" + str(settle.index).encode()
        if settle.first is not None and settle.first != settle.index:
            write += b"\0" + str(settle.first).encode()
        if settle.template is None:
            args += ["SETTLE", settle.parent, write, settle.value_sha1, settle.runs]
        else:
            args += ["SHAPE", settle.parent, write, settle.value_sha1, settle.runs]
            args.append(settle.template)
    for shape in shapes:
        args += ["SHAPEBLOB", shape.field, shape.value_sha1, shape.runs, shape.template]
    if messages:
        args += ["MESSAGES", *messages]
    return Call(CP_PUT, keys, tuple(args), read_only=False)


def writes_call(
    keys: Keys,
    name: bytes,
    writes: Sequence[tuple[str, int, str, str, bytes]],
    messages: Sequence[bytes],
    ttl: int | None,
    known: Sequence[bytes] = (),
    if_known: Sequence[tuple[int, int, int]] = (),
    noindex: bool = False,
    fold: bool = False,
    in_record: bool = False,
    shaped: Sequence[tuple[int, str, bytes]] = (),
) -> Call:
    """Store a task's writes ``(task id, index, task path, channel, value)`` (one FCALL).

    ``messages`` are stored in the session (for values holding runs); ``known`` are only
    looked up: ``if_known`` items ``(write, first, last)`` (1-based) let a write keep runs
    of known messages ``first`` to ``last`` instead of its value when the session holds
    them all. A call carries ``messages`` or ``known``, not both. ``noindex`` as in
    :func:`put_call`. ``fold`` (library 1.6): the checkpoint's first group, if this call
    makes it, is kept in its count field while it is short (one hash field less).
    ``in_record`` (library 1.7, implies ``fold``): a count that holds the checkpoint's only
    group is kept in the checkpoint's record (one hash field less again).
    ``shaped`` (library 1.8) items ``(write, runs, template)``: write ``write`` (1-based)
    is stored as that shaped value, its texts the contents of stored messages (runs of one
    stream entry each).
    """
    if messages and known:
        raise InvalidInputError("a writes call carries MESSAGES or KNOWN, not both")
    args: list[Any] = [*_ttl_args(ttl), *_noindex_args(noindex)]
    args += ["INRECORD"] if in_record else ["FOLD"] if fold else []
    args += ["WRITES", name, len(writes)]
    for task_id, index, task_path, channel, value in writes:
        # (a channel stays as it is: chathist_cp_chain picks writes by their channel)
        args += [encode_name(task_id), index, encode_name(task_path), channel, value]
    for write, first, last in if_known:
        args += ["IFKNOWN", write, first, last]
    for write, runs, template in shaped:
        args += ["SHAPED", write, runs, template]
    if messages:
        args += ["MESSAGES", *messages]
    elif known:
        args += ["KNOWN", *known]
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


def more_run_call(keys: Keys, start: bytes | str, stop: bytes | str) -> Call:
    """Stream entries from ``start`` (an id, or ``(`` and an id: after it) to ``stop``."""
    return Call(CP_MORE, keys, ("RUN", start, stop), read_only=True)


def more_writes_call(keys: Keys, name: bytes, first: int) -> Call:
    """A checkpoint's pending writes from the ``first``-th on."""
    return Call(CP_MORE, keys, ("WRITES", name, first), read_only=True)


def more_blobs_call(keys: Keys, name: bytes, first: int) -> Call:
    """The channel values a checkpoint's record names, from the ``first``-th on."""
    return Call(CP_MORE, keys, ("BLOBS", name, first), read_only=True)


def drop_call(keys: Keys, members: Sequence[bytes], blobs: Sequence[bytes] = ()) -> Call:
    """Delete checkpoints (records, writes, order entries) and channel values. The reply
    is ``[records deleted, checkpoints done]``: send the checkpoints not done again."""
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
    noindex: bool = False,
) -> Call:
    """Store raw fields (``C``/``W``, field, value) and session entries (id, JSON);
    ``noindex`` as in :func:`put_call`."""
    args: list[Any] = [*_ttl_args(ttl), *_noindex_args(noindex)]
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
    """A checkpoint as the library replies it, before the saver's serde reads it.

    ``next_blob`` (the first of the record's values not replied, 0 for none),
    ``next_write`` (the first write not replied, 0 for none) and ``more`` (ranges of
    runs not read yet, as ``(start, stop)``) say what chathist_cp_more still has to
    read; :func:`pending_calls` makes the calls and :func:`apply_more` takes the replies.
    """

    checkpoint_ns: str
    checkpoint_id: str
    name: bytes
    record: Record
    writes: list[StoredWrite]
    blobs: dict[str, bytes]
    entries: Entries
    next_write: int = 0
    more: list[tuple[bytes, bytes]] = field(default_factory=list)
    next_blob: int = 0

    @property
    def complete(self) -> bool:
        return not self.next_blob and not self.next_write and not self.more


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def decode_checkpoint(reply: Any, entries: Entries | None = None) -> RawCheckpoint | None:
    """A chathist_cp_get reply (or one item of a list reply, with the page's entries);
    None for no checkpoint."""
    if not reply:
        return None
    name, record, writes, blobs, flat, next_write, more, next_blob = reply
    ns, checkpoint_id = split_member(_raw(name))
    pool = Entries() if entries is None else entries
    for i in range(0, len(flat), 2):
        pool.add(as_text(flat[i]), _raw(flat[i + 1]))
    return RawCheckpoint(
        ns,
        checkpoint_id,
        _raw(name),
        Record.decode(_raw(record)),
        [decode_write(_raw(item)) for item in writes],
        {as_text(blobs[i]): _raw(blobs[i + 1]) for i in range(0, len(blobs), 2)},
        pool,
        int(next_write),
        [(_raw(more[i]), _raw(more[i + 1])) for i in range(0, len(more), 2)],
        int(next_blob),
    )


def decode_page(reply: Any) -> tuple[bytes | None, list[RawCheckpoint]]:
    """A chathist_cp_list reply: where to go on (None at the end) and its checkpoints.

    A stream entry comes once per page; the checkpoints of a page share one
    :class:`Entries`, so every checkpoint sees them all.
    """
    following = _raw(reply[0]) or None
    pool = Entries()
    items = [decode_checkpoint(item, pool) for item in reply[1:]]
    return following, [item for item in items if item is not None]


def chain_call(keys: Keys, start: str, name: bytes, channels: Sequence[str]) -> Call:
    """A checkpoint's ancestors with only ``channels``' values and writes: from its parent
    (``start`` "PARENT") or from itself ("AT"), up to a page of them (library 1.5)."""
    if not 1 <= len(channels) <= CHAIN_CHANNELS:
        raise InvalidInputError(f"a chain call walks for 1 to {CHAIN_CHANNELS} channels")
    return Call(CP_CHAIN, keys, (start, name, *channels), read_only=True)


def decode_chain(reply: Any) -> tuple[bytes | None, list[RawCheckpoint]]:
    """A chathist_cp_chain reply: the ancestor to go on from (None: the walk ended there)
    and the ancestors, nearest first."""
    return decode_page(reply)


def pending_call(keys: Keys, raw: RawCheckpoint) -> Call | None:
    """The next chathist_cp_more call a checkpoint needs, or None once it is complete."""
    if raw.next_blob:
        return more_blobs_call(keys, raw.name, raw.next_blob)
    if raw.next_write:
        return more_writes_call(keys, raw.name, raw.next_write)
    if raw.more:
        start, stop = raw.more[0]
        return more_run_call(keys, start, stop)
    return None


def _read_later(raw: RawCheckpoint, runs: str | None) -> None:
    """Runs of values read by a later call, which its reply did not read: read whole."""
    for run in split_runs(runs or ""):
        first, last = run_ends(run)
        raw.more.append((first.encode(), last.encode()))


def apply_more(raw: RawCheckpoint, reply: Any) -> None:
    """Takes the reply of the call :func:`pending_call` made."""
    following = _raw(reply[0])
    if raw.next_blob:
        for i in range(1, len(reply), 2):
            value = _raw(reply[i + 1])
            raw.blobs[as_text(reply[i])] = value
            found = shaped(value)
            _read_later(raw, " ".join(found[0]) if found else None)
        raw.next_blob = int(following)
        return
    if raw.next_write:
        fresh = [decode_write(_raw(item)) for item in reply[1:]]
        raw.writes += fresh
        raw.next_write = int(following)
        for write in fresh:
            _read_later(raw, write.runs)
        return
    _, stop = raw.more.pop(0)
    for i in range(1, len(reply), 2):
        raw.entries.add(as_text(reply[i]), _raw(reply[i + 1]))
    if following:
        raw.more.insert(0, (following, stop))
