"""The commands on one session's messages: show, search, reindex, clear, delete, ttl."""

from __future__ import annotations

import sys

import click

from .. import _protocol as protocol
from .._errors import InvalidInputError
from ._connect import connected, keys_of
from ._output import duration_text, emit, json_option, plural, stored_records
from ._target import Target, session_command


@click.command()
@session_command
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Only the latest N messages."
)
@json_option
@click.pass_obj
def show(target: Target, session: str, limit: int | None, as_json: bool) -> None:
    """Print the messages of SESSION, oldest first."""
    call = protocol.range_call(keys_of(target.prefix, session), count=limit)
    with connected(target) as transport:
        reply = transport.run(call)
    emit(stored_records(reply), as_json, f"session {session!r} has no messages")


@click.command()
@session_command
@click.argument("query")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="The most recent N matches (with --any: the N best).",
)
@click.option(
    "--any", "any_word", is_flag=True, help="Match any word; best first (most words matched)."
)
@click.option("--type", "message_type", help="Only messages of this type (human, ai, tool, ...).")
@click.option("--before", metavar="ID", help="Only matches older than this message id.")
@json_option
@click.pass_obj
def search(
    target: Target,
    session: str,
    query: str,
    limit: int,
    any_word: bool,
    message_type: str | None,
    before: str | None,
    as_json: bool,
) -> None:
    """Print the messages of SESSION holding every word of QUERY (case-insensitive).

    "Quoted words" must appear together; Chinese, Japanese and Korean match by character.
    """
    if not query.strip():
        raise click.BadParameter(
            "is empty: give at least one word to search for", param_hint="QUERY"
        )
    pager = protocol.SearchPager(
        keys_of(target.prefix, session),
        query,
        limit,
        mode="any" if any_word else "all",
        message_type=message_type,
        before=before,
    )
    with connected(target) as transport:
        call = pager.next_call()
        while call is not None:  # several short calls when the search is long
            pager.feed(transport.run(call))
            call = pager.next_call()
    emit(
        stored_records(pager.reply()),
        as_json,
        f"no message of session {session!r} matches {query!r}",
    )


@click.command()
@session_command
@click.pass_obj
def reindex(target: Target, session: str) -> None:
    """Build SESSION's search index from its messages (for sessions stored without one).

    A series of short calls (at most 512 messages each), with a progress bar; searches
    stay exact meanwhile, and an interrupted rebuild is finished by later writes or by
    running this again.
    """
    keys = keys_of(target.prefix, session)
    with connected(target) as transport:
        step = protocol.decode_reindex(transport.run(protocol.reindex_call(keys, "RESTART")))
        with click.progressbar(
            length=step.total, label="indexing", file=sys.stderr, hidden=step.complete
        ) as bar:
            bar.update(step.indexed)
            while not step.complete:
                reply = transport.run(protocol.reindex_call(keys, "CONTINUE"))
                following = protocol.decode_reindex(reply)
                bar.update(following.indexed - step.indexed)
                step = following
    click.echo(f"indexed {plural(step.total, 'message')} of session {session!r}")


@click.command()
@session_command
@click.option(
    "--yes", "-y", is_flag=True, help="Do not ask (never asked when stdin is not a terminal)."
)
@click.pass_obj
def clear(target: Target, session: str, yes: bool) -> None:
    """Delete SESSION: its messages and every key it had. Prints how many messages went."""
    call = protocol.clear_call(keys_of(target.prefix, session))
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete every message of session {session!r}?", abort=True)
    with connected(target) as transport:
        deleted = int(transport.run(call))
    click.echo(f"deleted {plural(deleted, 'message')} from session {session!r}")


@click.command()
@session_command
@click.argument("ids", nargs=-1, required=True)
@click.option(
    "--message-ids",
    "by_message_id",
    is_flag=True,
    help="IDS are LangChain message ids (message.id), not stream ids.",
)
@click.pass_obj
def delete(target: Target, session: str, ids: tuple[str, ...], by_message_id: bool) -> None:
    """Delete messages of SESSION by stream id (as `show --json` prints), atomically.

    Unknown ids are ignored; prints how many messages were deleted.
    """
    keys = keys_of(target.prefix, session)
    try:
        call = (
            protocol.delete_call(keys, message_ids=ids)
            if by_message_id
            else protocol.delete_call(keys, ids)
        )
    except InvalidInputError as error:
        raise click.BadParameter(str(error), param_hint="IDS") from None
    with connected(target) as transport:
        deleted = int(transport.run(call)) if call else 0
    click.echo(f"deleted {plural(deleted, 'message')} from session {session!r}")


@click.command("ttl")
@session_command
@click.option(
    "--set",
    "seconds",
    type=click.IntRange(1, protocol.MAX_TTL_SECONDS),
    default=None,
    help="Make the session expire SECONDS from now.",
)
@click.option("--persist", is_flag=True, help="Drop the session's TTL: keep it until cleared.")
@click.pass_obj
def ttl_command(target: Target, session: str, seconds: int | None, persist: bool) -> None:
    """Print the time SESSION has left (or `none`), after --set or --persist if given.

    Exit status 1 when the session does not exist.
    """
    if seconds is not None and persist:
        raise click.UsageError("pass --set or --persist, not both")
    keys = keys_of(target.prefix, session)
    with connected(target) as transport:
        if seconds is not None or persist:
            transport.run(protocol.expire_call(keys, seconds))
        remaining = int(transport.run(protocol.ttl_call(keys)))
    if remaining == -2:
        raise click.ClickException(f"session {session!r} does not exist")
    click.echo("none" if remaining < 0 else duration_text(remaining))
