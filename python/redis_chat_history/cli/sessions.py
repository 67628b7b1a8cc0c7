"""The commands on many sessions, or on one as it changes: list, export, import, tail.

Sessions are found with SCAN (on every primary of a cluster), exported and imported in
bounded batches as JSON Lines (``_jsonl``), and followed with a blocking XREAD.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import click

from .. import _protocol as protocol
from .._errors import InvalidInputError
from .._jsonl import ExportedMessage, encode_json, export_line, parse_line
from .._transport import SyncTransport
from ._connect import connected, keys_of
from ._output import duration_text, print_record, stored_records, table
from ._target import Target, command_options, session_command

#: Messages per chathist_range call when exporting.
EXPORT_PAGE = 500
#: Sessions whose details are fetched in one pipeline when listing.
LIST_BATCH = 200
#: Most entries, and about the most bytes, per chathist_import call when importing.
IMPORT_BATCH = 500
IMPORT_BATCH_BYTES = 4 * 1024 * 1024
#: Longest single XREAD BLOCK while tailing, in ms (bounds how late --timeout is noticed).
TAIL_BLOCK_MS = 1000

# -- finding sessions ----------------------------------------------------------------


def scan_sessions(client: Any, prefix: str) -> Iterator[str]:
    """Every session under ``prefix``: SCAN for its messages stream, on every primary.

    A cluster client (one with ``get_primaries``) is scanned node by node, since each
    primary holds only its own slots; a plain client is one node.
    """
    try:
        pattern = protocol.session_pattern(prefix)
    except InvalidInputError as error:
        raise click.UsageError(str(error)) from None
    primaries = getattr(client, "get_primaries", None)
    nodes: list[Any] = list(primaries()) if callable(primaries) else [None]
    for node in nodes:
        where = {} if node is None else {"target_nodes": node}
        for key in client.scan_iter(match=pattern, count=1000, _type="stream", **where):
            session = protocol.session_from_key(prefix, key)
            if session is not None:
                yield session


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What ``list`` shows of a session."""

    session: str
    messages: int
    last_id: str | None
    ttl_ms: int | None

    @property
    def last_activity(self) -> datetime | None:
        """When the newest message was stored."""
        return protocol.id_time(self.last_id) if self.last_id else None

    def as_json(self) -> dict[str, Any]:
        """The row as a JSON object for ``--json``."""
        last = self.last_activity
        return {
            "session": self.session,
            "messages": self.messages,
            "last_id": self.last_id,
            "last_activity": last.isoformat(timespec="milliseconds") if last else None,
            "ttl_ms": self.ttl_ms,
        }


def session_infos(
    transport: SyncTransport, prefix: str, sessions: Iterable[str], limit: int | None = None
) -> Iterator[SessionInfo]:
    """Count, newest id and TTL of each session, fetched in pipelines of :data:`LIST_BATCH`
    (fewer when ``limit`` sessions are all that is wanted)."""
    size = LIST_BATCH if limit is None else min(LIST_BATCH, limit)
    batch: list[str] = []
    for session in sessions:
        batch.append(session)
        if len(batch) == size:
            yield from _infos(transport, prefix, batch)
            batch = []
    if batch:
        yield from _infos(transport, prefix, batch)


def _infos(transport: SyncTransport, prefix: str, sessions: list[str]) -> list[SessionInfo]:
    calls: list[protocol.Call] = []
    for session in sessions:
        keys = protocol.session_keys(prefix, session)
        calls += [protocol.len_call(keys), protocol.latest_call(keys, 1), protocol.ttl_call(keys)]
    replies = transport.run_all(calls)
    infos = []
    for position, session in enumerate(sessions):
        count, last, ttl = replies[3 * position : 3 * position + 3]
        last_id = protocol.as_text(last[0]) if last else None
        infos.append(SessionInfo(session, int(count), last_id, int(ttl) if ttl >= 0 else None))
    return infos


# -- commands --------------------------------------------------------------------------


def unique(sessions: Iterable[str], limit: int | None) -> Iterator[str]:
    """``sessions`` without repeats (SCAN may return a key twice), at most ``limit`` of them."""
    seen: set[str] = set()
    for session in sessions:
        if limit is not None and len(seen) >= limit:
            return
        if session not in seen:
            seen.add(session)
            yield session


@click.command("list")
@command_options()
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="List at most N sessions (the first N found).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON lines as sessions are found: session, messages, last_id, "
    "last_activity, ttl_ms.",
)
@click.pass_obj
def list_sessions(target: Target, limit: int | None, as_json: bool) -> None:
    """List the sessions under --prefix: message count, last activity and TTL.

    Finds sessions with SCAN (every primary of a cluster), never KEYS. The table is
    sorted by session id; --json streams one line per session in the order SCAN finds
    them, so a script reads the first ones while the rest are still being found.
    """
    prefix = target.prefix
    with connected(target) as transport:
        found = unique(scan_sessions(transport.client, prefix), limit)
        infos = session_infos(transport, prefix, found, limit)
        if as_json:
            for info in infos:
                click.echo(encode_json(info.as_json()))
            return
        rows = sorted(infos, key=lambda info: info.session)
    if not rows:
        click.echo(f"no sessions under prefix {prefix!r}", err=True)
        return
    lines = [["SESSION", "MESSAGES", "LAST ACTIVITY (UTC)", "TTL"]]
    for info in rows:
        last = info.last_activity
        lines.append(
            [
                info.session,
                str(info.messages),
                f"{last:%Y-%m-%d %H:%M:%S}" if last else "-",
                duration_text(info.ttl_ms),
            ]
        )
    for line in table(lines, right={1, 3}):
        click.echo(line)


@click.command("export")
@click.argument("sessions", nargs=-1)
@command_options()
@click.option("--all", "every", is_flag=True, help="Export every session under --prefix.")
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="Write to this file instead of stdout.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr (default: when stderr is a terminal).",
)
@click.pass_obj
def export(
    target: Target,
    sessions: tuple[str, ...],
    every: bool,
    output: TextIO,
    progress: bool | None,
) -> None:
    """Write SESSIONS (or --all under --prefix) as JSON Lines, one message per line.

    Each line holds the session, the stream id, the ISO time and LangChain's stored
    message; `import` reads it back with the same ids, order, times and fields.
    Streams page by page, so a session of any size is exported in bounded memory.
    """
    if bool(sessions) == every:
        raise click.UsageError("name the SESSIONS to export, or pass --all (not both)")
    for session in sessions:
        keys_of(target.prefix, session)
    with connected(target) as transport:
        prefix = target.prefix
        names = sorted(set(scan_sessions(transport.client, prefix))) if every else list(sessions)
        counts = [int(reply) for reply in transport.run_all(_len_calls(prefix, names))]
        show = sys.stderr.isatty() if progress is None else progress
        total = sum(counts)
        with click.progressbar(
            length=total, label="exporting", file=sys.stderr, hidden=not show
        ) as bar:
            written = 0
            for session in names:
                for stream_id, stored in _session_pages(transport, prefix, session):
                    output.write(export_line(session, stream_id, stored) + "\n")
                    written += 1
                    bar.update(1)
    output.flush()
    click.echo(
        f"exported {written} message{'' if written == 1 else 's'} "
        f"from {len(names)} session{'' if len(names) == 1 else 's'}",
        err=True,
    )


def _len_calls(prefix: str, sessions: list[str]) -> list[protocol.Call]:
    return [protocol.len_call(protocol.session_keys(prefix, session)) for session in sessions]


def _session_pages(
    transport: SyncTransport, prefix: str, session: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every message of a session as ``(stream id, stored dict)``, one page per call."""
    keys = protocol.session_keys(prefix, session)
    after: str | None = None
    while True:
        reply = transport.run(protocol.export_page_call(keys, after, EXPORT_PAGE))
        try:
            pairs = protocol.decode_pairs(reply)
        except ValueError as error:
            raise click.ClickException(
                f"session {session!r} holds an entry after {after or 'its start'} that is not "
                f"a JSON message ({error}); nothing more was exported"
            ) from None
        yield from pairs
        if len(pairs) < EXPORT_PAGE:
            return
        after = pairs[-1][0]


@click.command("import")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@command_options()
@click.option(
    "--session",
    "rename",
    default=None,
    help="Import every line into this session, whatever session the lines name.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Clear each session before its first message is imported (else ids must be newer "
    "than the session's last one).",
)
@click.option(
    "--ttl",
    type=click.IntRange(1, protocol.MAX_TTL_SECONDS),
    default=None,
    help="Make each imported session expire SECONDS after the import.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr (default: when stderr is a terminal).",
)
@click.pass_obj
def import_sessions(
    target: Target,
    source: TextIO,
    rename: str | None,
    replace: bool,
    ttl: int | None,
    progress: bool | None,
) -> None:
    """Read SOURCE (an `export` file, or - for stdin) back into Redis.

    Messages keep their stream ids (so their order and times) and every field. Lines
    are read and sent in batches, so a file of any size is imported in bounded memory;
    each batch is one atomic call. An interrupted import can be run again with
    --replace (each session starts over).
    """
    keys_of(target.prefix, rename or "-")
    show = sys.stderr.isatty() if progress is None else progress
    size = _file_size(source)
    imported, sessions = 0, 0
    with (
        connected(target) as transport,
        click.progressbar(
            length=size or 1, label="importing", file=sys.stderr, hidden=not (show and size)
        ) as bar,
    ):
        cleared: set[str] = set()
        for session, batch, read in _batches(source, rename):
            keys = keys_of(target.prefix, session)
            if session not in cleared:
                cleared.add(session)
                sessions += 1
                if replace:
                    transport.run(protocol.clear_call(keys))
            try:
                transport.run(protocol.import_call(keys, [(m.id, m.message) for m in batch], ttl))
            except InvalidInputError as error:
                hint = "" if replace else " (pass --replace to overwrite the session)"
                raise click.ClickException(
                    f"session {session!r}: {error}{hint}; {imported} message"
                    f"{'' if imported == 1 else 's'} imported before it"
                ) from None
            imported += len(batch)
            bar.update(read)
    click.echo(
        f"imported {imported} message{'' if imported == 1 else 's'} "
        f"into {sessions} session{'' if sessions == 1 else 's'}",
        err=True,
    )


def _file_size(source: TextIO) -> int | None:
    """The size in bytes of a regular file, for the progress bar; None for a pipe."""
    try:
        return os.fstat(source.fileno()).st_size or None
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _batches(
    source: TextIO, rename: str | None
) -> Iterator[tuple[str, list[ExportedMessage], int]]:
    """Consecutive lines of one session in batches: ``(session, messages, bytes read)``."""
    batch: list[ExportedMessage] = []
    size = read = 0
    for number, line in enumerate(source, 1):
        read += len(line.encode("utf-8"))
        if not line.strip():
            continue
        try:
            message = parse_line(line, number)
        except InvalidInputError as error:
            raise click.ClickException(str(error)) from None
        if rename is not None:
            message = ExportedMessage(rename, message.id, message.message)
        full = len(batch) >= IMPORT_BATCH or size + len(message.message) > IMPORT_BATCH_BYTES
        if batch and (message.session != batch[0].session or full):
            yield batch[0].session, batch, read
            batch, size, read = [], 0, 0
        batch.append(message)
        size += len(message.message)
    if batch:
        yield batch[0].session, batch, read


@click.command()
@session_command
@click.option(
    "--lines",
    "-n",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="First print the latest N messages.",
)
@click.option(
    "--from",
    "from_id",
    default=None,
    metavar="ID",
    help="Start after this stream id instead: print every message after it, then follow.",
)
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Exit after N new messages."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Exit after SECONDS of following (default: until Ctrl-C).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON lines: id, timestamp, type, content."
)
@click.pass_obj
def tail(
    target: Target,
    session: str,
    lines: int,
    from_id: str | None,
    count: int | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Print the latest messages of SESSION, then each new one as it arrives (like tail -f).

    Follows the session's stream with a blocking XREAD; Ctrl-C stops it.
    """
    keys = keys_of(target.prefix, session)
    if from_id is not None:
        try:
            protocol.stream_id_key(from_id, 0)
        except InvalidInputError as error:
            raise click.BadParameter(str(error), param_hint="--from") from None
    deadline = None if timeout is None else time.monotonic() + timeout
    with connected(target) as transport:
        if from_id is None:
            latest = stored_records(transport.run(protocol.latest_call(keys, max(lines, 1))))
            for record in latest[-lines:] if lines else []:
                print_record(record, as_json)
            from_id = latest[-1].id if latest else "0-0"
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a tail, quietly
            _follow(transport, keys[0], from_id, count, deadline, as_json)


def _follow(
    transport: SyncTransport,
    stream_key: str,
    last_id: str,
    count: int | None,
    deadline: float | None,
    as_json: bool,
) -> None:
    """XREAD BLOCK on the session's stream from ``last_id``, printing each new message."""
    printed, reads = 0, 0
    while count is None or printed < count:
        block = TAIL_BLOCK_MS
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 and reads > 0:  # what is already there is always read once
                return
            block = max(1, min(block, int(left * 1000)))
        reads += 1
        wanted = 100 if count is None else min(100, count - printed)
        reply = transport.client.xread({stream_key: last_id}, count=wanted, block=block)
        for entries in _stream_entries(reply):
            if not entries:
                continue
            last_id = protocol.as_text(entries[-1][0])
            for record in _records(entries):
                print_record(record, as_json)
                printed += 1


def _stream_entries(reply: Any) -> list[Any]:
    """The entry lists of an XREAD reply, RESP2 (a list of pairs) or RESP3 (a map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [
            entries[0] if entries and isinstance(entries[0], list) else entries
            for entries in reply.values()
        ]
    return [entries for _, entries in reply]


def _records(entries: Any) -> list[protocol.StoredRecord]:
    try:
        return protocol.decode_records(protocol.entries_reply(entries))
    except (ValueError, KeyError, TypeError) as error:
        raise click.ClickException(
            f"the session holds a message that is not a LangChain message: {error}"
        ) from None
