"""The ``redis-chat-history`` command: load the library, check it, read and clear sessions.

Every command is a small function over three shared pieces: :func:`connected` (a
fresh client and transport, with every package or redis-py error turned into a
one-line :class:`click.ClickException`), the sans-I/O calls of ``_protocol``, and
the output helpers at the end of this module.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
import redis
from click.core import ParameterSource

from . import _cluster as cluster
from . import _protocol as protocol
from ._clients import DEFAULT_URL, cluster_unknown, open_sync, redact_url
from ._cluster import NodeLibrary
from ._errors import ChatHistoryError, InvalidInputError
from ._retry import DEFAULT_RETRY, MAX_RETRIES, RetryPolicy, no_client_retry
from ._transport import SyncTransport, translate
from .history import DEFAULT_KEY_PREFIX

#: Seconds to wait for a TCP connection before saying Redis is unreachable.
CONNECT_TIMEOUT = 5.0

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Target:
    """The Redis the commands talk to, and whether the user named it (``--url`` or $REDIS_URL)."""

    url: str
    chosen: bool
    retries: int = DEFAULT_RETRY.retries


# -- connecting and errors ---------------------------------------------------------


def shown_url(url: str) -> str:
    """``url`` fit for output: password masked, query and fragment (may hold one) dropped."""
    try:
        parts = urlsplit(url)
        return redact_url(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    except ValueError:
        return "<unparsable Redis URL>"


@contextmanager
def friendly_errors(where: str) -> Iterator[None]:
    """Turn the package's and redis-py's errors into a one-line message and exit status 1."""
    try:
        yield
    except (ChatHistoryError, redis.RedisError) as error:
        raise click.ClickException(str(translate(error, where))) from None


def open_client(url: str) -> Any:
    """A new client for ``url`` (a cluster client for a cluster node's URL, Sentinel-managed
    for ``redis+sentinel://``), or a clear error for a malformed URL or a silent server."""
    try:
        with friendly_errors(shown_url(url)):
            return open_sync(url, socket_connect_timeout=CONNECT_TIMEOUT, retry=no_client_retry())
    except ValueError as error:
        raise click.ClickException(
            f"invalid Redis URL {shown_url(url)}: {error}; pass --url (or set REDIS_URL) "
            "like redis://[[user]:password@]host[:port][/db], rediss://..., unix:///path "
            "or redis+sentinel://host[:port][,host[:port]...]/service"
        ) from None


@contextmanager
def connected(target: Target) -> Iterator[SyncTransport]:
    """A transport on a fresh client for ``target``, closed afterwards; errors become messages."""
    client = open_client(target.url)
    transport = SyncTransport(client, RetryPolicy(retries=target.retries))
    try:
        with friendly_errors(transport.where):
            yield transport
    finally:
        client.close()


def keys_of(prefix: str, session: str) -> tuple[str, str, str]:
    """The session's keys, or a usage error naming what is wrong with SESSION or --prefix."""
    try:
        return protocol.session_keys(prefix, session)
    except InvalidInputError as error:
        raise click.UsageError(str(error)) from None


def stored_records(reply: protocol.Reply) -> list[protocol.StoredMessage]:
    """The messages of a range or search reply, or a clear error if one cannot be decoded."""
    try:
        return protocol.decode_stored(reply)
    except (ValueError, KeyError, TypeError) as error:
        raise click.ClickException(
            f"the session holds a message that is not a LangChain message: {error}"
        ) from None


def library_state(version: str | None) -> str:
    """``missing``, ``ok``, ``upgrade`` (older than this package: run ``load``) or
    ``incompatible`` (a newer major version, or not a version at all)."""
    if version is None:
        return "missing"
    try:
        return protocol.check_compatible(version)
    except ValueError:
        return "incompatible"


#: Which node's state a cluster's overall state takes: the first found in this order.
_WORST_FIRST = ("incompatible", "missing", "upgrade", "ok")


def status_report(where: str, nodes: list[NodeLibrary], cluster: bool) -> dict[str, Any]:
    """What ``status`` reports: the library on each node, and overall.

    Overall, ``state`` is the worst of the nodes' states and ``version`` the nodes'
    version when they all agree (else None).
    """
    states = [library_state(node.version) for node in nodes]
    state = next(worst for worst in _WORST_FIRST if worst in states)
    found = {node.version for node in nodes}
    version = found.pop() if len(found) == 1 else None
    return {
        "server": where,
        "library": protocol.LIBRARY_NAME,
        "loaded": all(node.version is not None for node in nodes),
        "version": version,
        "expected": protocol.LIBRARY_VERSION,
        "compatible": state == "ok",
        "state": state,
        "cluster": cluster,
        "nodes": [
            {"address": node.address, "role": node.role, "version": node.version, "state": each}
            for node, each in zip(nodes, states, strict=True)
        ],
    }


def node_line(node: dict[str, Any]) -> str:
    """One node of a cluster's status, for people."""
    text = _STATUS_TEXT[node["state"]].format(
        library=protocol.LIBRARY_NAME,
        version=node["version"],
        server=f"{node['address']} ({node['role']})",
        expected=protocol.LIBRARY_VERSION,
    )
    return text.split(", compatible with")[0]


_STATUS_TEXT = {
    "ok": "{library} {version} is loaded on {server}, compatible with this package "
    "({library} {expected})",
    "missing": "{library} is not loaded on {server}: run `redis-chat-history load`",
    "upgrade": "{library} {version} on {server} is older than this package's {expected}: "
    "run `redis-chat-history load`",
    "incompatible": "{library} {version} on {server} is not compatible with this package's "
    "{expected}: upgrade redis-chat-history",
}


def newer_than_shipped(version: str) -> bool:
    """Whether a server's library version is newer than the one this package ships."""
    try:
        return protocol.version_tuple(version) > protocol.version_tuple(protocol.LIBRARY_VERSION)
    except ValueError:
        return False


# -- output ------------------------------------------------------------------------


def record_json(record: protocol.StoredMessage) -> dict[str, Any]:
    """One message as a JSON object: id, timestamp (ISO 8601, UTC), type, content."""
    return {
        "id": record.id,
        "timestamp": record.timestamp.isoformat(timespec="milliseconds"),
        "type": record.message.type,
        "content": record.message.content,
    }


def record_line(record: protocol.StoredMessage) -> str:
    """One message as a line for people: ``[time] type: content``."""
    content = record.message.content
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return f"[{record.timestamp:%Y-%m-%d %H:%M:%S}] {record.message.type}: {text}"


def emit(records: list[protocol.StoredMessage], as_json: bool, none_found: str) -> None:
    """Print messages, one per line (JSON lines with ``--json``); say so on stderr if none."""
    if not records:
        click.echo(none_found, err=True)
    for record in records:
        click.echo(
            json.dumps(record_json(record), ensure_ascii=False) if as_json else record_line(record)
        )


# -- commands ----------------------------------------------------------------------


def session_command(function: F) -> F:
    """Add the SESSION argument and the ``--prefix`` option shared by show, search and clear."""
    function = click.option(
        "--prefix",
        default=DEFAULT_KEY_PREFIX,
        show_default=True,
        help="Prefix of the session's keys (RedisChatMessageHistory's key_prefix).",
    )(function)
    return click.argument("session")(function)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON lines: id, timestamp, type, content."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="REDIS_URL",
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    metavar="URL",
    help="The Redis: redis://[[user]:password@]host[:port][/db], rediss://... or unix:///path.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, MAX_RETRIES),
    default=DEFAULT_RETRY.retries,
    show_default=True,
    help="Retries after a transient failure (connection lost, timeout, LOADING, BUSY, "
    "READONLY), with exponential backoff up to 1 s.",
)
@click.version_option(
    package_name="redis-chat-history",
    message=f"%(prog)s %(version)s ({protocol.LIBRARY_NAME} library {protocol.LIBRARY_VERSION})",
)
@click.pass_context
def main(ctx: click.Context, url: str, retries: int) -> None:
    """Chat histories kept in Redis by the chathist Redis Functions library.

    Errors are reported in one line on stderr with exit status 1 (2 for bad usage);
    a password in the URL is never printed.
    """
    source = ctx.get_parameter_source("url")
    chosen = source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    ctx.obj = Target(url=url, chosen=chosen, retries=retries)


@main.command()
@click.option("--force", is_flag=True, help="Replace even a newer chathist library (a downgrade).")
@click.pass_obj
def load(target: Target, force: bool) -> None:
    """Load this package's chathist library into Redis (FUNCTION LOAD REPLACE).

    Safe to repeat. A newer version already on the server is left alone unless --force.
    On Redis Cluster the library goes to every primary (functions are not shared between
    shards; replicas get it from their primary), then every node, replicas included, is
    checked and listed with its version. A node that turns out to be a replica (READONLY)
    or stops answering mid-failover is passed over (noted on stderr) and the topology read
    again; a node still without the library after 10 s is an error.
    """
    with connected(target) as transport:
        nodes = transport.node_libraries(reachable=True)
        for node in nodes:
            if node.version is not None and newer_than_shipped(node.version) and not force:
                raise click.ClickException(
                    f"{node.address} runs {protocol.LIBRARY_NAME} {node.version}, newer than "
                    f"this package's {protocol.LIBRARY_VERSION}: upgrade redis-chat-history, "
                    "or pass --force to replace it anyway"
                )
        if not cluster.is_cluster(transport.client):
            version = transport.load()
            click.echo(f"loaded {protocol.LIBRARY_NAME} {version} on {transport.where}")
            if cluster_unknown(target.url):
                click.echo(
                    "warning: this Redis user may not run INFO, so a Redis Cluster cannot be "
                    "told apart: on a cluster, allow INFO, CLUSTER NODES, CLUSTER SLOTS and "
                    "COMMAND too and run load again, or the other primaries lack the library",
                    err=True,
                )
            return
        deployment = transport.deploy()
    for node in deployment.nodes:
        click.echo(f"{node.address} {node.role} {protocol.LIBRARY_NAME} {node.version}")
    for skipped in deployment.skipped:
        click.echo(f"note: passed over {skipped.address}: {skipped.reason}", err=True)
    click.echo(
        f"loaded {protocol.LIBRARY_NAME} {protocol.LIBRARY_VERSION} on "
        f"{len(deployment.loaded)} primaries; {len(deployment.nodes)} nodes verified"
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Tell whether the chathist library is loaded, its version, and if it fits this package.

    On Redis Cluster: one line per node, primaries and replicas (--json: a `nodes` list).

    \b
    Exit status:
      0  the library is loaded and compatible with this package
      1  it is missing, older than this package (run `load`), of a newer
         major version (upgrade this package), or Redis did not answer
    """
    target: Target = ctx.obj
    with connected(target) as transport:
        is_cluster = cluster.is_cluster(transport.client)
        report = status_report(transport.where, transport.node_libraries(), is_cluster)
    if as_json:
        click.echo(json.dumps(report))
    elif is_cluster:
        for node in report["nodes"]:
            click.echo(node_line(node))
    else:
        click.echo(_STATUS_TEXT[report["state"]].format(**report))
    ctx.exit(0 if report["compatible"] else 1)


@main.command()
@session_command
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Only the latest N messages."
)
@json_option
@click.pass_obj
def show(target: Target, session: str, prefix: str, limit: int | None, as_json: bool) -> None:
    """Print the messages of SESSION, oldest first."""
    call = protocol.range_call(keys_of(prefix, session), count=limit)
    with connected(target) as transport:
        reply = transport.run(call)
    emit(stored_records(reply), as_json, f"session {session!r} has no messages")


@main.command()
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
    prefix: str,
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
    call = protocol.search_call(
        keys_of(prefix, session),
        query,
        limit,
        mode="any" if any_word else "all",
        message_type=message_type,
        before=before,
    )
    with connected(target) as transport:
        reply = transport.run(call)
    emit(stored_records(reply), as_json, f"no message of session {session!r} matches {query!r}")


@main.command()
@session_command
@click.pass_obj
def reindex(target: Target, session: str, prefix: str) -> None:
    """Build SESSION's search index from its messages (for sessions stored without one)."""
    call = protocol.reindex_call(keys_of(prefix, session))
    with connected(target) as transport:
        indexed = int(transport.run(call))
    click.echo(f"indexed {indexed} message{'' if indexed == 1 else 's'} of session {session!r}")


@main.command()
@session_command
@click.option(
    "--yes", "-y", is_flag=True, help="Do not ask (never asked when stdin is not a terminal)."
)
@click.pass_obj
def clear(target: Target, session: str, prefix: str, yes: bool) -> None:
    """Delete SESSION: its messages and every key it had. Prints how many messages went."""
    call = protocol.clear_call(keys_of(prefix, session))
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete every message of session {session!r}?", abort=True)
    with connected(target) as transport:
        deleted = int(transport.run(call))
    click.echo(f"deleted {deleted} message{'' if deleted == 1 else 's'} from session {session!r}")


@main.command()
@click.pass_obj
def demo(target: Target) -> None:
    """Store, read, search and clear a sample conversation, printing each step.

    Uses --url / $REDIS_URL when given, else a throwaway local redis-server.
    """
    from .demo import run_demo

    url = target.url if target.chosen else None
    with friendly_errors(shown_url(target.url) if url else "the local redis-server"):
        run_demo(url)


# Commands that manage conversations (list, export, import, tail, ...) live in their own
# module, built on the helpers above; importing it adds them to `main`.
from . import cli_sessions  # noqa: E402, F401

if __name__ == "__main__":
    main()
