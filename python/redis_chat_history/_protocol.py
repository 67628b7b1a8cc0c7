"""The FCALL protocol of the chathist library, without I/O and without LangChain.

Key layout, argument encoding and reply decoding live here once; the sync and
async histories, the CLI and the tests all build their calls with these
functions. Messages cross this layer as stored-message dicts (``{"type": ...,
"data": {...}}``, the JSON every client stores) and come back as plain
:class:`StoredRecord` values; ``_langchain`` turns them into LangChain messages.
docs/PROTOCOL.md is the written form of the same contract.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._errors import InvalidInputError, LibraryIncompatibleError, UnreadableMessageError

LIBRARY_NAME = "chathist"
#: The key prefix of a session unless one is given (langchain-redis's default).
DEFAULT_KEY_PREFIX = "chat:"
#: Version of lua/chat_history.lua shipped with this package (kept equal by a test).
LIBRARY_VERSION = "1.8.0"

APPEND = "chathist_append"
RANGE = "chathist_range"
SEARCH = "chathist_search"
CLEAR = "chathist_clear"
REINDEX = "chathist_reindex"
LEN = "chathist_len"
VERSION = "chathist_version"

KEY_SUFFIXES = (":m", ":x", ":i")
_TAG_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})
_ERROR_CODE = re.compile(r"^(?:ERR )?CHATHIST_([A-Z]+) (.*)$", re.DOTALL)

Reply = Any


@dataclass(frozen=True, slots=True)
class Call:
    """One FCALL: function name, KEYS, ARGV, and whether FCALL_RO may serve it."""

    function: str
    keys: tuple[str, ...]
    args: tuple[str | int | bytes, ...]
    read_only: bool

    def command(self) -> tuple[str | int | bytes, ...]:
        """The call as one Redis command: ``FCALL[_RO] function numkeys keys... args...``,
        what every client (plain, pipeline, cluster node; sync or async) sends."""
        name = "FCALL_RO" if self.read_only else "FCALL"
        return (name, self.function, len(self.keys), *self.keys, *self.args)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A message as a session holds it: its stream id and time, and its stored-message dict."""

    id: str
    timestamp: datetime
    stored: dict[str, Any]

    @property
    def type(self) -> str:
        """The message's type as stored (``human``, ``ai``, ``tool``, or another client's)."""
        return str(self.stored.get("type"))

    @property
    def content(self) -> Any:
        """The message's content as stored: text, or a list of parts."""
        data = self.stored.get("data")
        return data.get("content", "") if isinstance(data, dict) else ""


def session_keys(key_prefix: str, session_id: str) -> tuple[str, str, str]:
    """The three keys of a session: messages stream, search index, client-id map.

    The session id becomes the hash tag (with ``%``, ``{`` and ``}`` percent-encoded),
    so a session lives in one cluster slot and no two sessions share a key.
    """
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInputError("session_id must be a non-empty string", "BADKEYS")
    if "{" in key_prefix or "}" in key_prefix:
        raise InvalidInputError("key_prefix must not contain '{' or '}'", "BADKEYS")
    base = f"{key_prefix}{{{session_id.translate(_TAG_ESCAPES)}}}"
    return (base + KEY_SUFFIXES[0], base + KEY_SUFFIXES[1], base + KEY_SUFFIXES[2])


def encode_stored(stored: dict[str, Any], position: int = 1) -> bytes:
    """A stored-message dict as compact UTF-8 JSON bytes, the form the library stores.

    Text that UTF-8 cannot carry (a lone surrogate) is refused here, before anything
    is sent, as the library refuses any other malformed message.
    """
    text = json.dumps(stored, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInputError(
            f"message {position} holds text that is not valid Unicode ({error.reason} at "
            f"character {error.start})",
            "BADMSG",
        ) from None


def new_token() -> str:
    """A fresh name for one write (``TOKEN``): a retry of the same call carries the same
    token, and the library replays its first reply instead of storing it again."""
    return uuid.uuid4().hex


def append_call(
    keys: tuple[str, ...],
    messages: Sequence[dict[str, Any]],
    ttl: int | None,
    *,
    index: bool = True,
    max_messages: int | None = None,
    max_bytes: int | None = None,
    token: str | None = None,
    if_last: str | None = None,
    tool_safe: bool = False,
) -> Call:
    """Store ``messages`` (stored-message dicts) in one atomic call, refreshing the
    session's TTL if given.

    ``index=False`` keeps a new session out of the search index (search then scans);
    ``max_messages`` / ``max_bytes`` trim the oldest messages in the same call, and with
    ``tool_safe`` the tool results of a removed AI message go with it. ``token`` (see
    :func:`new_token`) makes the call exactly-once across retries; ``if_last`` makes it
    conditional on the session's newest stream id (``"0-0"``: empty), else ``CONFLICT``.
    """
    args: list[str | int | bytes] = []
    if ttl:
        args += ["TTL", ttl]
    if max_messages is not None:
        args += ["MAXLEN", max_messages]
    if max_bytes is not None:
        args += ["MAXBYTES", max_bytes]
    if not index:
        args.append("NOINDEX")
    if token is not None:
        args += ["TOKEN", token]
    if if_last is not None:
        args += ["IFLAST", if_last]
    if tool_safe:
        args.append("TOOLSAFE")
    args.append("MESSAGES")
    args += [encode_stored(message, position) for position, message in enumerate(messages, 1)]
    return Call(APPEND, keys, tuple(args), read_only=False)


def range_call(
    keys: tuple[str, ...],
    count: int | None = None,
    before: str | None = None,
    after: str | None = None,
    *,
    tool_safe: bool = False,
) -> Call:
    """Read the whole session, the latest ``count``, or a page before/after an id.
    ``tool_safe``: a window read backward never starts with orphan tool results."""
    args: list[str | int | bytes] = []
    if count is not None:
        args += ["COUNT", count]
    if before is not None:
        args += ["BEFORE", before]
    if after is not None:
        args += ["AFTER", after]
    if tool_safe:
        args.append("TOOLSAFE")
    return Call(RANGE, keys, tuple(args), read_only=True)


#: Messages per call when a whole session is read in pages.
READ_PAGE = 1000


class SessionReader:
    """Reads a whole session as a series of bounded pages (``AFTER`` the last id seen,
    ``READ_PAGE`` at a time), so no single call grows with the session: the caller sends
    :meth:`next_call` until it is None, feeding each reply to :meth:`feed`. Each call asks
    for one message more than a page, so a session of at most a page takes one call."""

    def __init__(self, keys: tuple[str, ...], page: int = READ_PAGE) -> None:
        self.keys, self.page = keys, page
        self.items: list[Any] = []
        self._after: str | None = "0-0"

    def next_call(self) -> Call | None:
        """The next page's call, or None once the session's end was reached."""
        if self._after is None:
            return None
        return range_call(self.keys, count=self.page + 1, after=self._after)

    def feed(self, reply: Reply) -> None:
        """Takes one page's reply (``id, json, ...``, oldest first)."""
        items = list(reply)
        if len(items) > 2 * self.page:  # more follow: the next call starts at the extra one
            items = items[: 2 * self.page]
            self._after = as_text(items[-2])
        else:
            self._after = None
        self.items += items


SEARCH_MODES = ("all", "any")


def bound(value: str | datetime) -> str:
    """A range or search bound: a stream id as is, an aware datetime as its time in ms."""
    if isinstance(value, datetime):
        return str(_milliseconds(value, "before"))
    return value


def search_call(
    keys: tuple[str, ...],
    query: str,
    limit: int = 10,
    *,
    mode: str = "all",
    message_type: str | None = None,
    before: str | datetime | None = None,
    min_score: int | None = None,
    paged: bool = False,
) -> Call:
    """Find messages by their words (one call; :class:`SearchPager` follows a whole search).

    ``mode="all"``: the latest ``limit`` messages holding every word and "quoted
    phrase", oldest first. ``mode="any"``: those holding the most words, best first.
    ``message_type`` keeps one type (``"human"``, ``"ai"``, ...); ``before`` (an id or a
    datetime) pages to older matches. ``min_score`` (``any``): at least that many words.
    ``paged``: the reply starts with where to continue and gives each hit's score.
    """
    if mode not in SEARCH_MODES:
        raise InvalidInputError(f"mode must be one of {SEARCH_MODES}, not {mode!r}", "BADARG")
    args: list[str | int | bytes] = [query, "LIMIT", limit]
    if mode != "all":
        args += ["MODE", mode.upper()]
    if message_type is not None:
        args += ["TYPE", message_type]
    if before is not None:
        args += ["BEFORE", bound(before)]
    if min_score is not None:
        args += ["MINSCORE", min_score]
    if paged:
        args.append("PAGED")
    return Call(SEARCH, keys, tuple(args), read_only=True)


class SearchPager:
    """One search followed through as many bounded calls as it takes (library 1.3).

    The library judges a bounded number of candidates per call and, with ``PAGED``,
    replies where to continue. This follows it as docs/PROTOCOL.md says, so the caller
    gets exactly the answer of one unbounded search: in ``all`` mode each call asks for
    the hits still missing, older than the last; in ``any`` mode the ``limit`` best are
    kept and each call is told the score an older hit must beat (``MINSCORE``). Send
    :meth:`next_call` until it is None, feeding each reply to :meth:`feed`; then
    :meth:`reply` is the answer in the one-call form (``id, json, ...``).
    """

    def __init__(
        self,
        keys: tuple[str, ...],
        query: str,
        limit: int = 10,
        *,
        mode: str = "all",
        message_type: str | None = None,
        before: str | datetime | None = None,
    ) -> None:
        # Checked once, here, with the first call.
        self._first = search_call(
            keys, query, limit, mode=mode, message_type=message_type, before=before, paged=True
        )
        self.keys, self.query, self.limit, self.mode = keys, query, limit, mode
        self.message_type = message_type
        self.hits: list[tuple[str, Any, int]] = []  # (stream id, json, score)
        self.calls = 0
        self._next: str | None = None
        self._done = False

    def next_call(self) -> Call | None:
        """The next call of the search, or None once it is complete."""
        if self._done:
            return None
        if self.calls == 0:
            return self._first
        if self.mode == "any":
            full = 0 < self.limit <= len(self.hits)
            floor = self.hits[self.limit - 1][2] + 1 if full else 1
            limit, min_score = self.limit, floor
        else:
            limit, min_score = self.limit - len(self.hits), None
        return search_call(
            self.keys,
            self.query,
            limit,
            mode=self.mode,
            message_type=self.message_type,
            before=self._next,
            min_score=min_score,
            paged=True,
        )

    def feed(self, reply: Reply) -> None:
        """Takes one PAGED reply: ``next``, then ``id, json, score`` triples."""
        items = list(reply)
        self.calls += 1
        page = [
            (as_text(items[i]), items[i + 1], int(items[i + 2])) for i in range(1, len(items), 3)
        ]
        if self.mode == "any":
            best = {hit[0]: hit for hit in [*self.hits, *page]}
            ranked = sorted(
                best.values(), key=lambda hit: (hit[2], stream_id_key(hit[0], 0)), reverse=True
            )
            self.hits = ranked[: self.limit]
        else:
            self.hits = page + self.hits  # each call's hits are older than the last's
        following = as_text(items[0]) if items else ""
        if not following:
            self._done = True
        elif self._next is not None and stream_id_key(following, 0) >= stream_id_key(self._next, 0):
            raise LibraryIncompatibleError(
                f"the server's search did not move past {self._next}: load this package's "
                f"chathist {LIBRARY_VERSION} (redis-chat-history load)"
            )
        self._next = following or None

    def reply(self) -> list[Any]:
        """The search's answer as one unbounded call would give it: ``id, json, ...``."""
        flat: list[Any] = []
        for stream_id, raw, _score in self.hits:
            flat += [stream_id, raw]
        return flat


def reindex_call(keys: tuple[str, ...], step: str | None = None) -> Call:
    """Rebuild the session's search index from its messages: without ``step``, start it
    (1.1's form); ``"RESTART"`` / ``"CONTINUE"`` run one bounded step of a rebuild."""
    return Call(REINDEX, keys, (step,) if step else (), read_only=False)


@dataclass(frozen=True, slots=True)
class ReindexProgress:
    """Where a rebuild is: messages indexed so far, of the session's total."""

    indexed: int
    total: int
    complete: bool


def decode_reindex(reply: Reply) -> ReindexProgress:
    """A ``RESTART`` / ``CONTINUE`` reply: ``[indexed, messages, complete]``."""
    indexed, total, complete = (int(item) for item in reply)
    return ReindexProgress(indexed, total, bool(complete))


def clear_call(keys: tuple[str, ...]) -> Call:
    """Delete every key of the session."""
    return Call(CLEAR, keys, (), read_only=False)


def len_call(keys: tuple[str, ...]) -> Call:
    """Count the session's messages."""
    return Call(LEN, keys, (), read_only=True)


def version_call() -> Call:
    """Ask the server's library for its version."""
    return Call(VERSION, (), (), read_only=True)


def as_text(value: bytes | str) -> str:
    """A reply element as text, whether or not the client decodes responses."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def decode_pairs(reply: Reply) -> list[tuple[str, dict[str, Any]]]:
    """``(id, stored-message dict)`` pairs from a flat ``id, json, id, json`` reply."""
    items = list(reply)
    return [
        (as_text(items[i]), load_stored(as_text(items[i]), items[i + 1]))
        for i in range(0, len(items), 2)
    ]


def load_stored(stream_id: str, raw: bytes | str) -> Any:
    """One stored message's JSON, decoded; text that is not valid UTF-8 (another client's
    bytes) reads with U+FFFD in its place. JSON that no strict parser reads raises
    :class:`UnreadableMessageError` naming the entry, instead of failing the whole read
    with a bare decoding error."""
    try:
        return json.loads(as_text(raw))
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise UnreadableMessageError(
            f"stored message {stream_id} is not JSON this package can read ({reason}); "
            f"another client stored it: remove it with chathist_delete IDS {stream_id}",
            stream_id,
        ) from None


def decode_jsons(reply: Reply) -> list[dict[str, Any]]:
    """The stored-message dicts of a flat ``id, json, id, json`` reply, in order, without
    the ids and times a whole-session read does not need."""
    items = list(reply)
    loaded = (load_stored(as_text(items[i]), items[i + 1]) for i in range(0, len(items), 2))
    return [stored if isinstance(stored, dict) else {} for stored in loaded]


def decode_records(reply: Reply) -> list[StoredRecord]:
    """Plain records (id, time, stored dict) from a range or search reply, oldest first
    (best first for a search in ``any`` mode)."""
    return [
        StoredRecord(stream_id, id_time(stream_id), stored if isinstance(stored, dict) else {})
        for stream_id, stored in decode_pairs(reply)
    ]


def id_time(stream_id: str) -> datetime:
    """The server time (UTC) at which a message was stored, from its stream id."""
    milliseconds = int(stream_id.split("-", 1)[0])
    return datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc)


def error_code(text: str) -> tuple[str, str] | None:
    """``(code, message)`` of a chathist error reply, or None for any other error."""
    match = _ERROR_CODE.match(text)
    return (match.group(1), match.group(2)) if match else None


_CONFLICT_LAST = re.compile(r"last message is (\d+-\d+),")


def conflict_last_id(text: str) -> str | None:
    """The session's newest stream id named by a ``CONFLICT`` error's text, or None."""
    match = _CONFLICT_LAST.search(text)
    return match.group(1) if match else None


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.2.3"`` as ``(1, 2, 3)`` for comparison."""
    return tuple(int(part) for part in version.split("."))


def check_compatible(server_version: str) -> str:
    """What to do about the server's library: ``"ok"``, ``"upgrade"`` or ``"incompatible"``.

    Same major and not older: use it. Older (same or lower major): load ours over it.
    Newer major: incompatible, never downgrade it.
    """
    server, ours = version_tuple(server_version), version_tuple(LIBRARY_VERSION)
    if server[0] > ours[0]:
        return "incompatible"
    if server < ours:
        return "upgrade"
    return "ok"


#: The library's limit on one stored message JSON (docs/PROTOCOL.md, Limits).
MAX_MESSAGE_BYTES = 1048576


def check_message_sizes(call: Call, limit: int) -> None:
    """Refuse an append call with a message over ``limit`` bytes, before it is sent."""
    start = call.args.index("MESSAGES") + 1
    for position, encoded in enumerate(call.args[start:], 1):
        size = len(encoded) if isinstance(encoded, bytes) else len(str(encoded).encode())
        if size > limit:
            raise InvalidInputError(
                f"message {position} is {size} bytes, over the limit of {limit} "
                "(max_message_bytes)",
                "TOOBIG",
            )


# -- managing sessions: paging, listing, live tail ----------------------------------------

#: The stream field that holds a message's stored JSON (readers of the raw stream use it).
MESSAGE_FIELD = "m"
_MAX_SEQUENCE = 2**64 - 1
_TAG_UNESCAPES = {"%25": "%", "%7B": "{", "%7D": "}"}
_STREAM_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?", re.ASCII)


def stream_id_key(stream_id: str, default_sequence: int) -> tuple[int, int]:
    """``"ms-seq"`` (or a bare ``"ms"``) as an orderable ``(ms, seq)``.

    A bare millisecond time takes ``default_sequence`` (0 for an upper bound, the
    largest sequence for a lower bound), the way the library reads it.
    """
    match = _STREAM_ID.fullmatch(stream_id) if isinstance(stream_id, str) else None
    if match is None:
        raise InvalidInputError(f'{stream_id!r} is not a stream id "ms-seq" or a time in ms')
    sequence = match.group(2)
    return (int(match.group(1)), int(sequence) if sequence is not None else default_sequence)


def _milliseconds(moment: datetime, name: str) -> int:
    """The first whole millisecond at or after ``moment`` (an aware datetime), since the epoch."""
    if not isinstance(moment, datetime):
        raise InvalidInputError(f"{name} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInputError(
            f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc)); "
            "a naive datetime is ambiguous"
        )
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    microseconds = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return max(0, -(-microseconds // 1000))


def _limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise InvalidInputError(f"limit must be None or a non-negative integer, not {limit!r}")
    return limit


def page_call(
    keys: tuple[str, ...],
    limit: int | None = None,
    *,
    before: str | None = None,
    after: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Call:
    """A chathist_range call for one page of a session, bounds checked and merged here.

    ``before`` / ``after`` are stream ids (or ms times), exclusive; ``since`` is inclusive
    and ``until`` exclusive, at millisecond precision. When both an id and a time bound
    one side, the tighter wins. With ``limit``, a page with a lower bound is the first
    ``limit`` messages after it (paging forward); without one, the latest ``limit``
    before the upper bound (paging back). Only the page is read on the server.
    """
    lower: tuple[tuple[int, int], str] | None = None
    upper: tuple[tuple[int, int], str] | None = None
    if after is not None:
        lower = (stream_id_key(after, _MAX_SEQUENCE), after)
    if since is not None:
        first = _milliseconds(since, "since")
        if first > 0:
            bound = ((first - 1, _MAX_SEQUENCE), str(first - 1))
            lower = bound if lower is None or bound[0] > lower[0] else lower
    if before is not None:
        upper = (stream_id_key(before, 0), before)
    if until is not None:
        end = _milliseconds(until, "until")
        bound = ((end, 0), str(end))
        upper = bound if upper is None or bound[0] < upper[0] else upper
    count = _limit(limit)
    if upper is not None and upper[0] == (0, 0):
        count = 0  # nothing is stored before the epoch: an empty page
    return range_call(
        keys,
        count=count,
        before=upper[1] if upper else None,
        after=lower[1] if lower else None,
    )


def latest_call(keys: tuple[str, ...], count: int, *, tool_safe: bool = False) -> Call:
    """The latest ``count`` messages of a session (oldest first in the reply); with
    ``tool_safe``, a window that never starts with tool results whose AI message it left
    out (a window of tool results only reaches back to their AI message)."""
    if _limit(count) is None:
        raise InvalidInputError("latest needs a count")
    return range_call(keys, count=count, tool_safe=tool_safe)


def export_page_call(keys: tuple[str, ...], after: str | None, count: int) -> Call:
    """The first ``count`` messages after stream id ``after`` (None: from the start)."""
    return range_call(keys, count=count, after=after or "0-0")


def session_pattern(key_prefix: str) -> str:
    """The SCAN MATCH pattern of every session's messages key under ``key_prefix``."""
    if "{" in key_prefix or "}" in key_prefix:
        raise InvalidInputError("key_prefix must not contain '{' or '}'", "BADKEYS")
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", key_prefix)
    return f"{escaped}{{*}}{KEY_SUFFIXES[0]}"


def session_from_key(key_prefix: str, key: bytes | str) -> str | None:
    """The session id whose messages key is ``key``, or None if it is not one under the prefix.

    Undoes the tag's escaping (``%7B`` → ``{``, ``%7D`` → ``}``, ``%25`` → ``%``, the
    last one last), the inverse of :func:`session_keys`.
    """
    text = as_text(key)
    base = key_prefix + "{"
    if not (text.startswith(base) and text.endswith("}" + KEY_SUFFIXES[0])):
        return None
    tag = text[len(base) : -len(KEY_SUFFIXES[0]) - 1]
    if not tag or "{" in tag or "}" in tag:
        return None
    session = re.sub(r"%25|%7B|%7D", lambda match: _TAG_UNESCAPES[match.group(0)], tag)
    return session if session_keys(key_prefix, session)[0] == text else None


def entries_reply(entries: Reply) -> list[Any]:
    """Raw stream entries ``[(id, {field: value}), ...]`` (XREAD, XRANGE) as a flat
    ``id, json, ...`` reply that :func:`decode_records` reads.

    Entries without the message field (written by something else) are skipped.
    """
    flat: list[Any] = []
    for entry_id, fields in entries:
        stored = fields.get(MESSAGE_FIELD.encode(), fields.get(MESSAGE_FIELD))
        if stored is not None:
            flat += [entry_id, stored]
    return flat


# -- managing sessions: deletion, TTL, import (library 1.1) -------------------------------

DELETE = "chathist_delete"
IMPORT = "chathist_import"
TTL = "chathist_ttl"
EXPIRE = "chathist_expire"
#: Most ids in one chathist_delete, entries in one chathist_import (the library's batch limit).
MAX_BATCH = 10000
#: The library's bounds of a session window (MAXLEN, MAXBYTES) and of a TTL.
MAX_WINDOW_MESSAGES = 10**9
MAX_WINDOW_BYTES = 2**40
MAX_TTL_SECONDS = 315360000


def check_count(value: int | None, name: str, low: int, high: int) -> int | None:
    """``value`` if it is None or an integer from ``low`` to ``high``, else InvalidInputError."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInputError(f"{name} must be None or an integer from {low} to {high}")
    return value


def _ids(ids: Sequence[str], name: str) -> tuple[str, ...]:
    if isinstance(ids, str | bytes):
        raise InvalidInputError(f"{name} must be a list of strings, not one string")
    checked = tuple(ids)
    for value in checked:
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"{name} must be non-empty strings, not {value!r}")
    if len(checked) > MAX_BATCH:
        raise InvalidInputError(
            f"{len(checked)} ids is over the limit of {MAX_BATCH} in one call", "TOOBIG"
        )
    return checked


def delete_call(
    keys: tuple[str, ...], ids: Sequence[str] = (), *, message_ids: Sequence[str] = ()
) -> Call | None:
    """Delete messages by stream id (``ids``) or by LangChain ``message.id`` (``message_ids``).

    One atomic call that keeps the search index and the id map right; unknown ids are
    ignored. None when there is nothing to delete (no call needed).
    """
    stream_ids, client_ids = _ids(ids, "ids"), _ids(message_ids, "message_ids")
    if stream_ids and client_ids:
        raise InvalidInputError("pass ids or message_ids, not both")
    for stream_id in stream_ids:
        if "-" not in stream_id:
            raise InvalidInputError(f'{stream_id!r} is not a stream id "ms-seq"')
        stream_id_key(stream_id, 0)
    if stream_ids:
        return Call(DELETE, keys, ("IDS", *stream_ids), read_only=False)
    if client_ids:
        return Call(DELETE, keys, ("MESSAGEIDS", *client_ids), read_only=False)
    return None


def import_call(
    keys: tuple[str, ...], entries: Sequence[tuple[str, bytes]], ttl: int | None = None
) -> Call:
    """Store ``(stream id, stored-message JSON)`` entries under those ids (export/import).

    Ids must be "ms-seq", increasing, and after the session's last id (the library checks).
    """
    args: list[str | int | bytes] = []
    if ttl:
        args += ["TTL", ttl]
    args.append("ENTRIES")
    for stream_id, stored in entries:
        args += [stream_id, stored]
    return Call(IMPORT, keys, tuple(args), read_only=False)


def ttl_call(keys: tuple[str, ...]) -> Call:
    """The session's remaining TTL in ms (-1: none, -2: no such session)."""
    return Call(TTL, keys, (), read_only=True)


def expire_call(keys: tuple[str, ...], seconds: int | None) -> Call:
    """Set every key of the session to expire in ``seconds``, or drop the TTL (None)."""
    if seconds is None:
        return Call(EXPIRE, keys, ("PERSIST",), read_only=False)
    check_count(seconds, "seconds", 1, MAX_TTL_SECONDS)
    return Call(EXPIRE, keys, (seconds,), read_only=False)


def decode_ttl(reply: Reply) -> float | None:
    """Seconds a session has left, from a chathist_ttl reply; None without a TTL or session."""
    milliseconds = int(reply)
    return milliseconds / 1000 if milliseconds >= 0 else None
