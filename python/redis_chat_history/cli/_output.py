"""How the commands print messages and tables: lines for people, JSON lines for scripts."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import _protocol as protocol

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON lines: id, timestamp, type, content."
)


def stored_records(reply: protocol.Reply) -> list[protocol.StoredRecord]:
    """The messages of a range or search reply, or a clear error if one cannot be decoded."""
    try:
        return protocol.decode_records(reply)
    except (ValueError, KeyError, TypeError) as error:
        raise click.ClickException(
            f"the session holds a message that is not a LangChain message: {error}"
        ) from None


def record_json(record: protocol.StoredRecord) -> dict[str, Any]:
    """One message as a JSON object: id, timestamp (ISO 8601, UTC), type, content."""
    return {
        "id": record.id,
        "timestamp": record.timestamp.isoformat(timespec="milliseconds"),
        "type": record.type,
        "content": record.content,
    }


def record_line(record: protocol.StoredRecord) -> str:
    """One message as a line for people: ``[time] type: content``."""
    content = record.content
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return f"[{record.timestamp:%Y-%m-%d %H:%M:%S}] {record.type}: {text}"


def print_record(record: protocol.StoredRecord, as_json: bool) -> None:
    """Print one message: a JSON line with ``--json``, else a line for people."""
    click.echo(
        json.dumps(record_json(record), ensure_ascii=False) if as_json else record_line(record)
    )


def emit(records: list[protocol.StoredRecord], as_json: bool, none_found: str) -> None:
    """Print messages, one per line (JSON lines with ``--json``); say so on stderr if none."""
    if not records:
        click.echo(none_found, err=True)
    for record in records:
        print_record(record, as_json)


def plural(count: int, noun: str) -> str:
    """``1 message``, ``2 messages``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def duration_text(milliseconds: int | None) -> str:
    """A TTL for people: ``42s``, ``5m07s``, ``3h05m``, ``2d03h``; ``-`` for none."""
    if milliseconds is None:
        return "-"
    seconds = -(-milliseconds // 1000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    if days:
        return f"{days}d{hour:02}h"
    if hours:
        return f"{hours}h{minute:02}m"
    if minutes:
        return f"{minutes}m{second:02}s"
    return f"{second}s"


def table(rows: list[list[str]], right: set[int]) -> list[str]:
    """Rows as aligned text columns (columns in ``right`` right-aligned)."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(widths[column]) if column in right else cell.ljust(widths[column])
            for column, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
